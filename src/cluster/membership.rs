//! [`ClusterMembership`]: the async shell that drives the membership core
//! from the node's RPC endpoint, timers and API calls.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::Timer;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::core::MembershipCore;
use super::credential::MemberCredential;
use super::transport::{Transport, GOSSIP_METHOD};
use super::{ClusterConfig, ClusterEvent, NodeId, NodeStatus, Tags};
use crate::{CallInfo, RpcConfig, RpcError};

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Identity (address and generation).
    pub id: NodeId,
    /// Status here.
    pub status: NodeStatus,
    /// Its tags.
    pub tags: Tags,
    /// Its φ at the time of the snapshot (0 for the local node).
    pub phi: f64,
}

impl NodeInfo {
    /// The member's RPC address.
    pub fn addr(&self) -> SocketAddr {
        self.id.addr
    }

    /// Whether its tags match `filter`, in the language of worker filters:
    /// a key (`"gpu"`, any value), `"key=value"`, or several that must all
    /// hold (`"role=worker,zone=eu"`). False for a malformed filter.
    pub fn has_tag(&self, filter: &str) -> bool {
        crate::cluster::WorkerFilter::parse(Some(filter)).is_ok_and(|f| f.matches(&self.tags))
    }
}

/// A snapshot of the membership, refreshed after every change.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// This node.
    pub local: Option<NodeInfo>,
    /// Every other member ever seen (any status).
    pub members: Vec<NodeInfo>,
    /// This node's Lifeguard local health score (0 = healthy, up to 8):
    /// its probe and suspicion timeouts are multiplied by 1 + this.
    pub local_health: u32,
}

enum Command {
    Join(SocketAddr),
    /// Seeds by name: re-resolved whenever this node finds itself alone.
    RememberSeeds(Vec<String>),
    SetTag(String, String),
    RemoveTag(String),
    AnnounceLeaving,
    Leave(oneshot::Sender<()>),
}

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
        let addr = server.socket_addr().ok_or_else(|| {
            RpcError::ConfigError("bind the RPC server before starting membership".into())
        })?;
        let rpc = server.config();
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
        let bind = if addr.is_ipv6() {
            "[::]:0"
        } else if addr.ip().is_loopback() {
            "127.0.0.1:0"
        } else {
            "0.0.0.0:0"
        };
        let peer_config = RpcConfig::new(cluster_ca, bind)
            .with_server_name(rpc.server_name())
            .with_client_identity(rpc.cert_path(), key)
            .with_max_message_size(64 * 1024)
            .with_idle_timeout(Duration::from_secs(60))
            .with_keep_alive_interval(Duration::from_secs(15));
        // Make sure our own client identity and trust store load before joining anyone.
        crate::tls::client_tls(&crate::tls::client_material(&peer_config)?)?;
        let own_cert = crate::config::read_pem(rpc.cert_path(), "certificate")?;
        if !MemberCredential::from_pem(&own_cert).is_some_and(|c| c.speaks_for(addr)) {
            return Err(RpcError::ConfigError(format!(
                "the server certificate {} is not a member certificate for {addr}: it needs a URI name \
                 rpcnet-member://{} (issue one with `rpcnet-certs --member`; certs/test_cert.pem is one for loopback)",
                rpc.cert_path().display(),
                addr.ip()
            )));
        }

        let generation = config.generation.unwrap_or_else(initial_generation);
        let id = NodeId::new(addr, generation);
        let start = Instant::now();
        let core = MembershipCore::new(id, config.clone(), seed_from_clock(), Duration::ZERO);

        let (packets_tx, packets_rx) = mpsc::channel::<(Vec<u8>, MemberCredential)>(1024);
        let max_packet = config.max_packet_size + 64;
        server
            .register(GOSSIP_METHOD, move |packet| {
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
                    // A full queue drops the packet, as a congested network would.
                    let _ = packets.try_send((packet, credential));
                    Ok(Vec::new())
                }
            })
            .await;

        let (events, _) = broadcast::channel(config.event_capacity.max(16));
        let (view_tx, view) = watch::channel(Arc::new(ClusterView::default()));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            core,
            seeds: Vec::new(),
            last_seed_lookup: None,
            rejoin_interval: config.rejoin_interval,
            commands: commands.downgrade(),
            start,
            timers: BinaryHeap::new(),
            timer_slots: HashMap::new(),
            next_timer: 0,
            transport: Transport::new(peer_config),
            events: events.clone(),
            view: view_tx,
        };
        let task = tokio::spawn(driver.run(packets_rx, commands_rx, config.health_check_interval));
        Ok(Self {
            shared: Arc::new(Shared {
                commands,
                events,
                view,
                config,
                driver: task.abort_handle(),
            }),
        })
    }

    /// Joins the cluster through any of `seeds` (members' RPC addresses),
    /// waiting until at least one answers. An empty list starts a new cluster.
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<(), RpcError> {
        let me = self.local_node().map(|n| n.addr());
        let seeds: Vec<SocketAddr> = seeds.into_iter().filter(|s| Some(*s) != me).collect();
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

/// Resolves `host:port` names; names that do not resolve are skipped.
async fn resolve(seeds: &[String]) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for seed in seeds {
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(found) => addrs.extend(found),
            Err(e) => tracing::debug!(%seed, "seed did not resolve: {e}"),
        }
    }
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

struct Driver {
    core: MembershipCore,
    /// Seeds given by name, resolved again when this node is alone.
    seeds: Vec<String>,
    last_seed_lookup: Option<Duration>,
    rejoin_interval: Duration,
    /// For lookups to hand their results back (weak: the membership
    /// stops when its last handle is dropped).
    commands: mpsc::WeakUnboundedSender<Command>,
    start: Instant,
    timers: BinaryHeap<Reverse<(Duration, u64)>>,
    timer_slots: HashMap<u64, (Duration, Timer<NodeId>)>,
    next_timer: u64,
    transport: Transport,
    events: broadcast::Sender<ClusterEvent>,
    view: watch::Sender<Arc<ClusterView>>,
}

impl Driver {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(
        mut self,
        mut packets: mpsc::Receiver<(Vec<u8>, MemberCredential)>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        tick_every: Duration,
    ) {
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.pump();
        loop {
            let next_due = self
                .timers
                .peek()
                .map(|Reverse((due, _))| self.start + *due);
            tokio::select! {
                Some((packet, from)) = packets.recv() => {
                    let now = self.now();
                    self.core.handle_packet(&packet, &from, now);
                }
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    let now = self.now();
                    match command {
                        Command::Join(seed) => self.core.join(seed, now),
                        Command::RememberSeeds(seeds) => {
                            self.seeds = seeds;
                            self.last_seed_lookup = Some(now);
                        }
                        Command::SetTag(k, v) => self.core.set_tag(k, v, now),
                        Command::RemoveTag(k) => self.core.remove_tag(&k, now),
                        Command::AnnounceLeaving => self.core.announce_leaving(now),
                        Command::Leave(done) => {
                            self.core.leave(now);
                            self.pump();
                            let _ = done.send(());
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    self.read_queued(&mut packets);
                    let now = self.now();
                    while let Some(&Reverse((due, slot))) = self.timers.peek() {
                        if due > now {
                            break;
                        }
                        self.timers.pop();
                        if let Some((due, timer)) = self.timer_slots.remove(&slot) {
                            self.core.handle_timer(timer, due, now);
                        }
                    }
                }
                _ = tick.tick() => {
                    self.read_queued(&mut packets);
                    let now = self.now();
                    self.core.tick(now);
                    self.rejoin_through_seeds(now);
                    // φ values move with time: refresh the snapshot every tick.
                    self.publish_view();
                }
            }
            self.pump();
        }
    }

    /// A node without any live member resolves its named seeds again (at
    /// most every `rejoin_interval`) and announces itself to them.
    fn rejoin_through_seeds(&mut self, now: Duration) {
        let alone = !self
            .core
            .peers()
            .any(|p| matches!(p.status, NodeStatus::Alive | NodeStatus::Suspect));
        let due = self
            .last_seed_lookup
            .is_none_or(|at| now.saturating_sub(at) >= self.rejoin_interval);
        if !alone || !due || self.seeds.is_empty() {
            return;
        }
        self.last_seed_lookup = Some(now);
        let seeds = self.seeds.clone();
        let commands = self.commands.clone();
        tokio::spawn(async move {
            for addr in resolve(&seeds).await {
                let Some(commands) = commands.upgrade() else {
                    return;
                };
                let _ = commands.send(Command::Join(addr));
            }
        });
    }

    /// Hands the core every packet already queued, before a timer or tick
    /// judges anyone: after this node was paused, the answers that arrived
    /// meanwhile must count before the overdue timers run.
    fn read_queued(&mut self, packets: &mut mpsc::Receiver<(Vec<u8>, MemberCredential)>) {
        let mut budget = packets.max_capacity();
        while budget > 0 {
            let Ok((packet, from)) = packets.try_recv() else {
                break;
            };
            let now = self.now();
            self.core.handle_packet(&packet, &from, now);
            budget -= 1;
        }
    }

    /// Sends what the core produced, schedules its timers, publishes events and the view.
    fn pump(&mut self) {
        for (addr, packet) in self.core.drain_sends() {
            self.transport.send(addr, packet);
        }
        for (due, timer) in self.core.drain_timers() {
            self.next_timer += 1;
            self.timers.push(Reverse((due, self.next_timer)));
            self.timer_slots.insert(self.next_timer, (due, timer));
        }
        let events = self.core.drain_events();
        let changed = !events.is_empty();
        for event in events {
            tracing::info!(?event, "cluster event");
            let _ = self.events.send(event);
        }
        if changed
            || self.view.borrow().local.as_ref().map(|l| l.id) != Some(self.core.id())
            || self.tags_changed()
        {
            self.publish_view();
        }
    }

    fn tags_changed(&self) -> bool {
        let view = self.view.borrow();
        view.local
            .as_ref()
            .is_some_and(|l| &l.tags != self.core.my_tags())
    }

    fn publish_view(&mut self) {
        let local = NodeInfo {
            id: self.core.id(),
            status: NodeStatus::Alive,
            tags: self.core.my_tags().clone(),
            phi: 0.0,
        };
        let mut members: Vec<NodeInfo> = self
            .core
            .peers()
            .map(|p| NodeInfo {
                id: p.id,
                status: p.status,
                tags: self.core.tags_of(&p.id).unwrap_or_default(),
                phi: self.core.phi(&p.id.addr).unwrap_or(0.0),
            })
            .collect();
        members.sort_by_key(|m| m.id.addr);
        self.view.send_replace(Arc::new(ClusterView {
            local: Some(local),
            members,
            local_health: self.core.local_health(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
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
        core.join(to, Duration::ZERO);
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
