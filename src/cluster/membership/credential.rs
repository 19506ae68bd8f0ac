//! Member credentials: which certificates may take part in membership, and
//! which node addresses each may speak for.
//!
//! A *member certificate* is a certificate from the cluster CA that carries
//! one or more URI subject alternative names of the form
//! `rpcnet-member://<host>` (any port on that host) or
//! `rpcnet-member://<host>:<port>` (that one address), the host an IP
//! address (IPv6 in brackets) or a DNS name (compared ignoring case).
//! `rpcnet-certs --member` issues them. The CA's signature makes the role
//! and the bindings unforgeable; TLS proves the peer holds the key. An
//! application client's certificate (or no certificate at all) carries no
//! such name, so it cannot take part in gossip.

use std::net::{IpAddr, SocketAddr};

use super::node::MemberAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The URI scheme that marks a member certificate.
pub const MEMBER_URI_SCHEME: &str = "rpcnet-member://";

/// Most bindings read from one certificate (keeps a hostile certificate
/// from costing more than a small, fixed amount of memory per packet).
const MAX_BINDINGS: usize = 16;

/// The host of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    /// Lowercase.
    Name(String),
}

/// An address pattern a member certificate is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    host: Host,
    /// `None`: any port on the host.
    port: Option<u16>,
}

impl Binding {
    fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(MEMBER_URI_SCHEME)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if let Ok(addr) = rest.parse::<SocketAddr>() {
            return Some(Self {
                host: Host::Ip(addr.ip()),
                port: Some(addr.port()),
            });
        }
        let bare = rest
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(rest);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Some(Self {
                host: Host::Ip(ip),
                port: None,
            });
        }
        // A DNS name, with or without a port: parsed as a member address
        // (which checks the name) without interning it.
        let (name, port) = match rest.rsplit_once(':') {
            Some((name, port)) => (name, Some(port.parse::<u16>().ok()?)),
            None => (rest, None),
        };
        super::node::dns_name(name).ok().map(|name| Self {
            host: Host::Name(name),
            port,
        })
    }

    fn covers(&self, addr: &MemberAddr) -> bool {
        let host = match (&self.host, addr.socket_addr(), addr.name()) {
            (Host::Ip(ip), Some(sa), _) => *ip == sa.ip(),
            (Host::Name(name), _, Some(theirs)) => name == theirs,
            _ => false,
        };
        host && self.port.is_none_or(|p| p == addr.port())
    }
}

/// What a member certificate lets its holder speak for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberCredential {
    bindings: Vec<Binding>,
}

impl MemberCredential {
    /// The member role of a (CA-verified) certificate in DER; `None` when it
    /// is not a member certificate or does not parse.
    pub(crate) fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let bindings: Vec<Binding> = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Binding::parse(uri),
                _ => None,
            })
            .take(MAX_BINDINGS)
            .collect();
        (!bindings.is_empty()).then_some(Self { bindings })
    }

    /// The member role of the first certificate in a PEM file's text.
    pub(crate) fn from_pem(pem: &str) -> Option<Self> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
        Self::from_der(&pem.contents)
    }

    /// A credential valid for exactly `addr` (tests and the simulator).
    #[cfg(test)]
    pub(crate) fn for_addr(addr: impl Into<MemberAddr>) -> Self {
        let addr = addr.into();
        let host = match (addr.socket_addr(), addr.name()) {
            (Some(sa), _) => Host::Ip(sa.ip()),
            (None, name) => Host::Name(name.unwrap_or_default().to_owned()),
        };
        Self {
            bindings: vec![Binding {
                host,
                port: Some(addr.port()),
            }],
        }
    }

    /// Whether the holder may announce itself as the node at `addr`.
    pub(crate) fn speaks_for(&self, addr: impl Into<MemberAddr>) -> bool {
        let addr = addr.into();
        self.bindings.iter().any(|b| b.covers(&addr))
    }

    /// The hosts other than `own`'s that this credential also speaks for,
    /// when it looks issued for several nodes: it names more than one DNS
    /// name, or more than one IP address. One name and one address are
    /// one node's (`rpcnet-certs --member w --san w.example --san
    /// 10.0.0.2`); loopback addresses are left out (a development
    /// certificate for `127.0.0.1` is shared by the nodes of one machine
    /// on purpose). A certificate for several nodes lets its holder speak
    /// for each of them.
    pub(crate) fn other_hosts(&self, own: &MemberAddr) -> Vec<String> {
        let hosts: Vec<&Binding> = self
            .bindings
            .iter()
            .filter(|b| !matches!(b.host, Host::Ip(ip) if ip.is_loopback()))
            .collect();
        let names = hosts
            .iter()
            .filter(|b| matches!(b.host, Host::Name(_)))
            .count();
        if names <= 1 && hosts.len() - names <= 1 {
            return Vec::new();
        }
        let any_port = |b: &Binding| Binding {
            port: None,
            ..b.clone()
        };
        hosts
            .into_iter()
            .filter(|b| !any_port(b).covers(own))
            .map(|b| match &b.host {
                Host::Ip(ip) => ip.to_string(),
                Host::Name(name) => name.clone(),
            })
            .collect()
    }
}

/// Whether the certificate in PEM text `pem` carries `addr`'s host as a
/// TLS name (a DNS name, matched ignoring case and with a one-label
/// wildcard as s2n-tls matches it, or an IP address): what its peers
/// verify it against.
pub(crate) fn tls_names_cover(pem: &str, addr: &MemberAddr) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = X509Certificate::from_der(&pem.contents) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let host = addr.host();
    san.value.general_names.iter().any(|name| match name {
        GeneralName::DNSName(dns) => {
            dns.eq_ignore_ascii_case(&host)
                || dns.strip_prefix("*.").is_some_and(|suffix| {
                    host.split_once('.')
                        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix))
                })
        }
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                _ => None,
            };
            ip.is_some_and(|ip| addr.socket_addr().is_some_and(|a| a.ip() == ip))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bindings_parse_host_and_exact_forms() {
        let any_port = Binding::parse("rpcnet-member://127.0.0.1").unwrap();
        assert!(any_port.covers(&sa("127.0.0.1:7000").into()));
        assert!(!any_port.covers(&sa("127.0.0.2:7000").into()));
        let exact = Binding::parse("rpcnet-member://127.0.0.1:7001").unwrap();
        assert!(exact.covers(&sa("127.0.0.1:7001").into()));
        assert!(!exact.covers(&sa("127.0.0.1:7000").into()));
        let v6 = Binding::parse("rpcnet-member://[::1]").unwrap();
        assert!(v6.covers(&sa("[::1]:9").into()));
        let v6_exact = Binding::parse("rpcnet-member://[::1]:9").unwrap();
        assert!(!v6_exact.covers(&sa("[::1]:10").into()));
        assert_eq!(Binding::parse("https://127.0.0.1"), None);
        assert_eq!(Binding::parse("rpcnet-member://host_1.example"), None);
        assert_eq!(Binding::parse("rpcnet-member://host.example:x"), None);
    }

    #[test]
    fn names_bind_a_host_ignoring_case_and_never_an_ip() {
        let named = |s: &str| s.parse::<MemberAddr>().unwrap();
        let any_port = Binding::parse("rpcnet-member://Worker-0.workers.svc").unwrap();
        assert!(any_port.covers(&named("worker-0.workers.svc:7000")));
        assert!(any_port.covers(&named("WORKER-0.workers.svc:7001")));
        assert!(!any_port.covers(&named("worker-1.workers.svc:7000")));
        assert!(!any_port.covers(&named("workers.svc:7000")));
        assert!(!any_port.covers(&named("127.0.0.1:7000")));
        let exact = Binding::parse("rpcnet-member://worker-0.workers.svc:7000").unwrap();
        assert!(exact.covers(&named("worker-0.workers.svc:7000")));
        assert!(!exact.covers(&named("worker-0.workers.svc:7100")));
        // An IP binding never covers a name, whatever it resolves to.
        let ip = Binding::parse("rpcnet-member://10.0.0.5").unwrap();
        assert!(!ip.covers(&named("worker-0.workers.svc:7000")));
    }

    #[test]
    fn a_credential_for_many_hosts_names_the_others() {
        let shared = MemberCredential {
            bindings: ["a.example", "b.example", "10.0.0.3", "127.0.0.1"]
                .iter()
                .map(|h| Binding::parse(&format!("{MEMBER_URI_SCHEME}{h}")).unwrap())
                .collect(),
        };
        let own: MemberAddr = "a.example:7000".parse().unwrap();
        assert_eq!(shared.other_hosts(&own), ["b.example", "10.0.0.3"]);
        assert!(MemberCredential::for_addr(own).other_hosts(&own).is_empty());
        // One name and one address: one node's.
        let one_node = MemberCredential {
            bindings: ["a.example", "10.0.0.2", "127.0.0.1"]
                .iter()
                .map(|h| Binding::parse(&format!("{MEMBER_URI_SCHEME}{h}")).unwrap())
                .collect(),
        };
        assert!(one_node.other_hosts(&own).is_empty());
    }

    #[test]
    fn the_node_certificate_is_a_member_and_the_client_certificate_is_not() {
        let read = |f: &str| std::fs::read_to_string(format!("certs/{f}")).unwrap();
        let member = MemberCredential::from_pem(&read("test_cert.pem")).expect("member role");
        assert!(member.speaks_for(sa("127.0.0.1:4567")));
        assert!(!member.speaks_for(sa("10.0.0.1:4567")));
        assert!(!member.speaks_for("localhost:4567".parse::<MemberAddr>().unwrap()));
        let pem = read("test_cert.pem");
        assert!(tls_names_cover(&pem, &sa("127.0.0.1:4567").into()));
        assert!(tls_names_cover(&pem, &sa("[::1]:4567").into()));
        assert!(tls_names_cover(&pem, &"LocalHost:1".parse().unwrap()));
        assert!(!tls_names_cover(&pem, &sa("10.0.0.1:4567").into()));
        assert!(!tls_names_cover(&pem, &"worker.example:1".parse().unwrap()));
        assert_eq!(MemberCredential::from_pem(&read("client.pem")), None);
        assert_eq!(MemberCredential::from_pem(&read("other_cert.pem")), None);
        assert_eq!(MemberCredential::from_der(b"not a certificate"), None);
    }
}
