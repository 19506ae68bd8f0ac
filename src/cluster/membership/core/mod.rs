//! The membership state machine: foca (SWIM) plus tags, Phi Accrual
//! verdicts, Lifeguard-style local health, partition detection and events.
//!
//! Sans-IO: packets and timer firings come in with the current time
//! (`handle_packet`, `handle_timer`, `tick`); packets to send, timers to
//! schedule and events come out (`drain_*`). The QUIC shell and the
//! deterministic simulator drive the same code.
//!
//! ## How φ and SWIM combine
//! SWIM is the cluster-wide authority: a member foca declares down (after
//! direct and indirect probes failed and suspicion ran out unrefuted) is
//! `Failed` everywhere, or `Left` if it announced its departure. φ is the
//! faster, adaptive view: each member heartbeats its monitors (its
//! successors on the heartbeat ring, `ring.rs`) every health-check
//! interval; a monitor whose φ for it passes the threshold publishes an
//! "unreachable" verdict that every member learns by gossip and marks it
//! `Failed` (event `NodeFailed`) before SWIM concludes; once its monitors
//! hear it again they take their verdicts back and it is `NodeRecovered`
//! (`reachability.rs`). Slow-but-alive members keep a low φ because the
//! detector learns their rhythm; the acceptable pause absorbs GC and
//! scheduling stalls. Members that went silent together wait for
//! `partition_grace` before φ judges them (a partition, not crashes), and
//! a member SWIM suspects is told so directly (Lifeguard's buddy system)
//! so it can refute.

mod awareness;
mod buddy;
mod envelope;
mod foca_adapter;
mod generations;
mod lifecycle;
mod peer;
mod tag_sync;
mod verdicts;

use crate::cluster::MemberAddr;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use foca::{Foca, PostcardCodec, Timer};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[cfg(test)]
use self::envelope::envelope;
use self::envelope::{Stale, Suspicion};
use self::envelope::{HEARTBEAT, STALE, SUSPECTED, SWIM, TAGS};
pub(crate) use self::foca_adapter::is_announce;
use self::foca_adapter::Outbox;
pub(crate) use self::peer::Peer;
use super::broadcasts::Broadcasts;
use super::credential::MemberCredential;
use super::reachability::VerdictBook;
use super::ring::Ring;
use super::tags::{TagBook, TagUpdate, Tags};
use crate::cluster::{ClusterConfig, ClusterEvent, NodeId, NodeStatus};

/// Counters for tests, metrics and `docs/CLUSTER.md`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreStats {
    /// Packets handed to the transport.
    pub packets_sent: u64,
    /// Bytes handed to the transport.
    pub bytes_sent: u64,
    /// Packets foca refused (malformed, not for us, ...).
    pub packets_rejected: u64,
    /// Times this node renewed its identity after learning the cluster
    /// had declared it down.
    pub renewals: u64,
    /// Packets refused because they spoke for an address the sender's
    /// member credential does not cover.
    pub packets_forged: u64,
    /// Times this node moved its generation above one the cluster
    /// remembered for its address (after a restart).
    pub generation_jumps: u64,
    /// Times this node noticed it had itself been paused (its timers or
    /// ticks ran late by at least half of min(`health_check_interval`,
    /// `probe_interval`), and at least 250 ms).
    pub own_pauses: u64,
    /// Suspicions of this node that members told it about directly
    /// (Lifeguard's buddy system) and that it refuted: one per incarnation.
    pub refutations: u64,
}

pub(crate) struct MembershipCore {
    id: NodeId,
    config: ClusterConfig,
    foca: Foca<NodeId, PostcardCodec, StdRng, Broadcasts>,
    book: TagBook,
    /// φ verdicts known cluster-wide (this node's own among them).
    verdicts: VerdictBook,
    /// The heartbeat ring: this node and the members SWIM holds active.
    ring: Ring,
    /// This node's monitors on the ring (its successors), nearest first.
    ring_monitors: Vec<MemberAddr>,
    /// This node's subjects on the ring (its predecessors): those it
    /// judges with φ (a member is a subject of each of its monitors).
    ring_subjects: Vec<MemberAddr>,
    /// When this node last repeated its verdicts (`repeat_verdicts`).
    last_verdict_repeat: Duration,
    /// Members that were this node's monitors, and when last: heartbeats
    /// go on for `MONITOR_HANDOVER` after one stops being a monitor.
    monitors: HashMap<MemberAddr, Duration>,
    /// Subjects this node's own latest verdict holds unreachable.
    judged: BTreeSet<MemberAddr>,
    /// Verdicts this node took back lately, and when (repeated by
    /// `repeat_verdicts`).
    retracted: Vec<(NodeId, Duration)>,
    /// Version of this node's latest verdict.
    verdict_version: u64,
    out: Outbox,
    /// Timers handed out, with the time they are due (to measure lateness).
    now: Duration,
    /// Ordered, so iteration (heartbeat order, and with it the
    /// simulator's random draws) is the same in every run.
    peers: BTreeMap<MemberAddr, Peer>,
    /// The highest generation seen per address, and when, so an earlier
    /// life that comes back under a lower generation is told to move above
    /// it. Kept after a member is forgotten; bounded by
    /// `GENERATION_MEMORY × max_members` (the least recently seen
    /// addresses that are not members go first).
    generations: HashMap<MemberAddr, (u64, Duration)>,
    events: Vec<ClusterEvent>,
    sends: Vec<(MemberAddr, Vec<u8>)>,
    timers: Vec<(Duration, Timer<NodeId>)>,
    tags: Tags,
    tag_version: u64,
    leaving: bool,
    /// Lifeguard's local health score (0..=8): foca's probe and suspicion
    /// timers are stretched `1 + local_health` times (awareness.rs).
    local_health: u32,
    /// foca reported `ProbeFailed` while handling the current timer.
    probe_failed: bool,
    partitioned: bool,
    /// The last suspicion of this node handed to foca (identity,
    /// incarnation): copies of it from other suspecters are dropped.
    refuted: Option<(NodeId, foca::Incarnation)>,
    last_tag_refresh: Duration,
    /// Where the next tag refresh starts among the alive members (in address order).
    refresh_turn: usize,
    /// When this node last announced itself to failed members while it
    /// had no active one, and where in address order the next turn starts.
    last_alone_announce: Duration,
    alone_turn: usize,
    /// When the last health-check tick ran (to notice a late one).
    last_tick: Option<Duration>,
    /// Overdue timers wait until then after this node noticed its own
    /// pause, so the packets that queued up during it are read first.
    grace_until: Duration,
    pub stats: CoreStats,
}

impl MembershipCore {
    pub(crate) fn new(id: NodeId, config: ClusterConfig, seed: u64, now: Duration) -> Self {
        let book = TagBook::with_capacity(config.max_members.saturating_add(1));
        let verdicts = VerdictBook::with_capacity(config.max_members.saturating_add(1));
        let foca = Foca::with_custom_broadcast(
            id,
            config.foca_config(),
            StdRng::seed_from_u64(seed),
            PostcardCodec,
            Broadcasts {
                tags: book.clone(),
                verdicts: verdicts.clone(),
            },
        );
        let mut ring = Ring::default();
        ring.insert(id.addr);
        let tags = config.tags.clone();
        let mut core = Self {
            id,
            config,
            foca,
            book,
            verdicts,
            ring,
            ring_monitors: Vec::new(),
            ring_subjects: Vec::new(),
            last_verdict_repeat: now,
            monitors: HashMap::new(),
            judged: BTreeSet::new(),
            retracted: Vec::new(),
            verdict_version: 0,
            out: Outbox::default(),
            now,
            peers: BTreeMap::new(),
            generations: HashMap::new(),
            events: Vec::new(),
            sends: Vec::new(),
            timers: Vec::new(),
            tags,
            tag_version: 0,
            leaving: false,
            local_health: 0,
            probe_failed: false,
            partitioned: false,
            refuted: None,
            last_tag_refresh: now,
            refresh_turn: 0,
            last_alone_announce: now,
            alone_turn: 0,
            last_tick: None,
            grace_until: Duration::ZERO,
            stats: CoreStats::default(),
        };
        core.broadcast_tags();
        core
    }

    pub(crate) fn id(&self) -> NodeId {
        self.id
    }

    pub(crate) fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    #[cfg(test)]
    pub(crate) fn peer(&self, addr: &MemberAddr) -> Option<&Peer> {
        self.peers.get(addr)
    }

    /// Whether `addr` is a member this node knows (not a seed it is
    /// joining through).
    pub(crate) fn knows(&self, addr: &MemberAddr) -> bool {
        self.peers.contains_key(addr)
    }

    pub(crate) fn tags_of(&self, id: &NodeId) -> Option<Tags> {
        if *id == self.id {
            return Some(self.tags.clone());
        }
        self.book.tags_of(id)
    }

    pub(crate) fn my_tags(&self) -> &Tags {
        &self.tags
    }

    /// Sizes of the tables that must stay bounded: members, remembered
    /// generations, tag maps, foca's member list, subjects with verdicts.
    #[cfg(test)]
    pub(crate) fn table_sizes(&self) -> [usize; 5] {
        [
            self.peers.len(),
            self.generations.len(),
            self.book.len(),
            self.foca.iter_members().count(),
            self.verdicts.len(),
        ]
    }

    /// A "you are suspected" packet (tests inject them).
    #[cfg(test)]
    pub(crate) fn suspicion_packet(
        from: NodeId,
        about: NodeId,
        incarnation: foca::Incarnation,
    ) -> Vec<u8> {
        envelope(
            SUSPECTED,
            &Suspicion {
                from,
                about,
                incarnation,
            },
        )
    }

    /// The incarnation foca holds for the member at `addr` (tests).
    #[cfg(test)]
    pub(crate) fn incarnation_of(&self, addr: &MemberAddr) -> Option<foca::Incarnation> {
        self.foca
            .iter_members()
            .find(|m| m.id().addr == *addr)
            .map(|m| m.incarnation())
    }

    /// The heartbeat this node sends (tests build forged ones with it).
    #[cfg(test)]
    pub(crate) fn heartbeat_packet(&self) -> Vec<u8> {
        self.tags_packet(HEARTBEAT)
    }

    pub(crate) fn local_health(&self) -> u32 {
        self.local_health
    }

    /// This node's φ for the member at `addr`: 0 for a member it does
    /// not monitor (not one of its subjects on the heartbeat ring).
    pub(crate) fn phi(&self, addr: &MemberAddr) -> Option<f64> {
        let peer = self.peers.get(addr)?;
        Some(if self.judges(peer) {
            peer.detector.phi(self.now)
        } else {
            0.0
        })
    }

    /// Asks the member at `seed` to let us in (its generation is unknown;
    /// foca accepts an announce addressed to any identity at its address).
    pub(crate) fn join(&mut self, seed: MemberAddr, now: Duration) {
        self.now = now;
        if seed == self.id.addr {
            return;
        }
        let _ = self.foca.announce(NodeId::new(seed, 0), &mut self.out);
        self.flush();
    }

    /// A packet from the transport, sent by the holder of `from` (the
    /// member credential of the connection it arrived on). What a packet
    /// says about its sender (foca's header, a heartbeat's identity and
    /// tags) must be covered by that credential, or the packet is dropped.
    pub(crate) fn handle_packet(&mut self, data: &[u8], from: &MemberCredential, now: Duration) {
        self.now = now;
        match data.split_first() {
            Some((&SWIM, rest)) => {
                use foca::Codec;
                let mut body = rest;
                let header = match PostcardCodec.decode_header(&mut body) {
                    Ok(header) => header,
                    Err(_) => {
                        self.stats.packets_rejected += 1;
                        return;
                    }
                };
                if self.admit(header.src, from) {
                    let addressed = self.addressed_to_me(header, body);
                    let data = addressed.as_deref().unwrap_or(rest);
                    if let Err(e) = self.foca.handle_data(data, &mut self.out) {
                        self.stats.packets_rejected += 1;
                        tracing::trace!("gossip packet rejected: {e}");
                    }
                }
            }
            Some((&(kind @ HEARTBEAT | kind @ TAGS), rest)) => {
                match postcard::from_bytes::<TagUpdate>(rest) {
                    Ok(update) if self.admit(update.node, from) => {
                        self.heard_from(update.node, kind == HEARTBEAT);
                        // Bound to the sender's credential: its own tags,
                        // even before SWIM reports it up (the book is bounded).
                        let _ = self.book.apply(update);
                    }
                    Ok(_) => {}
                    Err(_) => self.stats.packets_rejected += 1,
                }
            }
            Some((&SUSPECTED, rest)) => match postcard::from_bytes::<Suspicion>(rest) {
                Ok(suspicion) if self.admit(suspicion.from, from) => self.on_suspected(suspicion),
                Ok(_) => {}
                Err(_) => self.stats.packets_rejected += 1,
            },
            Some((&STALE, rest)) => match postcard::from_bytes::<Stale>(rest) {
                Ok(stale) => self.on_stale(stale, from),
                Err(_) => self.stats.packets_rejected += 1,
            },
            _ => self.stats.packets_rejected += 1,
        }
        self.flush();
    }

    /// An announce addressed to another member's address, re-addressed to
    /// this node (`None`: the packet stands as it is). A node joins
    /// through a seed's address, which need not be the address the seed
    /// advertises (a Kubernetes service name resolves to any member's IP;
    /// a member named by DNS is dialed there by IP): whoever answers at
    /// that address lets it in. foca takes an announce only when it is
    /// addressed to one of its own identities.
    fn addressed_to_me(&self, header: foca::Header<NodeId>, body: &[u8]) -> Option<Vec<u8>> {
        use foca::Codec;
        if header.message != foca::Message::Announce || header.dst.addr == self.id.addr {
            return None;
        }
        let mut packet = Vec::with_capacity(body.len() + 64);
        let header = foca::Header {
            dst: self.id,
            ..header
        };
        PostcardCodec.encode_header(&header, &mut packet).ok()?;
        packet.extend_from_slice(body);
        Some(packet)
    }

    /// A timer previously returned by `drain_timers` is due.
    pub(crate) fn handle_timer(&mut self, timer: Timer<NodeId>, due: Duration, now: Duration) {
        self.now = now;
        let late = now.saturating_sub(due);
        // A timer deferred to the end of a grace period runs then (its due
        // time is that end), so a pause defers each timer at most once.
        if now < self.grace_until || (due != self.grace_until && self.noticed_own_pause(late)) {
            self.timers.push((self.grace_until, timer));
            return;
        }
        // Lifeguard: a node whose own timers run late is itself slow and
        // must not trust its own impatience.
        if now.saturating_sub(due) > self.config.probe_timeout / 2 {
            self.adjust_local_health(1);
        }
        let sends_before = self.out.sends.len();
        let notes_before = self.out.notes.len();
        let suspect = match &timer {
            Timer::ChangeSuspectToDown { member_id, .. } => Some(*member_id),
            _ => None,
        };
        let probe_cycle = matches!(timer, Timer::ProbeRandomMember(_));
        self.probe_failed = false;
        if let Err(e) = self.foca.handle_timer(timer, &mut self.out) {
            tracing::trace!("timer: {e}");
        }
        if let Some(member) = suspect {
            self.drop_courtesy_turn_undead(member, sends_before, notes_before);
        }
        // The timers foca scheduled just now (the next probe, a suspicion)
        // are stretched by the health before this cycle's outcome counts.
        self.flush();
        // foca ends a probe cycle when it starts the next: the one that
        // ended here succeeded unless it reported `ProbeFailed`.
        if probe_cycle && !self.probe_failed {
            self.adjust_local_health(-1);
        }
    }

    /// Periodic health check (every `health_check_interval`): heartbeats
    /// to this node's monitors and φ verdicts about its subjects (with φ
    /// on), telling suspects, tag refresh and verdict repeats (every
    /// `tag_refresh_interval`), partition detection, forgetting.
    pub(crate) fn tick(&mut self, now: Duration) {
        self.now = now;
        if let Some(last) = self.last_tick.replace(now) {
            let late = now.saturating_sub(last + self.config.health_check_interval);
            self.noticed_own_pause(late);
        }
        if self.config.phi_monitoring {
            self.monitor(now);
        }
        self.tell_suspects();
        if now.saturating_sub(self.last_tag_refresh) >= self.config.tag_refresh_interval {
            self.refresh_tags();
        }
        if now.saturating_sub(self.last_verdict_repeat) >= self.config.tag_refresh_interval {
            self.last_verdict_repeat = now;
            self.repeat_verdicts();
        }
        self.check_partition();
        self.announce_while_alone(now);
        self.forget_departed(now);
        self.flush();
    }

    pub(crate) fn drain_sends(&mut self) -> Vec<(MemberAddr, Vec<u8>)> {
        std::mem::take(&mut self.sends)
    }

    /// Timers with the absolute time they are due.
    pub(crate) fn drain_timers(&mut self) -> Vec<(Duration, Timer<NodeId>)> {
        std::mem::take(&mut self.timers)
    }

    pub(crate) fn drain_events(&mut self) -> Vec<ClusterEvent> {
        std::mem::take(&mut self.events)
    }

    /// Moves foca's outputs into ours and turns notifications into events.
    fn flush(&mut self) {
        // A notification may make foca produce more (a renewal announces
        // itself): until foca has nothing more to say.
        loop {
            for (to, packet) in self.out.sends.drain(..) {
                self.stats.packets_sent += 1;
                self.stats.bytes_sent += packet.len() as u64;
                self.sends.push((to.addr, packet));
            }
            let timers = std::mem::take(&mut self.out.timers);
            for (timer, after) in timers {
                // Lifeguard's local health takes effect here (awareness.rs).
                let after = self.stretch(&timer, after);
                self.timers.push((self.now + after, timer));
            }
            let notes = std::mem::take(&mut self.out.notes);
            if notes.is_empty() {
                break;
            }
            for note in notes {
                self.on_notification(note);
            }
        }
        let changed = self.book.take_changed();
        for update in changed {
            if update.node == self.id {
                continue;
            }
            if let Some(peer) = self.peers.get_mut(&update.node.addr) {
                let tags: Tags = update.tags.into_iter().collect();
                // A refresh re-sends the same map under a new version:
                // only a different map is news.
                if peer.id == update.node
                    && matches!(peer.status, NodeStatus::Alive | NodeStatus::Suspect)
                    && peer.reported_tags != tags
                {
                    peer.reported_tags = tags.clone();
                    self.events.push(ClusterEvent::NodeTagsUpdated {
                        node: update.node,
                        tags,
                    });
                }
            }
        }
        // New verdicts (this node's or gossiped): statuses follow them,
        // and the news goes out at once rather than at the next gossip
        // round, so every member learns a failure soon after its monitors.
        let judged = self.verdicts.take_changed();
        if !judged.is_empty() {
            self.reassess(&judged);
            let _ = self.foca.gossip(&mut self.out);
            self.flush();
        }
    }
}
