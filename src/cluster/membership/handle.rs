//! [`ClusterMembership`]: the public API of a node's membership. It
//! starts the transport and the driver task, and talks to the driver
//! through commands, an event broadcast and a watched view.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::core::MembershipCore;
use super::driver::{resolve, Command, Driver};
use super::transport::{self, Transport};
use super::view::{ClusterView, NodeInfo};
use super::{ClusterConfig, MemberAddr, NodeId};
use crate::cluster::{ClusterEvent, NodeStatus};
use crate::RpcError;

/// This node's membership in a cluster. Cheap to clone; the membership
/// stops when the last clone is dropped (without a goodbye: use
/// [`leave`](Self::leave) for that).
#[derive(Clone)]
pub struct ClusterMembership {
    shared: Arc<Shared>,
}

struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<ClusterEvent>,
    view: watch::Receiver<Arc<ClusterView>>,
    config: ClusterConfig,
    addr: MemberAddr,
    driver: tokio::task::AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl std::fmt::Debug for ClusterMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMembership")
            .field("local", &self.local_node())
            .finish_non_exhaustive()
    }
}

/// A starting generation: milliseconds since the Unix epoch, so a restart
/// usually starts above its earlier lives. Correctness does not depend on
/// it: a node whose address the cluster remembers under a generation at
/// least as high is told so (`STALE`) and moves above it.
fn initial_generation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

/// The address a node bound to `bound` advertises: `advertise` (`host:port`
/// or `host`, then with the bound port), or the bound address itself.
fn advertised(advertise: Option<&str>, bound: SocketAddr) -> Result<MemberAddr, RpcError> {
    let Some(text) = advertise else {
        if bound.ip().is_unspecified() {
            return Err(RpcError::ConfigError(format!(
                "the RPC server is bound to {bound}, which peers cannot dial: advertise the \
                 address they reach this node at (ClusterConfig::with_advertise_addr; \
                 --advertise or RPCNET_ADVERTISE for rpcnet-node and rpcnet-worker)"
            )));
        }
        return Ok(bound.into());
    };
    let text = text.trim();
    let with_port = text
        .parse::<MemberAddr>()
        .or_else(|_| format!("{text}:{}", bound.port()).parse::<MemberAddr>())
        .or_else(|_| format!("[{text}]:{}", bound.port()).parse::<MemberAddr>());
    match with_port {
        Ok(addr) if addr.socket_addr().is_some_and(|a| a.ip().is_unspecified()) => {
            Err(RpcError::ConfigError(format!(
                "advertise address {text:?}: peers cannot dial an unspecified address"
            )))
        }
        Ok(addr) if addr.port() == 0 => Err(RpcError::ConfigError(format!(
            "advertise address {text:?}: port 0"
        ))),
        Ok(addr) => Ok(addr),
        Err(e) => Err(RpcError::ConfigError(format!(
            "advertise address {text:?} is not host[:port]: {e}"
        ))),
    }
}

fn seed_from_clock() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

impl ClusterMembership {
    /// Starts membership on the RPC server given by
    /// [`ClusterConfig::with_server`]. The server must verify client
    /// certificates against the cluster CA
    /// (`RpcConfig::with_optional_client_ca_path`, so application clients
    /// need none, or `with_client_ca_path`), and its own certificate must be
    /// a *member certificate* (a URI name `rpcnet-member://<ip>` covering
    /// the node's address, issued by `rpcnet-certs --member`): the node
    /// presents it to peers, and peers accept gossip only from member
    /// certificates, each for the addresses it names.
    ///
    /// # Errors
    /// `RpcError::ConfigError` naming the field when a `ClusterConfig`
    /// value is unusable (see [`ClusterConfig::validate`]), the server is
    /// missing or unbound, it does not verify client certificates, or its
    /// certificate is not a member certificate for its address;
    /// `RpcError::TlsError` when the certificate or CA does not load.
    pub async fn new(config: ClusterConfig) -> Result<Self, RpcError> {
        config.validate()?;
        let server = config.server.clone().ok_or_else(|| {
            RpcError::ConfigError(
                "ClusterConfig::with_server is required: gossip rides the node's RPC endpoint"
                    .into(),
            )
        })?;
        let bound = server.socket_addr().ok_or_else(|| {
            RpcError::ConfigError("bind the RPC server before starting membership".into())
        })?;
        let addr = advertised(config.advertise_addr.as_deref(), bound)?;
        let transport = Transport::for_node(server.config(), addr, &config)?;
        let generation = config.generation.unwrap_or_else(initial_generation);
        let id = NodeId::new(addr, generation);
        let core = MembershipCore::new(id, config.clone(), seed_from_clock(), Duration::ZERO);
        let inbound = transport::serve(&server, config.max_packet_size + 64);
        let (events, _) = broadcast::channel(config.event_capacity.max(16));
        let (view_tx, view) = watch::channel(Arc::new(ClusterView::default()));
        super::query::serve(&server, view.clone(), config.phi.threshold);
        if config.serve_view {
            super::view_rpc::serve(&server, view.clone());
        }
        let (commands, driver) =
            Driver::spawn(core, &config, transport, inbound, events.clone(), view_tx);
        Ok(Self {
            shared: Arc::new(Shared {
                commands,
                events,
                view,
                config,
                addr,
                driver,
            }),
        })
    }

    /// Joins the cluster through any of `seeds` (members' RPC addresses),
    /// waiting until at least one answers. An empty list starts a new cluster.
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<(), RpcError> {
        let me = self.local_node().map(|n| n.addr());
        let seeds: Vec<SocketAddr> = seeds
            .into_iter()
            .filter(|s| me.is_none_or(|me| me != *s))
            .collect();
        if seeds.is_empty() {
            return Ok(());
        }
        for seed in &seeds {
            self.command(Command::Join(*seed))?;
        }
        let mut view = self.shared.view.clone();
        let joined = async {
            view.wait_for(|v| v.members.iter().any(|m| m.status == NodeStatus::Alive))
                .await
                .map(drop)
        };
        let outcome = tokio::time::timeout(self.shared.config.join_timeout, joined).await;
        match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(RpcError::ConnectionError("membership stopped".into())),
            Err(_) => Err(RpcError::ConnectionError(format!(
                "no seed of {seeds:?} answered within {:?} (join_timeout)",
                self.shared.config.join_timeout
            ))),
        }
    }

    /// Joins through seeds given by name, `host:port` (for example
    /// `director.internal:61000`, or a Kubernetes headless service), or as
    /// addresses in text. Each is resolved now; the names are remembered
    /// and resolved again whenever this node finds itself without any live
    /// member (every `rejoin_interval`), so a seed that moved or started
    /// later is found. Waits like [`join`](Self::join).
    ///
    /// # Errors
    /// `RpcError::ConfigError` for an empty seed, or one without a port;
    /// `RpcError::ConnectionError` when no seed resolves or answers within
    /// `join_timeout` (the names stay remembered and are retried).
    pub async fn join_named<S: Into<String>>(
        &self,
        seeds: impl IntoIterator<Item = S>,
    ) -> Result<(), RpcError> {
        let seeds: Vec<String> = seeds.into_iter().map(Into::into).collect();
        for seed in &seeds {
            if seed.trim().is_empty()
                || seed
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(RpcError::ConfigError(format!(
                    "seed {seed:?} is not host:port"
                )));
            }
        }
        if seeds.is_empty() {
            return Ok(());
        }
        self.command(Command::RememberSeeds(seeds.clone()))?;
        let addrs = resolve(&seeds).await;
        if addrs.is_empty() {
            return Err(RpcError::ConnectionError(format!(
                "no seed of {seeds:?} resolved (they will be retried)"
            )));
        }
        self.join(addrs).await
    }

    /// Sets a tag on this node; it spreads to every member.
    pub fn set_tag(&self, key: impl Into<String>, value: impl Into<String>) {
        let _ = self.command(Command::SetTag(key.into(), value.into()));
    }

    /// Removes a tag from this node.
    pub fn remove_tag(&self, key: impl Into<String>) {
        let _ = self.command(Command::RemoveTag(key.into()));
    }

    /// Membership events from now on. A subscriber that falls more than
    /// `event_capacity` events behind gets `RecvError::Lagged(missed)`.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.shared.events.subscribe()
    }

    /// The current membership snapshot.
    pub fn view(&self) -> Arc<ClusterView> {
        self.shared.view.borrow().clone()
    }

    /// A receiver that is notified whenever the snapshot changes.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.shared.view.clone()
    }

    /// Every other member ever seen, with status, tags and φ.
    pub fn members(&self) -> Vec<NodeInfo> {
        self.view().members.clone()
    }

    /// This node.
    pub fn local_node(&self) -> Option<NodeInfo> {
        self.view().local.clone()
    }

    /// The address this node advertises, and is known by
    /// ([`ClusterConfig::with_advertise_addr`], or the server's bound
    /// address). It does not change while the node runs; its generation
    /// may (see [`local_node`](Self::local_node)).
    pub fn advertised_addr(&self) -> MemberAddr {
        self.shared.addr
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.shared.config
    }

    /// Leaves gracefully: announces the departure (peers report
    /// `NodeLeft`), leaves, and stops gossiping.
    pub async fn leave(&self) -> Result<(), RpcError> {
        self.command(Command::AnnounceLeaving)?;
        tokio::time::sleep(self.shared.config.gossip_interval * 3).await;
        let (done, left) = oneshot::channel();
        self.command(Command::Leave(done))?;
        let _ = left.await;
        // Give the goodbye packets a moment to leave before stopping.
        tokio::time::sleep(self.shared.config.gossip_interval).await;
        self.shared.driver.abort();
        Ok(())
    }

    fn command(&self, command: Command) -> Result<(), RpcError> {
        self.shared
            .commands
            .send(command)
            .map_err(|_| RpcError::ConnectionError("membership stopped".into()))
    }
}
