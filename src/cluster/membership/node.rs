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

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most distinct member names one process keeps (names are interned so
/// that [`NodeId`] stays `Copy`; beyond this bound a name from gossip is
/// refused like any malformed packet, so no peer can grow it without end).
pub const MAX_MEMBER_NAMES: usize = 4096;

/// Longest DNS name (RFC 1035 § 2.3.4, without the trailing dot).
const MAX_NAME_LEN: usize = 253;

static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// The interned copy of a valid, lowercase DNS name.
fn intern(name: &str) -> Result<&'static str, String> {
    let mut names = crate::sync::lock(&NAMES);
    if let Some(&known) = names.get(name) {
        return Ok(known);
    }
    if names.len() >= MAX_MEMBER_NAMES {
        return Err(format!(
            "more than {MAX_MEMBER_NAMES} distinct member names in one process"
        ));
    }
    let interned: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(interned);
    Ok(interned)
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
    {
        return bad("an all-numeric last label reads as an IP address");
    }
    Ok(name.to_ascii_lowercase())
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Host {
    Ip(IpAddr),
    /// Interned, lowercase.
    Name(&'static str),
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
    /// A message when `name` is not a DNS host name (an IP address in text
    /// is not one: use [`From<SocketAddr>`]), or the process already holds
    /// [`MAX_MEMBER_NAMES`] other names.
    pub fn named(name: &str, port: u16) -> Result<Self, String> {
        Ok(Self {
            host: Host::Name(intern(&dns_name(name)?)?),
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
    pub fn name(&self) -> Option<&'static str> {
        match self.host {
            Host::Name(name) => Some(name),
            Host::Ip(_) => None,
        }
    }

    /// The host as text: the DNS name, or the IP address (without
    /// brackets). A member's certificate is verified against it.
    pub fn host(&self) -> String {
        match self.host {
            Host::Name(name) => name.to_owned(),
            Host::Ip(ip) => ip.to_string(),
        }
    }

    /// The same host with another port.
    pub fn with_port(self, port: u16) -> Self {
        Self { port, ..self }
    }

    /// The socket address to dial: the address itself, or the first
    /// address the name resolves to here (the system resolver: hosts
    /// file, then DNS), preferring IPv6 when `ipv6` and IPv4 otherwise (a
    /// socket of one family cannot reach the other: `localhost` resolves
    /// to both).
    ///
    /// # Errors
    /// The resolver's error, or `NotFound` when the name resolves to
    /// nothing.
    pub async fn resolve(&self, ipv6: bool) -> std::io::Result<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Ok(SocketAddr::new(ip, self.port)),
            Host::Name(name) => {
                let all: Vec<SocketAddr> =
                    tokio::net::lookup_host((name, self.port)).await?.collect();
                all.iter()
                    .find(|a| a.is_ipv6() == ipv6)
                    .or(all.first())
                    .copied()
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("{name} resolves to no address"),
                        )
                    })
            }
        }
    }
}

impl From<SocketAddr> for MemberAddr {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: Host::Ip(addr.ip()),
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
        match self.host {
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
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
        match self.host {
            Host::Ip(ip) => WireAddr::Ip(SocketAddr::new(ip, self.port)),
            Host::Name(name) => WireAddr::Name(name, self.port),
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
        enum Owned {
            Ip(SocketAddr),
            Name(String, u16),
        }
        match Owned::deserialize(deserializer)? {
            Owned::Ip(addr) => Ok(addr.into()),
            Owned::Name(name, port) => Self::named(&name, port).map_err(serde::de::Error::custom),
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

impl foca::Identity for NodeId {
    type Addr = MemberAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            addr: self.addr,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> MemberAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
