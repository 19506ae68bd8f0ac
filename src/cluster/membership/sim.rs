//! Deterministic in-process simulation of a cluster: the real membership
//! core on every node, a simulated network (latency, random loss,
//! partitions), virtual time and one seeded RNG. Same seed, same run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::cluster::MemberAddr;
use std::time::Duration;

use foca::Timer;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::core::MembershipCore;
use super::credential::MemberCredential;
use super::{ClusterConfig, NodeId};
use crate::client::retention::Retention;
use crate::cluster::{ClusterEvent, NodeStatus};

pub(crate) fn addr(i: usize) -> MemberAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)),
        7000,
    )
    .into()
}

// Timers carry identities, whose names are inline.
#[allow(clippy::large_enum_variant)]
enum Event {
    Deliver {
        from: usize,
        to: usize,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
        life: u64,
        due: Duration,
        timer: Timer<NodeId>,
    },
    Tick {
        node: usize,
        life: u64,
    },
}

pub(crate) struct SimNode {
    pub core: Option<MembershipCore>,
    /// The address it advertises (`addr(i)` unless added with
    /// [`Sim::add_at`]).
    pub addr: MemberAddr,
    /// Bumped on every (re)start; events of an earlier life are dropped.
    life: u64,
    generation: u64,
    config: ClusterConfig,
    pub events: Vec<(Duration, ClusterEvent)>,
    /// Extra delay before this node's timers run (a slow node).
    pub slowness: Duration,
    /// Until then the node is stopped (SIGSTOP): its timers, ticks and
    /// packets wait, then run late, in order.
    pub paused_until: Duration,
    /// Extra time this node takes to handle each packet it receives, drawn
    /// per packet uniformly from this range (a member that processes
    /// messages slowly: an overloaded receive loop). Its timers and ticks
    /// are not delayed. `None`: packets are handled on arrival.
    pub processing: Option<(Duration, Duration)>,
}

pub(crate) struct Sim {
    pub now: Duration,
    rng: StdRng,
    pub nodes: Vec<SimNode>,
    by_addr: HashMap<MemberAddr, usize>,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    pending: HashMap<u64, Event>,
    seq: u64,
    pub loss: f64,
    pub latency: (Duration, Duration),
    /// Group per node; packets cross only within a group.
    pub partition: Option<Vec<u8>>,
    /// Links that drop every packet, one way: (from node, to node).
    pub cut: HashSet<(usize, usize)>,
    pub delivered: u64,
    /// Node → the address its member credential names, where it is not
    /// its own (an impostor).
    pub credential_override: HashMap<usize, MemberAddr>,
    /// Models of the nodes' gossip connection pools, fed every packet
    /// sent (they do not change delivery).
    pub links: Vec<LinkModel>,
}

/// Every node's gossip connection pool under one retention policy, the
/// transport's own ([`Retention`]): which peers each node holds a
/// connection to, and how many connections the nodes opened.
pub(crate) struct LinkModel {
    max: usize,
    idle: Duration,
    pools: Vec<Retention<usize>>,
    /// Connections opened by all nodes (a packet to a peer not held).
    pub opened: u64,
}

impl LinkModel {
    /// Pools of at most `max` connections closed after `idle` unused
    /// (`usize::MAX` and `Duration::MAX`: never closed).
    pub(crate) fn new(max: usize, idle: Duration) -> Self {
        Self {
            max,
            idle,
            pools: Vec::new(),
            opened: 0,
        }
    }

    fn pool(&mut self, node: usize) -> &mut Retention<usize> {
        while self.pools.len() <= node {
            self.pools.push(Retention::new(self.max, self.idle));
        }
        &mut self.pools[node]
    }

    /// Connections node `i` holds to peers (outbound).
    pub(crate) fn outbound(&self, i: usize) -> usize {
        self.pools.get(i).map_or(0, Retention::len)
    }

    /// Connections peers hold to node `i` (its server's share).
    pub(crate) fn inbound(&self, i: usize) -> usize {
        self.pools.iter().filter(|p| p.holds(&i)).count()
    }

    /// A node stopped: its connections close.
    fn reset(&mut self, node: usize) {
        let (max, idle) = (self.max, self.idle);
        *self.pool(node) = Retention::new(max, idle);
    }
}

impl Sim {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            now: Duration::ZERO,
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            seq: 0,
            loss: 0.0,
            latency: (Duration::from_micros(200), Duration::from_millis(2)),
            partition: None,
            cut: HashSet::new(),
            delivered: 0,
            credential_override: HashMap::new(),
            links: Vec::new(),
        }
    }

    /// Adds and starts a node (not yet joined).
    pub(crate) fn add(&mut self, config: ClusterConfig) -> usize {
        self.add_at(config, addr(self.nodes.len()))
    }

    /// Adds and starts a node that advertises `at` (a DNS name, say).
    pub(crate) fn add_at(&mut self, config: ClusterConfig, at: MemberAddr) -> usize {
        let i = self.nodes.len();
        self.by_addr.insert(at, i);
        self.nodes.push(SimNode {
            core: None,
            addr: at,
            life: 0,
            generation: 0,
            config,
            events: Vec::new(),
            slowness: Duration::ZERO,
            paused_until: Duration::ZERO,
            processing: None,
        });
        self.start(i);
        i
    }

    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.life += 1;
        node.generation += 1;
        let id = NodeId::new(node.addr, node.generation);
        let seed = self.rng.random::<u64>();
        node.core = Some(MembershipCore::new(id, node.config.clone(), seed, self.now));
        let life = node.life;
        let first_tick = self
            .rng
            .random_range(0..node.config.health_check_interval.as_micros() as u64);
        self.schedule(
            self.now + Duration::from_micros(first_tick),
            Event::Tick { node: i, life },
        );
        self.collect(i);
    }

    pub(crate) fn join(&mut self, i: usize, seed: usize) {
        self.join_via(i, self.nodes[seed].addr);
    }

    /// Node `i` joins through the address `via` (a node's own, or an
    /// [`alias`](Self::alias)).
    pub(crate) fn join_via(&mut self, i: usize, via: MemberAddr) {
        let now = self.now;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.join(via, now);
        }
        self.collect(i);
    }

    /// Packets sent to `alias` reach node `i` (a service address in front
    /// of it, or an IP its DNS name resolves to).
    pub(crate) fn alias(&mut self, alias: MemberAddr, i: usize) {
        self.by_addr.insert(alias, i);
    }

    /// Stops node `i` for `d` (SIGSTOP, then SIGCONT).
    pub(crate) fn pause(&mut self, i: usize, d: Duration) {
        self.nodes[i].paused_until = self.now + d;
    }

    pub(crate) fn kill(&mut self, i: usize) {
        self.nodes[i].core = None;
        for model in &mut self.links {
            model.reset(i);
        }
    }

    /// Restarts a killed node under a new generation and joins it via `seed`.
    pub(crate) fn restart(&mut self, i: usize, seed: usize) {
        self.start(i);
        self.join(i, seed);
    }

    /// Restarts a killed node under `generation` (for instance one lower
    /// than its earlier life's, as after a clock step back) and joins it via `seed`.
    pub(crate) fn restart_as(&mut self, i: usize, seed: usize, generation: u64) {
        self.nodes[i].generation = generation - 1;
        self.restart(i, seed);
    }

    /// Delivers `data` to node `to` as if sent over a connection whose
    /// member credential names `credential` (after the usual latency).
    pub(crate) fn inject(&mut self, credential: MemberAddr, to: usize, data: Vec<u8>) {
        // A sender index of its own per injection (past the nodes), so
        // packets in flight together keep their own credentials.
        let from = self.nodes.len() + self.credential_override.len();
        self.credential_override.insert(from, credential);
        self.schedule(self.now + self.latency.1, Event::Deliver { from, to, data });
    }

    pub(crate) fn with_core<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut MembershipCore, Duration) -> R,
    ) -> R {
        let now = self.now;
        let r = f(self.nodes[i].core.as_mut().expect("node is running"), now);
        self.collect(i);
        r
    }

    fn schedule(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.pending.insert(self.seq, event);
    }

    /// Moves a node's outputs into the network and the timer queue.
    fn collect(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let sends = core.drain_sends();
        let timers = core.drain_timers();
        let events = core.drain_events();
        let life = self.nodes[i].life;
        let slowness = self.nodes[i].slowness;
        for e in events {
            self.nodes[i].events.push((self.now, e));
        }
        for (due, timer) in timers {
            self.schedule(
                due + slowness,
                Event::Timer {
                    node: i,
                    life,
                    due,
                    timer,
                },
            );
        }
        for (to, data) in sends {
            let Some(&j) = self.by_addr.get(&to) else {
                continue;
            };
            for model in &mut self.links {
                if !model.pool(i).touch(j, self.now).held {
                    model.opened += 1;
                }
            }
            if self.rng.random_bool(self.loss.clamp(0.0, 1.0)) {
                continue;
            }
            if let Some(groups) = &self.partition {
                if groups[i] != groups[j] {
                    continue;
                }
            }
            if self.cut.contains(&(i, j)) {
                continue;
            }
            let (lo, hi) = self.latency;
            let mut delay = Duration::from_micros(
                self.rng
                    .random_range(lo.as_micros() as u64..=hi.as_micros() as u64),
            );
            // Drawn only for slow receivers, so runs without them keep
            // their random sequence.
            if let Some((lo, hi)) = self.nodes[j].processing {
                delay += Duration::from_micros(
                    self.rng
                        .random_range(lo.as_micros() as u64..=hi.as_micros() as u64),
                );
            }
            self.schedule(
                self.now + delay,
                Event::Deliver {
                    from: i,
                    to: j,
                    data,
                },
            );
        }
    }

    /// Runs every event due up to `until` (virtual time).
    pub(crate) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(&Reverse((at, seq))) = self.queue.peek() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let event = self.pending.remove(&seq).expect("scheduled");
            let node = match &event {
                Event::Deliver { to, .. } => *to,
                Event::Timer { node, .. } | Event::Tick { node, .. } => *node,
            };
            if self.nodes[node].paused_until > at {
                let resume = self.nodes[node].paused_until;
                self.schedule(resume, event);
                continue;
            }
            match event {
                Event::Deliver { from, to, data } => {
                    let now = self.now;
                    let credential = MemberCredential::for_addr(
                        self.credential_override
                            .get(&from)
                            .copied()
                            .unwrap_or_else(|| self.nodes[from].addr),
                    );
                    if let Some(core) = self.nodes[to].core.as_mut() {
                        self.delivered += 1;
                        core.handle_packet(&data, &credential, now);
                        self.collect(to);
                    }
                }
                Event::Timer {
                    node,
                    life,
                    due,
                    timer,
                } => {
                    let now = self.now;
                    if self.nodes[node].life == life {
                        if let Some(core) = self.nodes[node].core.as_mut() {
                            core.handle_timer(timer, due, now);
                            self.collect(node);
                        }
                    }
                }
                Event::Tick { node, life } => {
                    let now = self.now;
                    if self.nodes[node].life == life {
                        if let Some(core) = self.nodes[node].core.as_mut() {
                            core.tick(now);
                            for model in &mut self.links {
                                model.pool(node).sweep(now);
                            }
                            let next = now + self.nodes[node].config.health_check_interval;
                            self.collect(node);
                            self.schedule(next, Event::Tick { node, life });
                        }
                    }
                }
            }
        }
        self.now = until;
    }

    /// Runs in steps of `step` until `done` holds or `limit` passes; returns the time it took.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if done(self) {
                return Some(self.now - start);
            }
            self.run_for(step);
        }
        done(self).then(|| self.now - start)
    }

    pub(crate) fn running(&self) -> impl Iterator<Item = (usize, &MembershipCore)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.core.as_ref().map(|c| (i, c)))
    }

    /// Whether node `i` sees every node in `others` as alive under its current generation.
    pub(crate) fn sees_alive(&self, i: usize, others: &[usize]) -> bool {
        let Some(core) = self.nodes[i].core.as_ref() else {
            return false;
        };
        others.iter().filter(|&&j| j != i).all(|&j| {
            let Some(theirs) = self.nodes[j].core.as_ref() else {
                return false;
            };
            core.peer(&self.nodes[j].addr)
                .is_some_and(|p| p.id == theirs.id() && p.status == NodeStatus::Alive)
        })
    }

    /// Every running node sees every running node alive.
    pub(crate) fn converged(&self) -> bool {
        let all: Vec<usize> = self.running().map(|(i, _)| i).collect();
        all.iter().all(|&i| self.sees_alive(i, &all))
    }

    pub(crate) fn status_of(&self, observer: usize, subject: usize) -> Option<NodeStatus> {
        self.nodes[observer]
            .core
            .as_ref()?
            .peer(&self.nodes[subject].addr)
            .map(|p| p.status)
    }

    /// `NodeFailed` events about node `subject` seen by anyone.
    pub(crate) fn failed_reports(&self, subject: usize) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| n.events.iter())
            .filter(|(_, e)| matches!(e, ClusterEvent::NodeFailed(id) if id.addr == self.nodes[subject].addr))
            .count()
    }

    pub(crate) fn bytes_sent(&self) -> u64 {
        self.running().map(|(_, c)| c.stats.bytes_sent).sum()
    }
}

/// A cluster of `n` nodes all joined through node 0.
pub(crate) fn cluster(seed: u64, n: usize, config: &ClusterConfig) -> Sim {
    let mut sim = Sim::new(seed);
    for _ in 0..n {
        sim.add(config.clone());
    }
    for i in 1..n {
        sim.join(i, 0);
    }
    sim
}

#[cfg(test)]
mod tests;
