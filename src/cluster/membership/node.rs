//! Node identity: the address a member advertises (an IP address or a DNS
//! name, with a port) plus a generation that changes on every restart, so
//! a restarted node is a new life that wins over the old.
//!
//! A member *is* its advertised address. A node named by DNS
//! (`worker-0.workers.default.svc:7000`) keeps its identity when it comes
//! back with another IP (a rescheduled pod): the same name under a higher
//! generation is that member's new life. A node named by an IP address is
//! the member at that address; another node at a reused IP with another
//! name is another member. Peers dial a named member by resolving its
//! name where they run (so a name may resolve differently per host, as
//! behind NAT), and verify its certificate against that name.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest DNS name (RFC 1035 § 2.3.4, without the trailing dot).
const MAX_NAME_LEN: usize = 253;

/// A member's DNS name, held inline (lowercase, at most [`MAX_NAME_LEN`]
/// bytes), so that [`NodeId`] stays `Copy` without a table of names that
/// peers could fill.
#[derive(Clone, Copy)]
struct Name {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
    /// FNV-1a (128 bit) of the name, computed once: foca's member key
    /// ([`AddrKey`]).
    hash: u128,
}

impl Name {
    /// `name`, already checked by [`dns_name`].
    fn new(name: &str) -> Self {
        const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
        let mut bytes = [0; MAX_NAME_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Self {
            len: name.len() as u8,
            bytes,
            hash: name
                .bytes()
                .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME)),
        }
    }

    fn as_str(&self) -> &str {
        // Only ever built from a checked ASCII name.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Whether `label` reads as a number to the system resolver's IPv4 parser
/// (`inet_aton`: decimal, `0x` hex or `0` octal parts).
fn numeric(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Checks a DNS host name (RFC 1123: labels of letters, digits and `-`,
/// 1–63 bytes, not starting or ending with `-`; at most 253 bytes; no
/// trailing dot) and lowercases it.
pub(super) fn dns_name(name: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("{name:?} is not a DNS host name: {why}"));
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad("length must be 1 to 253 bytes");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each label is 1 to 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label may not start or end with '-'");
        }
    }
    if name.parse::<IpAddr>().is_ok()
        || name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        || name.split('.').all(numeric)
    {
        return bad("it reads as an IP address");
    }
    Ok(name.to_ascii_lowercase())
}

// A name inline keeps `MemberAddr` `Copy` (boxing it would not).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Host {
    Ip(IpAddr),
    /// Lowercase.
    Name(Name),
}

/// Where a member is reached, and what it is called: an IP address or a
/// DNS name, and a port. Written `host:port` (`[v6]:port` for IPv6).
///
/// Compares equal to a [`SocketAddr`] when it is that IP address and port.
/// Names compare case-insensitively (they are kept lowercase).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberAddr {
    host: Host,
    port: u16,
}

impl MemberAddr {
    /// A member named by a DNS name.
    ///
    /// # Errors
    /// A message when `name` is not a DNS host name (an IP address in
    /// text is not one: use [`From<SocketAddr>`]).
    pub fn named(name: &str, port: u16) -> Result<Self, String> {
        Ok(Self {
            host: Host::Name(Name::new(&dns_name(name)?)),
            port,
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address itself when the member is named by an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }

    /// The DNS name, when the member is named by one (lowercase).
    pub fn name(&self) -> Option<&str> {
        match &self.host {
            Host::Name(name) => Some(name.as_str()),
            Host::Ip(_) => None,
        }
    }

    /// The host as text: the DNS name, or the IP address (without
    /// brackets). A member's certificate is verified against it.
    pub fn host(&self) -> String {
        match &self.host {
            Host::Name(name) => name.as_str().to_owned(),
            Host::Ip(ip) => ip.to_string(),
        }
    }

    /// The same host with another port.
    pub fn with_port(self, port: u16) -> Self {
        Self { port, ..self }
    }

    /// The socket addresses to dial from a socket of the family `ipv6`
    /// says: the address itself, or the addresses of that family the name
    /// resolves to here (the system resolver: hosts file, then DNS), in
    /// the resolver's order. A socket of one family cannot reach the
    /// other (`localhost` resolves to both).
    ///
    /// # Errors
    /// The resolver's error; `NotFound` when the name resolves to no
    /// address of that family.
    pub async fn resolve(&self, ipv6: bool) -> std::io::Result<Vec<SocketAddr>> {
        let name = match &self.host {
            Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => name.as_str(),
        };
        let all: Vec<SocketAddr> = tokio::net::lookup_host((name, self.port))
            .await?
            .filter(|a| a.is_ipv6() == ipv6)
            .collect();
        if all.is_empty() {
            let family = if ipv6 { "IPv6" } else { "IPv4" };
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{name} resolves to no {family} address"),
            ));
        }
        Ok(all)
    }
}

impl From<SocketAddr> for MemberAddr {
    /// The member at `addr` (an IPv4-mapped IPv6 address is its IPv4
    /// address, as TLS names it).
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: Host::Ip(addr.ip().to_canonical()),
            port: addr.port(),
        }
    }
}

impl PartialEq<SocketAddr> for MemberAddr {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.socket_addr() == Some(*other)
    }
}

impl PartialEq<MemberAddr> for SocketAddr {
    fn eq(&self, other: &MemberAddr) -> bool {
        other == self
    }
}

impl FromStr for MemberAddr {
    type Err = String;

    /// Reads `host:port`: `10.0.0.5:7000`, `[::1]:7000` or
    /// `worker-0.workers.default.svc:7000`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not host:port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{s:?} is not host:port (bad port)"))?;
        Self::named(host, port)
    }
}

impl fmt::Display for MemberAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{}:{}", name.as_str(), self.port),
        }
    }
}

impl fmt::Debug for MemberAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// On the wire (gossip, the view method): an IP address and port, or a
/// name and port. Human-readable formats (the JSON of the membership
/// report and the admin endpoint) get the `host:port` text instead.
#[derive(Serialize, Deserialize)]
enum WireAddr<'a> {
    Ip(SocketAddr),
    Name(&'a str, u16),
}

impl Serialize for MemberAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return serializer.collect_str(self);
        }
        match &self.host {
            Host::Ip(ip) => WireAddr::Ip(SocketAddr::new(*ip, self.port)),
            Host::Name(name) => WireAddr::Name(name.as_str(), self.port),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MemberAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            return text.parse().map_err(serde::de::Error::custom);
        }
        #[derive(Deserialize)]
        enum Borrowed<'a> {
            Ip(SocketAddr),
            Name(#[serde(borrow)] std::borrow::Cow<'a, str>, u16),
        }
        match Borrowed::deserialize(deserializer)? {
            Borrowed::Ip(addr) => Ok(addr.into()),
            Borrowed::Name(name, port) => {
                Self::named(&name, port).map_err(serde::de::Error::custom)
            }
        }
    }
}

/// A cluster member: its advertised address and a generation. The
/// generation grows when the node restarts or is renewed after being
/// declared down, so stale information about an earlier life of the same
/// address loses every conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    /// The address the node advertises: peers reach it, and know it, by
    /// this (an IP address or a DNS name, and a port).
    pub addr: MemberAddr,
    /// Restart counter; higher wins.
    pub generation: u64,
}

impl NodeId {
    /// An identity for `addr` with the given generation.
    pub fn new(addr: impl Into<MemberAddr>, generation: u64) -> Self {
        Self {
            addr: addr.into(),
            generation,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.addr, self.generation)
    }
}

/// What foca compares to tell members apart ([`foca::Identity::Addr`]): a
/// [`MemberAddr`] in 20 bytes instead of 256. foca finds a member by
/// comparing against every member it holds, once per update a packet
/// carries; copying whole `MemberAddr`s (a name is kept inline) made that
/// search most of a node's gossip CPU at 1,000 members. An IP address is
/// kept exactly, a name as its 128-bit FNV-1a hash (two names that collide
/// would be taken for one member; only members, holding a member
/// certificate for their name, can pick names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrKey {
    host: u128,
    port: u16,
    kind: u8,
}

impl From<&MemberAddr> for AddrKey {
    fn from(addr: &MemberAddr) -> Self {
        let (kind, host) = match &addr.host {
            Host::Ip(IpAddr::V4(ip)) => (4, u128::from(u32::from(*ip))),
            Host::Ip(IpAddr::V6(ip)) => (6, u128::from(*ip)),
            Host::Name(name) => (0, name.hash),
        };
        Self {
            host,
            port: addr.port,
            kind,
        }
    }
}

impl foca::Identity for NodeId {
    type Addr = AddrKey;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            addr: self.addr,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> AddrKey {
        AddrKey::from(&self.addr)
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foca_tells_members_apart_by_a_key_that_keeps_every_difference() {
        use foca::Identity;
        let texts = [
            "10.0.0.5:7000",
            "10.0.0.5:7001",
            "10.0.0.6:7000",
            "[::ffff:10.0.0.5]:7000",
            "[::1]:7000",
            "worker-0.workers.default.svc:7000",
            "worker-1.workers.default.svc:7000",
            "worker-0.workers.default.svc:7001",
        ];
        let ids: Vec<NodeId> = texts
            .iter()
            .map(|t| NodeId::new(t.parse::<MemberAddr>().unwrap(), 1))
            .collect();
        for (i, a) in ids.iter().enumerate() {
            for (j, b) in ids.iter().enumerate() {
                assert_eq!(
                    a.addr() == b.addr(),
                    a.addr == b.addr,
                    "{} vs {}",
                    texts[i],
                    texts[j]
                );
                assert_eq!(
                    a.addr == b.addr,
                    i == j || (i, j) == (0, 3) || (i, j) == (3, 0)
                );
            }
            // Another life of the same address is the same member to foca.
            assert_eq!(a.addr(), NodeId::new(a.addr, 9).addr());
        }
        let upper: MemberAddr = "Worker-0.Workers.Default.svc:7000".parse().unwrap();
        assert_eq!(NodeId::new(upper, 1).addr(), ids[5].addr());
    }

    #[test]
    fn addresses_read_and_print_as_host_and_port() {
        for text in [
            "10.0.0.5:7000",
            "[::1]:7000",
            "worker-0.workers.default.svc:7000",
        ] {
            let addr: MemberAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        let named: MemberAddr = "Worker-0.Example:9".parse().unwrap();
        assert_eq!(named, "worker-0.example:9".parse::<MemberAddr>().unwrap());
        assert_eq!(named.name(), Some("worker-0.example"));
        assert_eq!(named.socket_addr(), None);
        let ip: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(MemberAddr::from(ip), ip);
        assert_eq!(ip, MemberAddr::from(ip));
        assert_eq!(MemberAddr::from(ip).host(), "127.0.0.1");
        for bad in [
            "worker",
            "worker:",
            "worker:70000",
            "-worker:1",
            "wor_ker:1",
            "a..b:1",
            "*.example:1",
            "10.0.0.256:1",
            "0x0a000005:1",
            "1.0x1:1",
        ] {
            assert!(bad.parse::<MemberAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn identities_round_trip_through_the_wire_format() {
        for text in [
            "10.0.0.5:7000",
            "[::1]:7",
            "worker-0.workers.default.svc:7000",
        ] {
            let id = NodeId::new(text.parse::<MemberAddr>().unwrap(), 42);
            let bytes = postcard::to_allocvec(&id).unwrap();
            assert_eq!(postcard::from_bytes::<NodeId>(&bytes).unwrap(), id);
        }
        // A name that is not one is refused, as a malformed packet.
        let forged = postcard::to_allocvec(&(WireAddr::Name("no such_name", 1), 1u64)).unwrap();
        assert!(postcard::from_bytes::<NodeId>(&forged).is_err());
    }

    #[test]
    fn a_name_is_the_same_member_under_another_ip_and_an_ip_is_not_a_name() {
        use foca::Identity;
        let old = NodeId::new("worker-0.workers:7000".parse::<MemberAddr>().unwrap(), 1);
        let new = old.renew().unwrap();
        assert_eq!(old.addr(), new.addr());
        assert!(new.win_addr_conflict(&old));
        let by_ip = NodeId::new("10.0.0.5:7000".parse::<SocketAddr>().unwrap(), 2);
        assert_ne!(by_ip.addr(), old.addr());
    }
}
