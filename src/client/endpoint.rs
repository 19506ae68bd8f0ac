//! Client QUIC endpoints, shared by the clients of one runtime that are
//! configured alike.
//!
//! A QUIC client endpoint is a UDP socket, packet rings and three tasks;
//! building one, with its TLS configuration, is about a fifth of a fresh
//! connection's cost. Like a TCP stack, one endpoint serves any number of
//! connections, so [`RpcClient::connect`](super::RpcClient::connect) reuses a
//! live endpoint when one matches: same runtime (the endpoint's tasks run
//! on it), same TLS material (by content, so rotated files make a new one)
//! and same endpoint-wide settings. An endpoint lives as long as a client
//! that uses it; nothing lingers after the last one is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use crate::quic::start_error;
use crate::tls::{client_material, client_tls, ClientMaterial};
use crate::{RpcConfig, RpcError};

/// A started client endpoint; dropping the last handle stops it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    quic: s2n_quic::Client,
}

impl Endpoint {
    pub(crate) fn quic(&self) -> &s2n_quic::Client {
        &self.quic
    }
}

/// What must match for two clients to share an endpoint.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    runtime: tokio::runtime::Id,
    material: ClientMaterial,
    /// The configuration with per-connection settings blanked.
    settings: RpcConfig,
}

/// Live shared endpoints. Entries whose endpoint has been dropped are
/// pruned on every lookup, so the list holds at most one dead entry per
/// distinct configuration between connects.
static SHARED: Mutex<Vec<(Key, Weak<Endpoint>)>> = Mutex::new(Vec::new());

/// An endpoint for a client with `config`: a shared live one if it matches
/// (unless the configuration asks for its own), otherwise a new one.
pub(crate) fn endpoint_for(config: &RpcConfig) -> Result<Arc<Endpoint>, RpcError> {
    let material = client_material(config)?;
    if !config.shared_endpoint() {
        return start(config, &material).map(Arc::new);
    }
    let key = Key {
        runtime: tokio::runtime::Handle::try_current()
            .map_err(|e| RpcError::ConfigError(format!("no tokio runtime: {e}")))?
            .id(),
        material,
        settings: config.endpoint_settings(),
    };
    let mut shared = crate::sync::lock(&SHARED);
    shared.retain(|(_, endpoint)| endpoint.strong_count() > 0);
    if let Some(endpoint) = shared
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, endpoint)| endpoint.upgrade())
    {
        return Ok(endpoint);
    }
    let endpoint = Arc::new(start(config, &key.material)?);
    shared.push((key, Arc::downgrade(&endpoint)));
    Ok(endpoint)
}

fn start(config: &RpcConfig, material: &ClientMaterial) -> Result<Endpoint, RpcError> {
    let local: SocketAddr = config.parsed_bind_address()?;
    let quic = s2n_quic::Client::builder()
        .with_tls(client_tls(material)?)
        .map_err(|e| start_error(local, e))?
        .with_io(crate::quic::io(config, local, 1 << 20)?)
        .map_err(|e| start_error(local, e))?
        .with_limits(crate::quic::limits(config, 0)?)
        .map_err(|e| start_error(local, e))?
        // The server's verified certificate, for connections that must
        // reach a particular member.
        .with_event(crate::server::context::PeerCertificate)
        .map_err(|e| start_error(local, e))?
        .start()
        .map_err(|e| start_error(local, e))?;
    Ok(Endpoint { quic })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cert: &str) -> RpcConfig {
        RpcConfig::new(
            concat!(env!("CARGO_MANIFEST_DIR"), "/certs/").to_owned() + cert,
            "127.0.0.1:0",
        )
    }

    #[tokio::test]
    async fn alike_clients_share_and_others_do_not() {
        let a = endpoint_for(&config("ca.pem")).unwrap();
        let b = endpoint_for(&config("ca.pem").with_server_name("elsewhere")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "server name is per connection");

        let other_ca = endpoint_for(&config("other-ca.pem")).unwrap();
        assert!(!Arc::ptr_eq(&a, &other_ca), "different trust");
        let other_mtu = endpoint_for(&config("ca.pem").with_max_mtu(1500)).unwrap();
        assert!(!Arc::ptr_eq(&a, &other_mtu), "different endpoint settings");
        let own = endpoint_for(&config("ca.pem").with_shared_endpoint(false)).unwrap();
        assert!(!Arc::ptr_eq(&a, &own), "opted out");
    }

    /// A member dials each peer with the peer's address as the member its
    /// certificate must name. That check runs per connection: the peers'
    /// connections share one endpoint (each had its own UDP socket,
    /// packet rings and tasks, so a member of a cluster of n held n − 1
    /// endpoints).
    #[tokio::test]
    async fn members_dialing_different_members_share_an_endpoint() {
        let member = |ip: &str| {
            let mut c = config("ca.pem").with_server_name(ip);
            c.expected_member = Some(crate::config::ExpectedMember::At(
                format!("{ip}:7000").parse::<SocketAddr>().unwrap().into(),
            ));
            c
        };
        let a = endpoint_for(&member("10.0.0.1")).unwrap();
        let b = endpoint_for(&member("10.0.0.2")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[tokio::test]
    async fn an_endpoint_ends_with_its_last_client() {
        let a = endpoint_for(&config("ca.pem").with_max_mtu(1400)).unwrap();
        let weak = Arc::downgrade(&a);
        drop(a);
        assert!(
            weak.upgrade().is_none(),
            "the cache keeps no endpoint alive"
        );
        let b = endpoint_for(&config("ca.pem").with_max_mtu(1400)).unwrap();
        assert!(b.quic().local_addr().is_ok());
    }

    #[test]
    fn runtimes_do_not_share() {
        let endpoint_in_new_runtime = || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let endpoint = runtime.block_on(async { endpoint_for(&config("ca.pem")).unwrap() });
            (runtime, endpoint)
        };
        let (_first_runtime, first) = endpoint_in_new_runtime();
        let (_second_runtime, second) = endpoint_in_new_runtime();
        assert!(!Arc::ptr_eq(&first, &second));
    }
}
