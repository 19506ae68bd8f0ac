//! TLS providers for s2n-quic built from an [`RpcConfig`].
//!
//! Both ends start from an *empty* trust store: a client trusts only the
//! certificate it was configured with, a server that requires client
//! certificates trusts only the configured client CA. The operating
//! system's store is never loaded (which also keeps connection set-up fast).
//! A trusted-CA file may hold several certificates (a bundle, as during a
//! CA rotation): s2n-tls adds every certificate of the PEM text to the
//! trust store (`tests/rpc/tls.rs` shows it).

use s2n_quic::provider::tls::default as s2n_tls;

use crate::wire::ALPN;
use crate::{RpcConfig, RpcError};

fn tls_err(what: &str) -> impl Fn(s2n_tls::error::Error) -> RpcError + '_ {
    move |e| RpcError::TlsError(format!("{what}: {e}"))
}

/// The server side: its certificate chain and key, optionally requiring client certificates.
pub(crate) fn server_tls(config: &RpcConfig) -> Result<s2n_tls::Server, RpcError> {
    let cert = read_pem(config.cert_path(), "certificate")?;
    let key_path = config.key_path().ok_or_else(|| {
        RpcError::ConfigError("a server needs a private key: RpcConfig::with_key_path".into())
    })?;
    let key = read_pem(key_path, "private key")?;
    let mut builder = s2n_tls::Server::builder();
    builder
        .config_mut()
        .with_system_certs(false)
        .map_err(tls_err("configure trust store"))?;
    let mut builder = builder
        .with_application_protocols([ALPN])
        .map_err(tls_err("set ALPN"))?
        .with_certificate(cert, key)
        .map_err(tls_err("load server certificate/key"))?;
    if let Some(ca) = config.client_ca_path() {
        let ca = read_pem(ca, "client CA")?;
        builder = builder
            .with_empty_trust_store()
            .map_err(tls_err("clear trust store"))?
            .with_trusted_certificate(ca)
            .map_err(tls_err("load client CA"))?
            .with_client_authentication()
            .map_err(tls_err("require client certificates"))?
            .with_verify_host_name_callback(AnyName)
            .map_err(tls_err("set client name policy"))?;
        if config.client_auth_optional() {
            builder
                .config_mut()
                .set_client_auth_type(s2n_tls::enums::ClientAuthType::Optional)
                .map_err(tls_err("make client certificates optional"))?;
        }
    }
    builder.build().map_err(tls_err("build server TLS"))
}

/// A peer authenticated by its chain to the trusted CA alone. Servers use
/// it for client certificates (s2n-tls would otherwise match their names
/// against a server name, which servers do not have); the gossip
/// transport for its first packet to a seed, whose member name it does not
/// know yet (the seed then dials back by the name it learned, verified).
struct AnyName;

impl s2n_tls::callbacks::VerifyHostNameCallback for AnyName {
    fn verify_host_name(&self, _host_name: &str) -> bool {
        true
    }
}

/// What a client's TLS configuration is made of: the PEM text of the
/// certificate it trusts and of its identity, if any. Two clients with equal
/// material can share a TLS configuration (and a QUIC endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientMaterial {
    trusted: String,
    identity: Option<(String, String)>,
    /// [`RpcConfig::any_server_name`].
    any_server_name: bool,
}

/// Reads the PEM files a client configuration names.
pub(crate) fn client_material(config: &RpcConfig) -> Result<ClientMaterial, RpcError> {
    let trusted = read_pem(config.cert_path(), "trusted certificate")?;
    let identity = match config.client_identity() {
        Some((cert, key)) => Some((
            read_pem(cert, "client certificate")?,
            read_pem(key, "client key")?,
        )),
        None => None,
    };
    Ok(ClientMaterial {
        trusted,
        identity,
        any_server_name: config.any_server_name,
    })
}

/// The client side: trusts only the configured certificate; presents a
/// client identity if configured.
pub(crate) fn client_tls(material: &ClientMaterial) -> Result<s2n_tls::Client, RpcError> {
    let mut builder = s2n_tls::Client::builder();
    builder
        .config_mut()
        .with_system_certs(false)
        .map_err(tls_err("configure trust store"))?;
    let mut builder = builder
        .with_application_protocols([ALPN])
        .map_err(tls_err("set ALPN"))?
        .with_empty_trust_store()
        .map_err(tls_err("clear trust store"))?
        .with_certificate(material.trusted.as_str())
        .map_err(tls_err("load trusted certificate"))?;
    if let Some((cert, key)) = &material.identity {
        builder = builder
            .with_client_identity(cert.as_str(), key.as_str())
            .map_err(tls_err("load client identity"))?;
    }
    if material.any_server_name {
        builder = builder
            .with_verify_host_name_callback(AnyName)
            .map_err(tls_err("set server name policy"))?;
    }
    builder.build().map_err(tls_err("build client TLS"))
}

/// Reads a PEM file; `what` names it in the error.
pub(crate) fn read_pem(path: &std::path::Path, what: &str) -> Result<String, RpcError> {
    std::fs::read_to_string(path)
        .map_err(|e| RpcError::ConfigError(format!("cannot read {what} {}: {e}", path.display())))
}
