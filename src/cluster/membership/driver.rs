//! The driver: one task per node that feeds the membership core the
//! packets the transport received, its due timers, the health-check tick
//! and the API's commands, then hands the core's outputs to the transport
//! (packets), the subscribers (events) and the view.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use foca::Timer;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::core::{is_announce, MembershipCore};
use super::transport::{Inbound, Transport};
use super::view::{ClusterView, NodeInfo};
use super::ClusterConfig;
use crate::cluster::{ClusterEvent, NodeId, NodeStatus};

/// What the API asks of the driver.
pub(super) enum Command {
    Join(SocketAddr),
    /// Seeds by name: re-resolved whenever this node finds itself alone.
    RememberSeeds(Vec<String>),
    SetTag(String, String),
    RemoveTag(String),
    AnnounceLeaving,
    Leave(oneshot::Sender<()>),
}

/// Resolves `host:port` names; names that do not resolve are skipped.
pub(super) async fn resolve(seeds: &[String]) -> Vec<SocketAddr> {
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

pub(super) struct Driver {
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
    /// Gossip packets handed to the core.
    received: Received,
    /// What `export_stats` last added to the counters.
    exported: Counted,
}

#[derive(Debug, Clone, Copy, Default)]
struct Received {
    packets: u64,
    bytes: u64,
}

/// The core's counters and the received traffic, as exported.
#[derive(Debug, Clone, Copy, Default)]
struct Counted {
    sent_packets: u64,
    sent_bytes: u64,
    received_packets: u64,
    received_bytes: u64,
    rejected: u64,
    forged: u64,
    renewals: u64,
    generation_jumps: u64,
    own_pauses: u64,
    refutations: u64,
}

impl Counted {
    fn of(stats: &super::core::CoreStats, received: Received) -> Self {
        Self {
            sent_packets: stats.packets_sent,
            sent_bytes: stats.bytes_sent,
            received_packets: received.packets,
            received_bytes: received.bytes,
            rejected: stats.packets_rejected,
            forged: stats.packets_forged,
            renewals: stats.renewals,
            generation_jumps: stats.generation_jumps,
            own_pauses: stats.own_pauses,
            refutations: stats.refutations,
        }
    }

    fn named(self) -> [(&'static str, u64); 10] {
        [
            ("rpcnet.membership.gossip.sent.packets", self.sent_packets),
            ("rpcnet.membership.gossip.sent.bytes", self.sent_bytes),
            (
                "rpcnet.membership.gossip.received.packets",
                self.received_packets,
            ),
            (
                "rpcnet.membership.gossip.received.bytes",
                self.received_bytes,
            ),
            ("rpcnet.membership.gossip.rejected", self.rejected),
            ("rpcnet.membership.gossip.forged", self.forged),
            ("rpcnet.membership.renewals", self.renewals),
            ("rpcnet.membership.generation_jumps", self.generation_jumps),
            ("rpcnet.membership.own_pauses", self.own_pauses),
            ("rpcnet.membership.refutations", self.refutations),
        ]
    }
}

impl Driver {
    /// Starts the driver task for `core`; returns the command sender the
    /// API uses and the task's abort handle.
    pub(super) fn spawn(
        core: MembershipCore,
        config: &ClusterConfig,
        transport: Transport,
        inbound: Inbound,
        events: broadcast::Sender<ClusterEvent>,
        view: watch::Sender<Arc<ClusterView>>,
    ) -> (mpsc::UnboundedSender<Command>, tokio::task::AbortHandle) {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            core,
            seeds: Vec::new(),
            last_seed_lookup: None,
            rejoin_interval: config.rejoin_interval,
            commands: commands.downgrade(),
            start: Instant::now(),
            timers: BinaryHeap::new(),
            timer_slots: HashMap::new(),
            next_timer: 0,
            transport,
            events,
            view,
            received: Received::default(),
            exported: Counted::default(),
        };
        let task = tokio::spawn(driver.run(inbound, commands_rx, config.health_check_interval));
        (commands, task.abort_handle())
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(
        mut self,
        mut packets: Inbound,
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
                    self.received.packets += 1;
                    self.received.bytes += packet.len() as u64;
                    self.core.handle_packet(&packet, &from, now);
                }
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    let now = self.now();
                    match command {
                        Command::Join(seed) => self.core.join(seed.into(), now),
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
                    self.transport.sweep();
                    self.export_stats();
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
    fn read_queued(&mut self, packets: &mut Inbound) {
        let mut budget = packets.max_capacity();
        while budget > 0 {
            let Ok((packet, from)) = packets.try_recv() else {
                break;
            };
            let now = self.now();
            self.received.packets += 1;
            self.received.bytes += packet.len() as u64;
            self.core.handle_packet(&packet, &from, now);
            budget -= 1;
        }
    }

    /// Sends what the core produced, schedules its timers, publishes events and the view.
    /// Adds what the core counted since the last tick to the membership
    /// counters (`rpcnet.membership.*`, see `docs/OPERATIONS.md`), when
    /// metrics are enabled.
    fn export_stats(&mut self) {
        if !crate::telemetry::is_enabled() {
            return;
        }
        let now = Counted::of(&self.core.stats, self.received);
        let before = std::mem::replace(&mut self.exported, now);
        for (name, value, was) in now
            .named()
            .into_iter()
            .zip(before.named())
            .map(|((n, v), (_, w))| (n, v, w))
        {
            metrics::counter!(name).increment(value.saturating_sub(was));
        }
        metrics::gauge!("rpcnet.membership.gossip.connections")
            .set(self.transport.connections() as f64);
    }

    fn pump(&mut self) {
        let events = self.core.drain_events();
        for event in &events {
            if let ClusterEvent::NodeJoined { node, .. } = event {
                // A new life of a member seen before (a restart, a pod
                // rescheduled with another IP): a connection to the
                // earlier life would only time out. Dropped before the
                // packets of the same input go out, so none of them takes it.
                let earlier_life = self
                    .view
                    .borrow()
                    .members
                    .iter()
                    .any(|m| m.id.addr == node.addr && m.id.generation != node.generation);
                if earlier_life {
                    self.transport.reconnect(node.addr);
                }
            }
        }
        for (addr, packet) in self.core.drain_sends() {
            // Only a request to join goes to an address that is not a
            // known member (a seed), verified by its chain alone; every
            // other packet only to the member that address names.
            let seed = !self.core.knows(&addr) && is_announce(&packet);
            self.transport.send(addr, !seed, packet);
        }
        for (due, timer) in self.core.drain_timers() {
            self.next_timer += 1;
            self.timers.push(Reverse((due, self.next_timer)));
            self.timer_slots.insert(self.next_timer, (due, timer));
        }
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
