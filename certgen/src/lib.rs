//! A development PKI for rpcnet clusters: one CA, kept in a directory, and
//! one certificate per node carrying only that node's names and addresses.
//!
//! Three kinds of certificate, matching the cluster's trust model:
//!
//! * a *member* certificate ([`Role::Member`]) is a server and client
//!   identity that also carries the cluster member role: a URI name
//!   `rpcnet-member://<host>` (any port on that host) or
//!   `rpcnet-member://<host>:<port>` (that one address) for each of *its
//!   own* addresses, the host being an IP address or a DNS name
//!   ([`MemberHost`]). A member speaks only for itself, so two members
//!   never share an address or a host name (see
//!   [`MemberAddress::overlaps`]);
//! * a *node* certificate ([`Role::Node`]) is a server or client identity
//!   without the member role;
//! * a *client* certificate ([`Role::Client`]) is an application client's
//!   identity (client authentication only, no member role). Application
//!   clients may also present no certificate at all and only trust the CA.
//!
//! Layout: this file holds the CA ([`DevCa`]) and what one certificate is
//! made of ([`CertSpec`], [`MemberAddress`], [`MemberHost`]); [`CaDir`]
//! (`dir.rs`) keeps a CA and its certificates in a directory, refusing to
//! replace a CA and to let two members speak for one address or host
//! name; [`cli`] is the command line of `rpcnet-certs` and `rpcnet certs`.
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
//!     // A member named by its DNS name only (any port on that host).
//!     CertSpec::member("worker-0", ["worker-0.workers.default.svc"]),
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
    /// A member certificate without an address or host name of its own
    /// among its names (`localhost` names every host, so no member) would
    /// carry no member role. Nothing was written.
    MemberWithoutAddress(String),
    /// A member's name that cannot name a member: neither an IP address
    /// nor a valid DNS host name (letters, digits and `-` in labels of 1
    /// to 63 characters, 253 in all, no trailing dot), a wildcard, or a
    /// bad port. Nothing was written.
    BadMemberSan {
        /// The member certificate.
        member: String,
        /// The name as given.
        san: String,
        /// Why not.
        why: &'static str,
    },
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
                 only for itself. Give each member its own IP address (--san 10.0.0.2) or host \
                 name (--san worker-0.example), or its own port on a shared host (--san \
                 127.0.0.1:7001); a one-host cluster whose ports are not fixed can share one \
                 member certificate"
            ),
            Error::MemberWithoutAddress(name) => write!(
                f,
                "member {name} has no address of its own among its names (--san IP, IP:PORT, \
                 NAME or NAME:PORT; localhost names every host, so no member): the member role \
                 names the addresses a member speaks for"
            ),
            Error::BadMemberSan { member, san, why } => write!(
                f,
                "member {member}: {san:?} cannot name a member: {why} (a member's --san is an \
                 IP address, IP:PORT, [IPv6]:PORT, a DNS host name or NAME:PORT)"
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
    /// for its own IP addresses and host names.
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
    /// DNS names, IP addresses, `IP:PORT` or `NAME:PORT` (a member's role
    /// for that one port of the host; `[v6]:port` for IPv6). The
    /// certificate carries these (without their ports); a member's also
    /// become its member URIs.
    pub sans: Vec<String>,
    /// Further DNS names or IP addresses the certificate carries for TLS
    /// only, never as member URIs: a name clients dial that is not the
    /// member's own (a Kubernetes service in front of it). Empty unless
    /// set with [`with_tls_sans`](Self::with_tls_sans).
    pub tls_sans: Vec<String>,
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
            tls_sans: Vec::new(),
        }
    }

    /// This certificate, also carrying `names` for TLS only
    /// ([`tls_sans`](Self::tls_sans)).
    pub fn with_tls_sans<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.tls_sans.extend(names.into_iter().map(Into::into));
        self
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

    /// The addresses a member certificate speaks for: one per `IP`,
    /// `IP:PORT`, `NAME` or `NAME:PORT` among its names, without repeats
    /// (`localhost` names every host, so it names no member). Empty for
    /// other roles.
    ///
    /// # Errors
    /// [`Error::BadMemberSan`] for a member's name that is none of these:
    /// not a valid DNS host name, a wildcard, or a bad port.
    pub fn member_addresses(&self) -> Result<Vec<MemberAddress>, Error> {
        if self.role != Role::Member {
            return Ok(Vec::new());
        }
        let mut addresses = Vec::new();
        for san in &self.sans {
            let address = MemberAddress::parse(san).map_err(|why| Error::BadMemberSan {
                member: self.name.clone(),
                san: san.clone(),
                why,
            })?;
            if let Some(address) = address {
                if !addresses.contains(&address) {
                    addresses.push(address);
                }
            }
        }
        Ok(addresses)
    }

    /// The DNS names and IP addresses the certificate carries: the name,
    /// then its SANs without their ports (a name in a TLS certificate has
    /// no port: `IP:PORT` contributes its IP, `NAME:PORT` its name, a
    /// member's names are lowercase), without repeats (names compared
    /// ignoring case).
    fn names(&self) -> Vec<String> {
        let mut names = vec![self.name.clone()];
        for san in &self.sans {
            let name = match MemberAddress::parse(san) {
                Ok(Some(address)) if self.role == Role::Member => address.host.to_string(),
                Ok(Some(MemberAddress {
                    host: MemberHost::Ip(ip),
                    ..
                })) => ip.to_string(),
                _ => match split_port(san) {
                    Ok((host, Some(_))) if !host.is_empty() => host.to_string(),
                    _ => san.clone(),
                },
            };
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                names.push(name);
            }
        }
        for name in &self.tls_sans {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.clone());
            }
        }
        names
    }
}

/// The host part of a [`MemberAddress`]: an IP address, or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MemberHost {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS host name, lowercase (host names compare case-insensitively):
    /// letters, digits and `-` in dot-separated labels, no wildcard.
    Name(String),
}

impl MemberHost {
    /// Whether `self` and `other` are the same host: equal IP addresses,
    /// or names equal ignoring case. An IP address and a name are never
    /// the same host (what a name resolves to is not known here).
    fn same_host(&self, other: &MemberHost) -> bool {
        match (self, other) {
            (MemberHost::Ip(a), MemberHost::Ip(b)) => a == b,
            (MemberHost::Name(a), MemberHost::Name(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }
}

impl fmt::Display for MemberHost {
    /// The address or the name, as a TLS subject alternative name carries
    /// it (IPv6 without brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberHost::Ip(ip) => write!(f, "{ip}"),
            MemberHost::Name(name) => f.write_str(name),
        }
    }
}

/// An address a member certificate speaks for: a host (an IP address or a
/// DNS name) with any port, or one port on it. Written into the
/// certificate as `rpcnet-member://<host>` or
/// `rpcnet-member://<host>:<port>` (IPv6 in brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberAddress {
    /// The host.
    pub host: MemberHost,
    /// `None`: any port on `host`.
    pub port: Option<u16>,
}

impl MemberAddress {
    /// The address a SAN names: `IP`, `[IPv6]`, `IP:PORT` (`[IPv6]:PORT`),
    /// `NAME` or `NAME:PORT`. `None` for anything else: a SAN that is no
    /// valid host name (see [`CertSpec::member_addresses`], which says
    /// why), and `localhost` (or a name under `.localhost`), which names
    /// every host and so no member.
    pub fn from_san(san: &str) -> Option<Self> {
        Self::parse(san).ok().flatten()
    }

    /// [`from_san`](Self::from_san), with why a SAN is refused:
    /// `Ok(None)` for `localhost`, `Err` for a SAN that cannot name a
    /// member.
    fn parse(san: &str) -> Result<Option<Self>, &'static str> {
        if let Ok(addr) = san.parse::<SocketAddr>() {
            return Ok(Some(Self {
                host: MemberHost::Ip(addr.ip()),
                port: Some(addr.port()),
            }));
        }
        let bare = san
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(san);
        if let Ok(ip) = bare.parse() {
            return Ok(Some(Self {
                host: MemberHost::Ip(ip),
                port: None,
            }));
        }
        let (host, port) = split_port(san)?;
        if host.parse::<IpAddr>().is_ok() {
            // `1:2:3:4:5:6:7:8:7000` and the like: an IPv6 address takes
            // a port only in brackets.
            return Err("an IPv6 address with a port is written [IPv6]:PORT");
        }
        let name = host_name(host)?;
        if name == "localhost" || name.ends_with(".localhost") {
            return Ok(None);
        }
        Ok(Some(Self {
            host: MemberHost::Name(name),
            port,
        }))
    }

    /// Reads a member URI (`rpcnet-member://...`); `None` for other URIs.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(MEMBER_URI_SCHEME)?;
        Self::from_san(rest.strip_suffix('/').unwrap_or(rest))
    }

    /// The member URI for this address.
    pub fn uri(&self) -> String {
        format!("{MEMBER_URI_SCHEME}{}", self.authority())
    }

    /// `host` or `host:port`, IPv6 in brackets.
    fn authority(&self) -> String {
        match (&self.host, self.port) {
            (MemberHost::Ip(ip), Some(port)) => SocketAddr::new(*ip, port).to_string(),
            (MemberHost::Ip(IpAddr::V6(v6)), None) => format!("[{v6}]"),
            (host, Some(port)) => format!("{host}:{port}"),
            (host, None) => host.to_string(),
        }
    }

    /// Whether a holder of `self` and a holder of `other` could both speak
    /// for one node address: the same host (equal IP addresses, or names
    /// equal ignoring case), and a port in common.
    pub fn overlaps(&self, other: &MemberAddress) -> bool {
        self.host.same_host(&other.host)
            && match (self.port, other.port) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for MemberAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(_) => f.write_str(&self.authority()),
            None => write!(f, "{} (any port)", self.authority()),
        }
    }
}

/// A SAN's host and port: `HOST:PORT` when what follows the last `:` is
/// a port, else the whole SAN and no port.
fn split_port(san: &str) -> Result<(&str, Option<u16>), &'static str> {
    let Some((host, port)) = san.rsplit_once(':') else {
        return Ok((san, None));
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the part after ':' is not a port number");
    }
    let port = port
        .parse()
        .map_err(|_| "the port is not a number from 0 to 65535")?;
    Ok((host, Some(port)))
}

/// Checks that `host` is a DNS host name a member can be named by, and
/// returns it lowercase.
fn host_name(host: &str) -> Result<String, &'static str> {
    if host.is_empty() {
        return Err("the host name is empty");
    }
    if host.contains('*') {
        return Err("a wildcard cannot name a member: a member speaks only for its own host");
    }
    if host.ends_with('.') {
        return Err("the host name ends with a dot: write it without the trailing dot");
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters");
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("the host name has an empty label (a leading dot or two dots in a row)");
        }
        if label.len() > 63 {
            return Err("a label of the host name is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("a host name has only letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label of the host name starts or ends with '-'");
        }
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("neither an IP address nor a host name (its last label is all digits)");
    }
    Ok(host.to_ascii_lowercase())
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
    /// every IP address, host name, `IP:PORT` or `NAME:PORT` in `sans`
    /// (see [`CertSpec::member_addresses`]).
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
    /// [`Error::MemberWithoutAddress`] for a member without an address
    /// of its own; [`Error::BadMemberSan`] for a member's name that cannot
    /// name a member; [`Error::Certificate`] for a name that is not a
    /// valid DNS name.
    pub fn issue(&self, spec: &CertSpec) -> Result<NodeCert, Error> {
        let mut params = CertificateParams::new(spec.names())?;
        if spec.role == Role::Member {
            let addresses = spec.member_addresses()?;
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

    fn name(host: &str, port: Option<u16>) -> MemberAddress {
        MemberAddress {
            host: MemberHost::Name(host.to_string()),
            port,
        }
    }

    /// Why `san` cannot name a member.
    fn refused(san: &str) -> &'static str {
        MemberAddress::parse(san).unwrap_err()
    }

    #[test]
    fn member_addresses_round_trip_through_their_uri() {
        for san in [
            "10.0.0.2",
            "10.0.0.2:7001",
            "::1",
            "[::1]",
            "[::1]:9",
            "worker-a.example",
            "worker-a.example:7000",
            "worker-0",
        ] {
            let address = addr(san);
            assert_eq!(MemberAddress::from_uri(&address.uri()), Some(address));
        }
        assert_eq!(addr("[::1]").uri(), "rpcnet-member://[::1]");
        assert_eq!(addr("10.0.0.2:7001").uri(), "rpcnet-member://10.0.0.2:7001");
        assert_eq!(
            addr("worker-a.example:7000").uri(),
            "rpcnet-member://worker-a.example:7000"
        );
        assert_eq!(
            MemberAddress::from_uri("rpcnet-member://worker-0.workers.default.svc/"),
            Some(name("worker-0.workers.default.svc", None))
        );
        assert_eq!(MemberAddress::from_uri("https://worker-a.example"), None);
    }

    #[test]
    fn a_dns_name_is_a_member_host_stored_lowercase() {
        assert_eq!(addr("worker-a.example"), name("worker-a.example", None));
        assert_eq!(
            addr("Worker-A.Example:7000"),
            name("worker-a.example", Some(7000))
        );
        assert_eq!(
            addr("WORKER-A.example").uri(),
            "rpcnet-member://worker-a.example"
        );
        assert_eq!(
            addr("worker-a.example").to_string(),
            "worker-a.example (any port)"
        );
        assert_eq!(
            addr("worker-a.example:7000").to_string(),
            "worker-a.example:7000"
        );
        assert_eq!(addr("[::1]").to_string(), "[::1] (any port)");
        // localhost names every host, so it names no member.
        for san in ["localhost", "LocalHost:7001", "a.localhost"] {
            assert_eq!(MemberAddress::parse(san), Ok(None), "{san}");
        }
    }

    #[test]
    fn names_that_are_no_host_names_are_refused_with_the_reason() {
        assert!(refused("*.workers.default.svc").contains("wildcard"));
        assert!(refused("*").contains("wildcard"));
        assert!(refused("worker_0.example").contains("letters, digits"));
        assert!(refused("worker-0.example.").contains("trailing dot"));
        assert!(refused("worker..example").contains("empty label"));
        assert!(refused(".example").contains("empty label"));
        assert!(refused("-worker.example").contains("starts or ends with '-'"));
        assert!(refused(&"a".repeat(64)).contains("longer than 63"));
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        assert!(refused(&long).contains("longer than 253"));
        assert!(refused("10.0.0.300").contains("all digits"));
        assert!(refused("worker.example:http").contains("not a port"));
        assert!(refused("worker.example:").contains("not a port"));
        assert!(refused("worker.example:70000").contains("0 to 65535"));
        assert!(refused("10.0.0.2:70000").contains("0 to 65535"));
        assert!(refused("fe80::1:x").contains("not a port"));
        assert!(refused("").contains("empty"));
        assert_eq!(MemberAddress::from_san("*.example"), None);
        // The longest valid name is accepted.
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), 253);
        assert_eq!(addr(&longest), name(&longest, None));

        let err = CertSpec::member("w", ["10.0.0.2", "*.workers.default.svc"])
            .member_addresses()
            .unwrap_err();
        assert!(
            matches!(&err, Error::BadMemberSan { member, san, .. }
                if member == "w" && san == "*.workers.default.svc"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("member w"), "{message}");
        assert!(message.contains("\"*.workers.default.svc\""), "{message}");
        assert!(message.contains("wildcard"), "{message}");
        // Nodes keep their names as given: a wildcard is a TLS name.
        assert!(CertSpec::node("n", ["*.example"])
            .member_addresses()
            .unwrap()
            .is_empty());
        assert_eq!(
            CertSpec::node("n", ["*.example"]).names(),
            ["n", "*.example"]
        );
    }

    #[test]
    fn an_address_with_any_port_overlaps_every_port_of_its_host() {
        assert!(addr("10.0.0.2").overlaps(&addr("10.0.0.2:7001")));
        assert!(addr("10.0.0.2:7001").overlaps(&addr("10.0.0.2:7001")));
        assert!(!addr("10.0.0.2:7001").overlaps(&addr("10.0.0.2:7002")));
        assert!(!addr("10.0.0.2").overlaps(&addr("10.0.0.3")));
    }

    #[test]
    fn names_overlap_ignoring_case_and_never_overlap_an_ip() {
        let w = addr("worker-0.example");
        assert!(w.overlaps(&addr("WORKER-0.example:7000")));
        assert!(addr("worker-0.example:7000").overlaps(&w));
        assert!(!addr("worker-0.example:7000").overlaps(&addr("worker-0.example:7001")));
        assert!(!w.overlaps(&addr("worker-1.example")));
        assert!(!w.overlaps(&addr("worker-0.example.org")));
        assert!(!w.overlaps(&addr("10.0.0.2")));
        assert!(!addr("10.0.0.2").overlaps(&w));
        // Names built by hand, not lowercased, still compare ignoring case.
        assert!(name("Worker-0.Example", None).overlaps(&w));
    }

    #[test]
    fn only_members_speak_for_addresses() {
        let sans = ["localhost", "10.0.0.2", "10.0.0.2:7001"];
        assert_eq!(
            CertSpec::member("a", sans).member_addresses().unwrap(),
            [addr("10.0.0.2"), addr("10.0.0.2:7001")]
        );
        assert!(CertSpec::node("a", sans)
            .member_addresses()
            .unwrap()
            .is_empty());
        assert!(CertSpec::client("a", sans)
            .member_addresses()
            .unwrap()
            .is_empty());
        assert_eq!(
            CertSpec::member("a", sans).names(),
            ["a", "localhost", "10.0.0.2"]
        );
    }

    #[test]
    fn a_members_host_names_are_its_addresses_and_its_tls_names() {
        let spec = CertSpec::member(
            "worker-0",
            [
                "Worker-0.Workers.default.svc",
                "worker-0.workers.default.svc:7000",
                "10.0.0.2:7001",
                "localhost:7001",
            ],
        );
        assert_eq!(
            spec.member_addresses().unwrap(),
            [
                name("worker-0.workers.default.svc", None),
                name("worker-0.workers.default.svc", Some(7000)),
                addr("10.0.0.2:7001"),
            ]
        );
        // TLS names carry no port.
        assert_eq!(
            spec.names(),
            [
                "worker-0",
                "worker-0.workers.default.svc",
                "10.0.0.2",
                "localhost"
            ]
        );
        assert_eq!(
            CertSpec::node("n", ["gateway.example:443", "10.0.0.9:443"]).names(),
            ["n", "gateway.example", "10.0.0.9"]
        );
        // A member whose only name is localhost speaks for no one.
        assert!(CertSpec::member("a", ["localhost"])
            .member_addresses()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_member_certificate_carries_its_host_names() {
        let ca = DevCa::new("test CA").unwrap();
        let cert = ca
            .member("worker-0", &["worker-0.workers.default.svc:7000".into()])
            .unwrap();
        let der = pem_der(&cert.cert_pem).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let names: Vec<String> = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "DNSName(worker-0)",
                "DNSName(worker-0.workers.default.svc)",
                "URI(rpcnet-member://worker-0.workers.default.svc:7000)"
            ]
        );
        let (addresses, ours) = member_addresses_of(&cert.cert_pem, ca.cert_pem()).unwrap();
        assert!(ours);
        assert_eq!(
            addresses,
            [name("worker-0.workers.default.svc", Some(7000))]
        );
        assert!(matches!(
            ca.member("w", &["bad_name".into()]),
            Err(Error::BadMemberSan { .. })
        ));
        assert!(matches!(
            ca.member("w", &["localhost".into()]),
            Err(Error::MemberWithoutAddress(_))
        ));
    }
}
