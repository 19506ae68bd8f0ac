//! A development PKI for rpcnet clusters: one CA, kept in a directory, and
//! one certificate per node carrying only that node's names and addresses.
//!
//! Three kinds of certificate, matching the cluster's trust model:
//!
//! * a *member* certificate ([`Role::Member`]) is a server and client
//!   identity that also carries the cluster member role: a URI name
//!   `rpcnet-member://<ip>` (any port on that host) or
//!   `rpcnet-member://<ip>:<port>` (that one address) for each of *its
//!   own* addresses. A member speaks only for itself, so two members never
//!   share an address (see [`MemberAddress::overlaps`]);
//! * a *node* certificate ([`Role::Node`]) is a server or client identity
//!   without the member role;
//! * a *client* certificate ([`Role::Client`]) is an application client's
//!   identity (client authentication only, no member role). Application
//!   clients may also present no certificate at all and only trust the CA.
//!
//! Layout: this file holds the CA ([`DevCa`]) and what one certificate is
//! made of ([`CertSpec`], [`MemberAddress`]); [`CaDir`] (`dir.rs`) keeps a
//! CA and its certificates in a directory, refusing to replace a CA and to
//! let two members speak for one address; [`cli`] is the command line of
//! `rpcnet-certs` and `rpcnet certs`.
//!
//! ```no_run
//! use rpcnet_certs::{CaDir, CertSpec};
//!
//! # fn main() -> Result<(), rpcnet_certs::Error> {
//! // Once: create the CA (fails if the directory already has one).
//! let pki = CaDir::create("certs/cluster", "example CA")?;
//! // Later runs reuse it.
//! let pki = CaDir::open("certs/cluster")?;
//! pki.issue(&[
//!     CertSpec::member("worker-a", ["worker-a.example", "10.0.0.2"]),
//!     CertSpec::member("worker-b", ["worker-b.example", "10.0.0.3"]),
//!     CertSpec::client("billing", Vec::<String>::new()),
//! ])?;
//! # Ok(()) }
//! ```
//!
//! Certificates are valid from 2000-01-01 to 9999-12-31 so development
//! clusters never hit expiry. Not for production: keys are written
//! unencrypted (readable by their owner only, on Unix).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub mod cli;
mod dir;

pub use dir::CaDir;

/// The URI scheme of the member role (what rpcnet's membership reads).
pub const MEMBER_URI_SCHEME: &str = "rpcnet-member://";

/// Why issuing certificates failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Generating, signing or parsing a certificate or key failed.
    Certificate(rcgen::Error),
    /// Reading or writing a file failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The directory has no CA (`ca.pem` and `ca-key.pem`) and none was
    /// asked for (`--new-ca`, [`CaDir::create`]).
    NoCa(PathBuf),
    /// A new CA was asked for, but the directory already has one; it is
    /// never replaced (its certificates would stop being trusted).
    CaExists(PathBuf),
    /// `ca.pem` is there but `ca-key.pem` (this path) is missing.
    CaKeyMissing(PathBuf),
    /// The CA private key does not belong to the CA certificate.
    CaKeyMismatch,
    /// Two member certificates would speak for the same address; a member
    /// speaks only for itself. Nothing was written.
    SharedAddress {
        /// The certificate being issued.
        member: String,
        /// The other member (issued in the same run or already in the
        /// directory).
        other: String,
        /// The address both would speak for.
        address: MemberAddress,
    },
    /// A member certificate without an IP address among its names would
    /// carry no member role. Nothing was written.
    MemberWithoutAddress(String),
    /// A certificate name that cannot be a file name, or that would
    /// overwrite the CA's files or another certificate's key.
    BadName {
        /// The name.
        name: String,
        /// Why not.
        why: &'static str,
    },
    /// The command line cannot be run as given (the message has the usage).
    Usage(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Certificate(e) => write!(f, "certificate: {e}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::NoCa(dir) => write!(
                f,
                "no CA in {0} (ca.pem and ca-key.pem); to create one, pass --new-ca \
                 (rpcnet-certs --out {0} --new-ca ...)",
                dir.display()
            ),
            Error::CaExists(dir) => write!(
                f,
                "{0} already has a CA (ca.pem); it is not replaced. Omit --new-ca to issue \
                 certificates from it; to rotate, create the new CA in another directory \
                 and trust both during the rollout (docs/PKI.md)",
                dir.display()
            ),
            Error::CaKeyMissing(path) => write!(
                f,
                "{} is missing: issuing certificates needs the CA's private key",
                path.display()
            ),
            Error::CaKeyMismatch => {
                f.write_str("the CA private key does not belong to the CA certificate")
            }
            Error::SharedAddress {
                member,
                other,
                address,
            } => write!(
                f,
                "members {member} and {other} would both speak for {address}: a member speaks \
                 only for itself. Give each member its own IP address (--san 10.0.0.2), or its \
                 own port on a shared host (--san 127.0.0.1:7001); a one-host cluster whose \
                 ports are not fixed can share one member certificate"
            ),
            Error::MemberWithoutAddress(name) => write!(
                f,
                "member {name} has no IP address among its names (--san IP or IP:PORT): the \
                 member role names the addresses a member speaks for"
            ),
            Error::BadName { name, why } => write!(f, "certificate name {name:?}: {why}"),
            Error::Usage(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Certificate(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Certificate(e)
    }
}

/// What a certificate lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A cluster member: server and client identity, plus the member role
    /// for its IP addresses.
    Member,
    /// A server or client identity without the member role.
    Node,
    /// An application client: client authentication only, no member role.
    Client,
}

/// One certificate to issue: its name (the file name and a DNS name in
/// the certificate), its role, and its own subject alternative names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// Certificate name: `<name>.pem` / `<name>-key.pem`, and a DNS name.
    pub name: String,
    /// What the holder may do.
    pub role: Role,
    /// DNS names, IP addresses, or `IP:PORT` (a member's role for that one
    /// address; `[v6]:port` for IPv6). The certificate carries these and
    /// no others.
    pub sans: Vec<String>,
}

impl CertSpec {
    /// A certificate of `role` for `name` with these names.
    pub fn new<S: Into<String>>(
        role: Role,
        name: impl Into<String>,
        sans: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            name: name.into(),
            role,
            sans: sans.into_iter().map(Into::into).collect(),
        }
    }

    /// A [member](Role::Member) certificate.
    pub fn member<S: Into<String>>(
        name: impl Into<String>,
        sans: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::new(Role::Member, name, sans)
    }

    /// A plain [node](Role::Node) certificate.
    pub fn node<S: Into<String>>(
        name: impl Into<String>,
        sans: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::new(Role::Node, name, sans)
    }

    /// An application [client](Role::Client) certificate.
    pub fn client<S: Into<String>>(
        name: impl Into<String>,
        sans: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::new(Role::Client, name, sans)
    }

    /// The addresses a member certificate speaks for: one per IP address
    /// or `IP:PORT` among its names. Empty for other roles.
    pub fn member_addresses(&self) -> Vec<MemberAddress> {
        if self.role != Role::Member {
            return Vec::new();
        }
        let mut addresses = Vec::new();
        for san in &self.sans {
            if let Some(address) = MemberAddress::from_san(san) {
                if !addresses.contains(&address) {
                    addresses.push(address);
                }
            }
        }
        addresses
    }

    /// The DNS names and IP addresses the certificate carries: the name,
    /// then its SANs (an `IP:PORT` contributes its IP), without repeats.
    fn names(&self) -> Vec<String> {
        let mut names = vec![self.name.clone()];
        for san in &self.sans {
            let name = match MemberAddress::from_san(san) {
                Some(address) => address.ip.to_string(),
                None => san.clone(),
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

/// An address a member certificate speaks for: an IP address with any
/// port, or one `IP:PORT`. Written into the certificate as
/// `rpcnet-member://<ip>` or `rpcnet-member://<ip>:<port>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberAddress {
    /// The host.
    pub ip: IpAddr,
    /// `None`: any port on `ip`.
    pub port: Option<u16>,
}

impl MemberAddress {
    /// The address a SAN names: `IP`, `[IPv6]` or `IP:PORT`; `None` for a
    /// DNS name.
    pub fn from_san(san: &str) -> Option<Self> {
        if let Ok(addr) = san.parse::<SocketAddr>() {
            return Some(Self {
                ip: addr.ip(),
                port: Some(addr.port()),
            });
        }
        let bare = san
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(san);
        bare.parse().ok().map(|ip| Self { ip, port: None })
    }

    /// Reads a member URI (`rpcnet-member://...`); `None` for other URIs.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(MEMBER_URI_SCHEME)?;
        Self::from_san(rest.strip_suffix('/').unwrap_or(rest))
    }

    /// The member URI for this address.
    pub fn uri(&self) -> String {
        match (self.ip, self.port) {
            (ip, Some(port)) => format!("{MEMBER_URI_SCHEME}{}", SocketAddr::new(ip, port)),
            (IpAddr::V4(v4), None) => format!("{MEMBER_URI_SCHEME}{v4}"),
            (IpAddr::V6(v6), None) => format!("{MEMBER_URI_SCHEME}[{v6}]"),
        }
    }

    /// Whether a holder of `self` and a holder of `other` could both speak
    /// for one node address (same host, and a port in common).
    pub fn overlaps(&self, other: &MemberAddress) -> bool {
        self.ip == other.ip
            && match (self.port, other.port) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for MemberAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}", SocketAddr::new(self.ip, port)),
            None => write!(f, "{} (any port)", self.ip),
        }
    }
}

/// A development certificate authority.
pub struct DevCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM-encoded.
pub struct NodeCert {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// PKCS#8 private key (PEM).
    pub key_pem: String,
}

fn long_lived(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(9999, 12, 31);
}

impl DevCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<Self, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        long_lived(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An existing CA, from its certificate and PKCS#8 private key (PEM),
    /// such as a `ca.pem` / `ca-key.pem` pair written earlier (by this
    /// crate or by openssl).
    ///
    /// # Errors
    /// [`Error::Certificate`] if either does not parse,
    /// [`Error::CaKeyMismatch`] if the key is not the certificate's.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let der = pem_der(cert_pem).ok_or(rcgen::Error::CouldNotParseCertificate)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| rcgen::Error::CouldNotParseCertificate)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::CaKeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&der.into(), key)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    /// The CA certificate (what every node and client trusts).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A plain certificate for node `name`, valid for `name` and every
    /// entry of `sans`, for both server and client use.
    pub fn node(&self, name: &str, sans: &[String]) -> Result<NodeCert, Error> {
        self.issue(&CertSpec::node(name, sans.iter().cloned()))
    }

    /// A member certificate: [`node`](Self::node) plus a member URI for
    /// every IP address (or `IP:PORT`) in `sans`.
    pub fn member(&self, name: &str, sans: &[String]) -> Result<NodeCert, Error> {
        self.issue(&CertSpec::member(name, sans.iter().cloned()))
    }

    /// An application client certificate (client authentication only).
    pub fn client(&self, name: &str, sans: &[String]) -> Result<NodeCert, Error> {
        self.issue(&CertSpec::client(name, sans.iter().cloned()))
    }

    /// Issues the certificate `spec` describes, with exactly its names.
    ///
    /// # Errors
    /// [`Error::MemberWithoutAddress`] for a member without an IP address;
    /// [`Error::Certificate`] for a name that is not a valid DNS name.
    pub fn issue(&self, spec: &CertSpec) -> Result<NodeCert, Error> {
        let mut params = CertificateParams::new(spec.names())?;
        if spec.role == Role::Member {
            let addresses = spec.member_addresses();
            if addresses.is_empty() {
                return Err(Error::MemberWithoutAddress(spec.name.clone()));
            }
            for address in addresses {
                let uri = address.uri().try_into()?;
                params.subject_alt_names.push(SanType::URI(uri));
            }
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.name.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match spec.role {
            Role::Member | Role::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        long_lived(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The DER of the first certificate in a PEM text.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    (pem.label == "CERTIFICATE").then_some(pem.contents)
}

/// The member addresses of the first certificate in a PEM text, and
/// whether it was issued by `ca_pem`'s subject. `None` if it does not
/// parse.
fn member_addresses_of(cert_pem: &str, ca_pem: &str) -> Option<(Vec<MemberAddress>, bool)> {
    let der = pem_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let addresses = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) => MemberAddress::from_uri(uri),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let ca_der = pem_der(ca_pem)?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).ok()?;
    let ours = cert.issuer().as_raw() == ca.subject().as_raw();
    Some((addresses, ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> MemberAddress {
        MemberAddress::from_san(s).unwrap()
    }

    #[test]
    fn member_addresses_round_trip_through_their_uri() {
        for san in ["10.0.0.2", "10.0.0.2:7001", "::1", "[::1]", "[::1]:9"] {
            let address = addr(san);
            assert_eq!(MemberAddress::from_uri(&address.uri()), Some(address));
        }
        assert_eq!(addr("[::1]").uri(), "rpcnet-member://[::1]");
        assert_eq!(addr("10.0.0.2:7001").uri(), "rpcnet-member://10.0.0.2:7001");
        assert_eq!(MemberAddress::from_san("worker-a.example"), None);
    }

    #[test]
    fn an_address_with_any_port_overlaps_every_port_of_its_host() {
        assert!(addr("10.0.0.2").overlaps(&addr("10.0.0.2:7001")));
        assert!(addr("10.0.0.2:7001").overlaps(&addr("10.0.0.2:7001")));
        assert!(!addr("10.0.0.2:7001").overlaps(&addr("10.0.0.2:7002")));
        assert!(!addr("10.0.0.2").overlaps(&addr("10.0.0.3")));
    }

    #[test]
    fn only_members_speak_for_addresses() {
        let sans = ["localhost", "10.0.0.2", "10.0.0.2:7001"];
        assert_eq!(
            CertSpec::member("a", sans).member_addresses(),
            [addr("10.0.0.2"), addr("10.0.0.2:7001")]
        );
        assert!(CertSpec::node("a", sans).member_addresses().is_empty());
        assert!(CertSpec::client("a", sans).member_addresses().is_empty());
        assert_eq!(
            CertSpec::member("a", sans).names(),
            ["a", "localhost", "10.0.0.2"]
        );
    }
}
