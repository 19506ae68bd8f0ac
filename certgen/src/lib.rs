//! A development PKI for rpcnet clusters: one CA and any number of node
//! certificates, usable both as server certificates and as client
//! identities. *Member* certificates also carry the cluster member role:
//! a URI name `rpcnet-member://<ip>` per IP address they are valid for,
//! which is what a node needs to take part in membership (gossip). A
//! node's application clients need no certificate at all: they only trust
//! the CA.
//!
//! Certificates are valid from 2000-01-01 to 9999-12-31 so development
//! clusters never hit expiry. Not for production: keys are written
//! unencrypted.

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub use rcgen::Error;

pub mod cli;

/// A development certificate authority.
pub struct DevCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A node's certificate and private key, PEM-encoded.
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

    /// The CA certificate (what every node and client trusts).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A certificate for node `name`, valid for `name` and every entry of
    /// `sans` (DNS names or IP addresses), for both server and client use.
    /// It does not carry the member role (see [`member`](Self::member)).
    pub fn node(&self, name: &str, sans: &[String]) -> Result<NodeCert, Error> {
        self.issue(name, sans, false)
    }

    /// A cluster member certificate: [`node`](Self::node) plus a URI name
    /// `rpcnet-member://<ip>` for every IP address in `sans` (the member
    /// may speak for any port on those hosts).
    pub fn member(&self, name: &str, sans: &[String]) -> Result<NodeCert, Error> {
        self.issue(name, sans, true)
    }

    fn issue(&self, name: &str, sans: &[String], member: bool) -> Result<NodeCert, Error> {
        let mut names = vec![name.to_string()];
        names.extend(sans.iter().filter(|s| s.as_str() != name).cloned());
        let mut params = CertificateParams::new(names)?;
        if member {
            for ip in sans
                .iter()
                .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
            {
                let uri = match ip {
                    std::net::IpAddr::V4(v4) => format!("rpcnet-member://{v4}"),
                    std::net::IpAddr::V6(v6) => format!("rpcnet-member://[{v6}]"),
                };
                params.subject_alt_names.push(SanType::URI(uri.try_into()?));
            }
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        long_lived(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `ca.pem`, `ca-key.pem` and `<node>.pem` / `<node>-key.pem`
    /// for every node into `dir`; returns the files written.
    pub fn write(
        &self,
        dir: &Path,
        nodes: &[String],
        sans: &[String],
    ) -> std::io::Result<Vec<PathBuf>> {
        self.write_all(dir, &[], nodes, sans)
    }

    /// Like [`write`](Self::write), with `members` issued as
    /// [member certificates](Self::member) and `nodes` as plain ones.
    pub fn write_all(
        &self,
        dir: &Path,
        members: &[String],
        nodes: &[String],
        sans: &[String],
    ) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        let mut put = |file: String, contents: &str| -> std::io::Result<()> {
            let path = dir.join(file);
            std::fs::write(&path, contents)?;
            written.push(path);
            Ok(())
        };
        put("ca.pem".into(), &self.cert_pem)?;
        put("ca-key.pem".into(), &self.key_pem)?;
        let all = members
            .iter()
            .map(|m| (m, true))
            .chain(nodes.iter().map(|n| (n, false)));
        for (node, member) in all {
            let cert = self
                .issue(node, sans, member)
                .map_err(std::io::Error::other)?;
            put(format!("{node}.pem"), &cert.cert_pem)?;
            put(format!("{node}-key.pem"), &cert.key_pem)?;
        }
        Ok(written)
    }
}
