//! Member credentials: which certificates may take part in membership, and
//! which node addresses each may speak for.
//!
//! A *member certificate* is a certificate from the cluster CA that carries
//! one or more URI subject alternative names of the form
//! `rpcnet-member://<ip>` (any port on that host) or
//! `rpcnet-member://<ip>:<port>` (that one address); IPv6 in brackets.
//! `rpcnet-certs --member` issues them. The CA's signature makes the role
//! and the bindings unforgeable; TLS proves the peer holds the key. An
//! application client's certificate (or no certificate at all) carries no
//! such name, so it cannot take part in gossip.

use std::net::{IpAddr, SocketAddr};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The URI scheme that marks a member certificate.
pub const MEMBER_URI_SCHEME: &str = "rpcnet-member://";

/// Most bindings read from one certificate (keeps a hostile certificate
/// from costing more than a small, fixed amount of memory per packet).
const MAX_BINDINGS: usize = 16;

/// An address pattern a member certificate is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Binding {
    ip: IpAddr,
    /// `None`: any port on `ip`.
    port: Option<u16>,
}

impl Binding {
    fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(MEMBER_URI_SCHEME)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if let Ok(addr) = rest.parse::<SocketAddr>() {
            return Some(Self {
                ip: addr.ip(),
                port: Some(addr.port()),
            });
        }
        let bare = rest
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(rest);
        bare.parse::<IpAddr>()
            .ok()
            .map(|ip| Self { ip, port: None })
    }

    fn covers(&self, addr: SocketAddr) -> bool {
        self.ip == addr.ip() && self.port.is_none_or(|p| p == addr.port())
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
    pub(crate) fn for_addr(addr: SocketAddr) -> Self {
        Self {
            bindings: vec![Binding {
                ip: addr.ip(),
                port: Some(addr.port()),
            }],
        }
    }

    /// Whether the holder may announce itself as the node at `addr`.
    pub(crate) fn speaks_for(&self, addr: SocketAddr) -> bool {
        self.bindings.iter().any(|b| b.covers(addr))
    }
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
        assert!(any_port.covers(sa("127.0.0.1:7000")));
        assert!(!any_port.covers(sa("127.0.0.2:7000")));
        let exact = Binding::parse("rpcnet-member://127.0.0.1:7001").unwrap();
        assert!(exact.covers(sa("127.0.0.1:7001")));
        assert!(!exact.covers(sa("127.0.0.1:7000")));
        let v6 = Binding::parse("rpcnet-member://[::1]").unwrap();
        assert!(v6.covers(sa("[::1]:9")));
        let v6_exact = Binding::parse("rpcnet-member://[::1]:9").unwrap();
        assert!(!v6_exact.covers(sa("[::1]:10")));
        assert_eq!(Binding::parse("https://127.0.0.1"), None);
        assert_eq!(Binding::parse("rpcnet-member://host.example"), None);
    }

    #[test]
    fn the_node_certificate_is_a_member_and_the_client_certificate_is_not() {
        let read = |f: &str| std::fs::read_to_string(format!("certs/{f}")).unwrap();
        let member = MemberCredential::from_pem(&read("test_cert.pem")).expect("member role");
        assert!(member.speaks_for(sa("127.0.0.1:4567")));
        assert!(!member.speaks_for(sa("10.0.0.1:4567")));
        assert_eq!(MemberCredential::from_pem(&read("client.pem")), None);
        assert_eq!(MemberCredential::from_pem(&read("other_cert.pem")), None);
        assert_eq!(MemberCredential::from_der(b"not a certificate"), None);
    }
}
