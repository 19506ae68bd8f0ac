//! Gossip over the nodes' RPC endpoints, both halves. Each packet is a
//! unary call to [`GOSSIP_METHOD`] on the peer's RPC address, over a
//! connection that presents this node's member certificate.
//!
//! * Sending ([`Transport`]): one lazily opened connection per peer,
//!   packets sent in the background, failures drop the packet and the
//!   connection (SWIM tolerates loss). At most `gossip_max_connections`
//!   connections are kept (the least recently used closes to make room),
//!   and one unused for `gossip_idle_timeout` closes: SWIM's probes and
//!   gossip pick random members, so without a bound a node would come to
//!   hold a connection to every member, and each member one to it. A
//!   member is dialed at its advertised address (a name is resolved
//!   here) and its certificate is verified against its own host, name or
//!   IP: a node holding another member's certificate cannot receive what
//!   is meant for that member.
//!   An address that is not a known member (a seed being joined through)
//!   is verified by its chain to the cluster CA only: the joining node
//!   does not know the seed's name yet, and sends it nothing but its
//!   announce; the seed answers over its own, verified connection.
//! * Receiving ([`serve`]): the gossip method on the node's own server
//!   accepts a packet only from a caller whose verified certificate is a
//!   member certificate, and queues it with that credential for the core,
//!   which checks that the packet speaks only for addresses the credential
//!   covers. Outsiders can neither join nor inject anything.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use super::credential::MemberCredential;
use super::ClusterConfig;
use crate::client::pool::{ConnectionPool, ServerNames};
use crate::cluster::MemberAddr;
use crate::{CallInfo, RpcConfig, RpcError, ServerHandle};

/// The method gossip packets are sent to.
pub const GOSSIP_METHOD: &str = "rpcnet.cluster/gossip";

/// Largest message on a gossip connection (packets are at most
/// `max_packet_size`; answers are empty).
const MAX_MESSAGE: usize = 64 * 1024;
/// Received packets queued for the core; a full queue drops packets, as a
/// congested network would.
const INBOUND_QUEUE: usize = 1024;

/// Received packets, each with the member credential of its sender.
pub(super) type Inbound = mpsc::Receiver<(Vec<u8>, MemberCredential)>;

/// Registers the gossip method on `server`: the receiving half. Packets
/// over `max_packet` bytes are refused with a protocol error.
pub(super) fn serve(server: &ServerHandle, max_packet: usize) -> Inbound {
    let (packets_tx, packets_rx) = mpsc::channel(INBOUND_QUEUE);
    server.register_internal(GOSSIP_METHOD, move |packet| {
        let packets = packets_tx.clone();
        async move {
            // Membership is for members: the caller's verified
            // certificate must carry the member role.
            let credential = CallInfo::current()
                .and_then(|call| call.peer_certificate.clone())
                .and_then(|der| MemberCredential::from_der(&der))
                .ok_or_else(|| {
                    RpcError::RemoteError("gossip requires a member certificate".into())
                })?;
            if packet.len() > max_packet {
                return Err(RpcError::ProtocolError("gossip packet too large".into()));
            }
            let _ = packets.try_send((packet, credential));
            Ok(Vec::new())
        }
    });
    packets_rx
}

/// The sending half: one connection per peer, opened on first use.
#[derive(Clone)]
pub(crate) struct Transport {
    /// Connections to members, each verified against its own host.
    members: Arc<ConnectionPool<MemberAddr>>,
    /// Connections to addresses that are not known members (seeds).
    seeds: Arc<ConnectionPool<MemberAddr>>,
    send_timeout: Duration,
    in_flight: Arc<Semaphore>,
}

impl Transport {
    /// The sending half for the node whose server is configured by `rpc`
    /// and that advertises `addr`: it connects to peers with the server's own
    /// certificate as its client identity, trusting the cluster CA (the
    /// CA the server verifies clients against), with the gossip settings
    /// of `cluster`.
    ///
    /// # Errors
    /// `RpcError::ConfigError` when the server does not verify client
    /// certificates, has no private key, or its certificate is not a
    /// member certificate for `addr`; `RpcError::TlsError` when the
    /// certificate, key or CA does not load.
    pub(super) fn for_node(
        rpc: &RpcConfig,
        addr: MemberAddr,
        cluster: &ClusterConfig,
    ) -> Result<Self, RpcError> {
        let cluster_ca = rpc.client_ca_path().ok_or_else(|| {
            RpcError::ConfigError(
                "cluster nodes must verify client certificates against the cluster CA: \
                 RpcConfig::with_optional_client_ca_path (application clients then need none)"
                    .into(),
            )
        })?;
        let key = rpc
            .key_path()
            .ok_or_else(|| RpcError::ConfigError("the RPC server has no private key".into()))?;
        // Peers are reached from the family of the node's own endpoint
        // (a name resolves to addresses of that family).
        let bound = rpc.parsed_bind_address()?.ip();
        let bind = if bound.is_ipv6() {
            "[::]:0"
        } else if bound.is_loopback() {
            "127.0.0.1:0"
        } else {
            "0.0.0.0:0"
        };
        let config = RpcConfig::new(cluster_ca, bind)
            .with_server_name(rpc.server_name())
            .with_client_identity(rpc.cert_path(), key)
            .with_max_message_size(MAX_MESSAGE)
            .with_idle_timeout(cluster.gossip_idle_timeout)
            .with_keep_alive_interval(cluster.gossip_keep_alive_interval);
        // Our own client identity and trust store must load before joining anyone.
        crate::tls::client_tls(&crate::tls::client_material(&config)?)?;
        let own_cert = crate::tls::read_pem(rpc.cert_path(), "certificate")?;
        let credential = MemberCredential::from_pem(&own_cert).filter(|c| c.speaks_for(addr));
        let Some(credential) = credential else {
            let host = addr.host();
            let remedy = if host == "localhost" {
                "`localhost` names every host, so it cannot name a member: advertise an IP \
                 address or another DNS name"
                    .to_owned()
            } else {
                let test_cert = if addr.socket_addr().is_some_and(|a| a.ip().is_loopback()) {
                    "; certs/test_cert.pem is one for 127.0.0.1 and ::1"
                } else {
                    ""
                };
                format!("issue one with `rpcnet-certs --member NAME --san {host}`{test_cert}")
            };
            return Err(RpcError::ConfigError(format!(
                "the server certificate {} is not a member certificate for {addr}: it needs a \
                 URI name rpcnet-member://{host} ({remedy})",
                rpc.cert_path().display(),
            )));
        };
        if !super::credential::tls_names_cover(&own_cert, &addr) {
            return Err(RpcError::ConfigError(format!(
                "the server certificate {} does not carry {} as a DNS or IP name: peers verify \
                 a member against the address it advertises (issue it with `rpcnet-certs --member \
                 NAME --san {}`)",
                rpc.cert_path().display(),
                addr.host(),
                addr.host(),
            )));
        }
        let others = credential.other_hosts(&addr);
        if !others.is_empty() {
            tracing::warn!(
                node = %addr,
                ?others,
                "this node's member certificate also speaks for other hosts: whoever holds it \
                 can speak for those nodes; issue one certificate per node (`rpcnet-certs --member`)"
            );
        }
        let mut seeds = config.clone();
        seeds.any_server_name = true;
        seeds.expected_member = Some(crate::config::ExpectedMember::Any);
        let (max, idle) = (cluster.gossip_max_connections, cluster.gossip_idle_timeout);
        Ok(Self {
            members: Arc::new(
                ConnectionPool::new(config, ServerNames::Member).with_retention(max, idle),
            ),
            seeds: Arc::new(
                ConnectionPool::new(seeds, ServerNames::Configured).with_retention(max, idle),
            ),
            send_timeout: cluster.gossip_send_timeout,
            in_flight: Arc::new(Semaphore::new(cluster.gossip_max_in_flight)),
        })
    }

    /// Closes the connections unused for `gossip_idle_timeout`; called
    /// every health-check tick.
    pub(crate) fn sweep(&self) {
        self.members.sweep();
        self.seeds.sweep();
    }

    /// How many connections this node holds to peers for gossip (seeds
    /// included, connects in progress counted).
    pub(crate) fn connections(&self) -> usize {
        self.members.len() + self.seeds.len()
    }

    /// Drops the connection to `addr`, if any: the next packet connects
    /// anew (and resolves a name anew).
    pub(crate) fn reconnect(&self, addr: MemberAddr) {
        self.members.retain(|a| *a != addr);
    }

    /// Sends `packet` to `addr` in the background; failures drop the packet
    /// and the connection (the next packet reconnects). `member`: `addr` is
    /// a known member, verified against its own host; otherwise a seed,
    /// verified by its chain to the CA only.
    pub(crate) fn send(&self, addr: MemberAddr, member: bool, packet: Vec<u8>) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "gossip send queue full; dropping packet");
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let pool = if member { &this.members } else { &this.seeds };
            let (slot, client) = pool.get(&addr, addr, this.send_timeout).await;
            let result = match client {
                Ok(client) => client
                    .call_with_timeout(GOSSIP_METHOD, packet, this.send_timeout)
                    .await
                    .map(drop),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::debug!(%addr, "gossip send failed: {e}");
                pool.forget(&addr, slot);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use std::net::SocketAddr;

    use super::*;
    use crate::cluster::membership::core::MembershipCore;
    use crate::cluster::{ClusterMembership, NodeId};
    use crate::{RpcClient, RpcServer};

    fn cert(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("certs")
            .join(name)
    }

    /// A real announce packet from a would-be member at `addr`, exactly as
    /// its membership core would send it to `to`.
    fn announce_from(addr: SocketAddr, to: SocketAddr) -> Vec<u8> {
        let mut core = MembershipCore::new(
            NodeId::new(addr, 1),
            ClusterConfig::default(),
            7,
            Duration::ZERO,
        );
        core.join(to.into(), Duration::ZERO);
        let (dest, packet) = core.drain_sends().remove(0);
        assert_eq!(dest, to);
        packet
    }

    async fn gossip_as(
        target: SocketAddr,
        identity: Option<(&str, &str)>,
        packet: Vec<u8>,
    ) -> Result<Vec<u8>, RpcError> {
        let mut config = RpcConfig::new(cert("ca.pem"), "127.0.0.1:0");
        if let Some((c, k)) = identity {
            config = config.with_client_identity(cert(c), cert(k));
        }
        let client = RpcClient::connect(target, config).await?;
        client.call(GOSSIP_METHOD, packet).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_application_client_cannot_gossip_even_with_a_ca_certificate() {
        let mut server = RpcServer::new(
            RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
                .with_key_path(cert("test_key.pem"))
                .with_optional_client_ca_path(cert("ca.pem")),
        );
        server
            .register("app/echo", |req| async move { Ok(req) })
            .await;
        let quic = server.bind().unwrap();
        let handle = server.handle();
        let addr = handle.socket_addr().unwrap();
        let serving = tokio::spawn(async move { server.start(quic).await });
        let cluster = ClusterMembership::new(ClusterConfig::default().with_server(handle))
            .await
            .unwrap();

        // Application clients call ordinary methods with or without a certificate.
        for identity in [None, Some(("client.pem", "client-key.pem"))] {
            let mut config = RpcConfig::new(cert("ca.pem"), "127.0.0.1:0");
            if let Some((c, k)) = identity {
                config = config.with_client_identity(cert(c), cert(k));
            }
            let client = RpcClient::connect(addr, config).await.unwrap();
            assert_eq!(
                client.call("app/echo", b"hi".to_vec()).await.unwrap(),
                b"hi"
            );
        }

        // A valid announce, sent by an application client (CA-signed
        // certificate without the member role, or none): refused.
        let intruder: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for identity in [Some(("client.pem", "client-key.pem")), None] {
            let refused = gossip_as(addr, identity, announce_from(intruder, addr))
                .await
                .unwrap_err();
            assert!(
                matches!(&refused, RpcError::RemoteError(m) if m.contains("member certificate")),
                "{refused:?}"
            );
        }
        // The same kind of packet from a member certificate is taken in
        // (the control: the refusal above is the credential's doing).
        let member: SocketAddr = "127.0.0.1:11".parse().unwrap();
        gossip_as(
            addr,
            Some(("test_cert.pem", "test_key.pem")),
            announce_from(member, addr),
        )
        .await
        .unwrap();
        let mut watch = cluster.watch();
        tokio::time::timeout(
            Duration::from_secs(10),
            watch.wait_for(|v| v.members.iter().any(|m| m.addr() == member)),
        )
        .await
        .expect("the member's announce was processed")
        .unwrap();
        // Packets are processed in order: the refused ones changed nothing.
        assert!(
            cluster.members().iter().all(|m| m.addr() != intruder),
            "{:?}",
            cluster.members()
        );
        serving.abort();
    }
}
