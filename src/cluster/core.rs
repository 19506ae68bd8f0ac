//! The membership state machine: foca (SWIM) plus tags, Phi Accrual
//! verdicts, Lifeguard-style local health, partition detection and events.
//!
//! Sans-IO: packets and timer firings come in with the current time
//! (`handle_packet`, `handle_timer`, `tick`); packets to send, timers to
//! schedule and events come out (`drain_*`). The QUIC shell and the
//! deterministic simulator drive the same code.
//!
//! ## How φ and SWIM suspicion combine
//! SWIM is the cluster-wide authority: a member foca declares down (after
//! direct and indirect probes failed and suspicion ran out unrefuted) is
//! `Failed` everywhere, or `Left` if it announced its departure. φ is this
//! node's own, faster and adaptive view: a member's health-check
//! heartbeats make its detector's interval history and every packet from it
//! is a sign of life; a member whose φ passes the threshold is marked
//! `Failed` here (event `NodeFailed`) before SWIM concludes; if packets
//! resume, φ falls and the member is `NodeRecovered`. Slow-but-alive
//! members keep a low φ because the detector learns their rhythm; the
//! acceptable pause absorbs GC and scheduling stalls. Members that went
//! silent together wait for `partition_grace` before φ judges them (a
//! partition, not crashes), and a member SWIM suspects is told so directly
//! (Lifeguard's buddy system) so it can refute.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Foca, Notification, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::credential::MemberCredential;
use super::detector::PhiAccrualDetector;
use super::tags::{TagBook, TagUpdate, Tags};
use super::{ClusterConfig, ClusterEvent, NodeId, NodeStatus};

/// Envelope byte: a foca (SWIM) packet follows.
const SWIM: u8 = 0;
/// Envelope byte: a health-check heartbeat follows: the sender's current
/// tag update (identity, version, tags), so tags also converge on every
/// tick. Its arrival times are the φ detector's interval samples.
const HEARTBEAT: u8 = 1;
/// Envelope byte: "your packets come from an earlier life of your
/// address": a [`Stale`] follows. Sent to a node whose packets carry a
/// generation lower than one this node remembers for its address.
const STALE: u8 = 2;
/// Envelope byte: the sender's tag update sent outside the heartbeat
/// rhythm (to a newcomer, or as anti-entropy): same body as
/// [`HEARTBEAT`], a sign of life but not an interval sample.
const TAGS: u8 = 3;
/// Envelope byte: "you are suspected": a [`Suspicion`] follows. Lifeguard's
/// buddy system (Dadgar et al., 2018): a member that suspects another, and
/// has heard from it within an acceptable pause, tells it directly on every
/// health-check tick, so a suspect that was cut off
/// (a partition that just healed) refutes at once instead of waiting for
/// the suspicion to reach it by gossip, whose retransmissions may all have
/// been spent while it was unreachable.
const SUSPECTED: u8 = 4;
/// The shortest lateness taken for a pause of this node itself; shorter
/// ones are scheduling noise on a busy machine.
const MIN_PAUSE: Duration = Duration::from_millis(250);
/// Generations are remembered for up to this many times `max_members`
/// addresses.
const GENERATION_MEMORY: usize = 4;
/// Highest Lifeguard local-health multiplier.
const MAX_LOCAL_HEALTH: u32 = 8;

/// Body of a [`STALE`] packet.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Stale {
    /// Who answers (the node then announces its new identity to it).
    from: NodeId,
    /// The identity the stale packet came from.
    to: NodeId,
    /// The highest generation remembered for that address.
    remembered: u64,
}

/// Body of a [`SUSPECTED`] packet.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Suspicion {
    /// Who suspects.
    from: NodeId,
    /// The suspect (the receiver, if the news is current).
    about: NodeId,
    /// The suspect's incarnation the suspicion is about.
    incarnation: foca::Incarnation,
}

/// What the core knows about another member.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub id: NodeId,
    pub status: NodeStatus,
    pub detector: PhiAccrualDetector,
    /// SWIM (not only φ) has declared this identity down.
    pub swim_down: bool,
    /// The tags last reported in an event (`NodeJoined` or
    /// `NodeTagsUpdated`): the next event is due only when they change.
    pub reported_tags: Tags,
    /// When the status last became `Failed` or `Left` (a member SWIM
    /// declared down is forgotten `forget_after` later).
    pub since: Duration,
    /// The current silence is shared: this member and another have both
    /// been silent longer than an acceptable pause, their silences having
    /// begun within an acceptable pause of each other. That looks like the
    /// network's fault (a partition) more than like theirs, so φ's verdict
    /// waits for [`ClusterConfig::partition_grace`]. Cleared when heard from.
    pub shared_silence: bool,
}

impl Peer {
    /// A new life of this member (or its return) is known at `now`: its φ
    /// history starts afresh from that sign of life, with no shared silence.
    fn start_health(&mut self, phi: super::PhiConfig, now: Duration) {
        self.detector = PhiAccrualDetector::new(phi);
        self.detector.heard(now);
        self.shared_silence = false;
    }
}

/// Collects foca's outputs during one input.
#[derive(Default)]
struct Outbox {
    sends: Vec<(NodeId, Vec<u8>)>,
    timers: Vec<(Timer<NodeId>, Duration)>,
    notes: Vec<OwnedNotification<NodeId>>,
}

impl foca::Runtime<NodeId> for Outbox {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        self.notes.push(notification.to_owned());
    }
    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        let mut packet = Vec::with_capacity(data.len() + 1);
        packet.push(SWIM);
        packet.extend_from_slice(data);
        self.sends.push((to, packet));
    }
    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.timers.push((event, after));
    }
}

fn is_turn_undead(packet: &[u8]) -> bool {
    use foca::Codec;
    match packet.split_first() {
        Some((&SWIM, foca_packet)) => PostcardCodec
            .decode_header(foca_packet)
            .is_ok_and(|h: foca::Header<NodeId>| h.message == foca::Message::TurnUndead),
        _ => false,
    }
}

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
    foca: Foca<NodeId, PostcardCodec, StdRng, TagBook>,
    book: TagBook,
    out: Outbox,
    /// Timers handed out, with the time they are due (to measure lateness).
    now: Duration,
    /// Ordered, so iteration (heartbeat order, and with it the
    /// simulator's random draws) is the same in every run.
    peers: BTreeMap<SocketAddr, Peer>,
    /// The highest generation seen per address, and when, so an earlier
    /// life that comes back under a lower generation is told to move above
    /// it. Kept after a member is forgotten; bounded by
    /// `GENERATION_MEMORY × max_members` (the least recently seen
    /// addresses that are not members go first).
    generations: HashMap<SocketAddr, (u64, Duration)>,
    events: Vec<ClusterEvent>,
    sends: Vec<(SocketAddr, Vec<u8>)>,
    timers: Vec<(Duration, Timer<NodeId>)>,
    tags: Tags,
    tag_version: u64,
    leaving: bool,
    local_health: u32,
    probe_failed: bool,
    partitioned: bool,
    /// The last suspicion of this node handed to foca (identity,
    /// incarnation): copies of it from other suspecters are dropped.
    refuted: Option<(NodeId, foca::Incarnation)>,
    last_tag_refresh: Duration,
    /// Where the next tag refresh starts among the alive members (in address order).
    refresh_turn: usize,
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
        let foca = Foca::with_custom_broadcast(
            id,
            config.foca_config(0),
            StdRng::seed_from_u64(seed),
            PostcardCodec,
            book.clone(),
        );
        let tags = config.tags.clone();
        let mut core = Self {
            id,
            config,
            foca,
            book,
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
            last_tick: None,
            grace_until: Duration::ZERO,
            stats: CoreStats::default(),
        };
        core.broadcast_tags();
        core
    }

    // ---- getters -------------------------------------------------------

    pub(crate) fn id(&self) -> NodeId {
        self.id
    }

    pub(crate) fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    #[cfg(test)]
    pub(crate) fn peer(&self, addr: &SocketAddr) -> Option<&Peer> {
        self.peers.get(addr)
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
    /// generations, tag maps, foca's member list.
    #[cfg(test)]
    pub(crate) fn table_sizes(&self) -> [usize; 4] {
        [
            self.peers.len(),
            self.generations.len(),
            self.book.len(),
            self.foca.iter_members().count(),
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
    pub(crate) fn incarnation_of(&self, addr: &SocketAddr) -> Option<foca::Incarnation> {
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

    pub(crate) fn phi(&self, addr: &SocketAddr) -> Option<f64> {
        self.peers.get(addr).map(|p| p.detector.phi(self.now))
    }

    // ---- inputs --------------------------------------------------------

    /// Asks the member at `seed` to let us in (its generation is unknown;
    /// foca accepts an announce addressed to any identity at its address).
    pub(crate) fn join(&mut self, seed: SocketAddr, now: Duration) {
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
                let src = match PostcardCodec.decode_header(rest) {
                    Ok(header) => header.src,
                    Err(_) => {
                        self.stats.packets_rejected += 1;
                        return;
                    }
                };
                if self.admit(src, from) {
                    if let Err(e) = self.foca.handle_data(rest, &mut self.out) {
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

    /// Whether a packet from `sender` (as it names itself) may be
    /// processed: its credential must cover the address, and the identity
    /// must not be an earlier life of an address whose later life this
    /// node has seen (that sender is told to move above, instead).
    fn admit(&mut self, sender: NodeId, from: &MemberCredential) -> bool {
        if !from.speaks_for(sender.addr) || sender.addr == self.id.addr {
            self.stats.packets_forged += 1;
            tracing::debug!(claimed = %sender, "packet speaks for an address its credential does not cover");
            return false;
        }
        let remembered = self.remembered(sender.addr);
        if remembered > sender.generation {
            let stale = Stale {
                from: self.id,
                to: sender,
                remembered,
            };
            self.send(sender.addr, envelope(STALE, &stale));
            return false;
        }
        self.remember(sender);
        true
    }

    /// The highest generation remembered for `addr` (0: none).
    fn remembered(&self, addr: SocketAddr) -> u64 {
        self.generations.get(&addr).map_or(0, |&(g, _)| g)
    }

    /// The cluster remembers this address under a generation at least as
    /// high as ours: an earlier life of this node. Move above it, once
    /// (later `Stale` packets addressed to the old identity are ignored).
    fn on_stale(&mut self, stale: Stale, from: &MemberCredential) {
        if stale.to != self.id || stale.remembered < self.id.generation {
            return;
        }
        let Some(generation) = stale.remembered.checked_add(1) else {
            return;
        };
        let new = NodeId::new(self.id.addr, generation);
        tracing::debug!(old = %self.id, new = %new, "an earlier life is remembered higher; moving above it");
        if self.foca.change_identity(new, &mut self.out).is_ok() {
            self.id = new;
            self.stats.generation_jumps += 1;
            self.broadcast_tags();
            // A restarted node may know no one yet: join again through
            // the member that answered, under the new identity.
            if from.speaks_for(stale.from.addr) {
                let _ = self.foca.announce(stale.from, &mut self.out);
            }
        }
    }

    fn remember(&mut self, id: NodeId) {
        let now = self.now;
        let entry = self.generations.entry(id.addr).or_insert((0, now));
        *entry = (entry.0.max(id.generation), now);
        let cap = self.config.max_members.saturating_mul(GENERATION_MEMORY);
        if self.generations.len() > cap {
            // Forget the least recently seen tenth of the non-members.
            let mut old: Vec<(Duration, SocketAddr)> = self
                .generations
                .iter()
                .filter(|(addr, _)| !self.peers.contains_key(addr))
                .map(|(addr, &(_, seen))| (seen, *addr))
                .collect();
            old.sort_unstable();
            for (_, addr) in old.into_iter().take(cap / 10 + 1) {
                self.generations.remove(&addr);
            }
        }
    }

    /// Forgets members SWIM declared down (failed or left) longer than
    /// `forget_after` ago: their places in the member table, their tags.
    /// Their generations stay remembered.
    fn forget_departed(&mut self, now: Duration) {
        let forget_after = self.config.forget_after;
        let gone: Vec<SocketAddr> = self
            .peers
            .values()
            .filter(|p| p.swim_down && now.saturating_sub(p.since) >= forget_after)
            .map(|p| p.id.addr)
            .collect();
        for addr in gone {
            self.peers.remove(&addr);
            self.book.forget(addr);
        }
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
        if let Timer::ProbeRandomMember(_) = timer {
            if !std::mem::take(&mut self.probe_failed) {
                self.adjust_local_health(-1);
            }
        }
        let sends_before = self.out.sends.len();
        let notes_before = self.out.notes.len();
        let suspect = match &timer {
            Timer::ChangeSuspectToDown { member_id, .. } => Some(*member_id),
            _ => None,
        };
        if let Err(e) = self.foca.handle_timer(timer, &mut self.out) {
            tracing::trace!("timer: {e}");
        }
        if let Some(member) = suspect {
            self.drop_courtesy_turn_undead(member, sends_before, notes_before);
        }
        self.flush();
    }

    /// Works around foca 2.0: when a suspicion timer fires for a member
    /// that has since refuted (its incarnation moved on), foca does not
    /// declare it down but still sends it the courtesy `TurnUndead`, which
    /// makes a live member believe the cluster declared it down and renew
    /// its identity. Keep that message only if the member really went down.
    fn drop_courtesy_turn_undead(
        &mut self,
        member: NodeId,
        sends_before: usize,
        notes_before: usize,
    ) {
        let went_down = self.out.notes[notes_before..]
            .iter()
            .any(|n| matches!(n, OwnedNotification::MemberDown(id) if *id == member));
        if went_down {
            return;
        }
        let mut index = 0;
        self.out.sends.retain(|(to, packet)| {
            let keep = index < sends_before || *to != member || !is_turn_undead(packet);
            index += 1;
            keep
        });
    }

    /// Periodic health check (every `health_check_interval`): heartbeats
    /// to every member not known down, φ verdicts, partition detection,
    /// tag refresh.
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
        self.check_partition();
        self.forget_departed(now);
        self.flush();
    }

    fn monitor(&mut self, now: Duration) {
        let heartbeat = self.tags_packet(HEARTBEAT);
        let targets: Vec<SocketAddr> = self
            .peers
            .values()
            .filter(|p| matches!(p.status, NodeStatus::Alive | NodeStatus::Suspect))
            .map(|p| p.id.addr)
            .chain(
                self.peers
                    .values()
                    .filter(|p| p.status == NodeStatus::Failed && self.phi_failed_only(p))
                    .map(|p| p.id.addr),
            )
            .collect();
        for addr in targets {
            self.send(addr, heartbeat.clone());
        }
        let threshold = self.config.phi.threshold;
        // Members silent longer than an acceptable pause (usually none).
        let pause = self.config.phi.acceptable_pause;
        let quiet: Vec<(SocketAddr, Duration)> = self
            .peers
            .values()
            // Members already judged are not paired with: a crash a second
            // after another's verdict is its own.
            .filter(|p| matches!(p.status, NodeStatus::Alive | NodeStatus::Suspect))
            .filter(|p| silence(p, now) >= pause)
            .map(|p| (p.id.addr, silence(p, now)))
            .collect();
        for &(addr, own) in &quiet {
            if quiet
                .iter()
                .any(|&(other, theirs)| other != addr && theirs.abs_diff(own) <= pause)
            {
                if let Some(peer) = self.peers.get_mut(&addr) {
                    peer.shared_silence |= peer.status == NodeStatus::Alive;
                }
            }
        }
        let grace = self.config.partition_grace;
        let due: Vec<SocketAddr> = self
            .peers
            .values()
            .filter(|p| p.status == NodeStatus::Alive && p.detector.phi(now) >= threshold)
            .filter(|p| !p.shared_silence || silence(p, now) >= grace)
            .map(|p| p.id.addr)
            .collect();
        let mut failed = Vec::new();
        for addr in due {
            if let Some(peer) = self.peers.get_mut(&addr) {
                peer.status = NodeStatus::Failed;
                peer.since = now;
                failed.push(peer.id);
            }
        }
        for id in failed {
            tracing::debug!(node = %id, "phi verdict: failed");
            self.events.push(ClusterEvent::NodeFailed(id));
        }
    }

    /// Lifeguard's buddy system: every member SWIM suspects here, and that
    /// this node has nevertheless heard from within an acceptable pause
    /// (so it is evidently alive, and may not know it is suspected: a
    /// partition just healed), hears so directly, once per tick (see
    /// [`SUSPECTED`]). A suspect that stays silent is told nothing.
    fn tell_suspects(&mut self) {
        let pause = self.config.phi.acceptable_pause;
        let now = self.now;
        let suspects: Vec<(NodeId, foca::Incarnation)> = self
            .foca
            .iter_members()
            .filter(|m| m.state() == foca::State::Suspect)
            .filter(|m| {
                self.peers
                    .get(&m.id().addr)
                    .is_some_and(|p| p.id == *m.id() && silence(p, now) < pause)
            })
            .map(|m| (*m.id(), m.incarnation()))
            .collect();
        for (about, incarnation) in suspects {
            let suspicion = Suspicion {
                from: self.id,
                about,
                incarnation,
            };
            self.send(about.addr, envelope(SUSPECTED, &suspicion));
        }
    }

    /// After foca renewed this node's identity (the cluster had declared it
    /// down), it is `Disconnected` with every timer cancelled, and packets
    /// addressed to its old identity are dropped: if every member renewed
    /// at once (both sides of a long partition told each other "you are
    /// down"), nobody would ever speak again. So: announce the new identity
    /// to members this node knows (announcements are accepted by address),
    /// whose answers reconnect it, and let foca reconnect to the members it
    /// still holds active, which restarts its probe and announce timers.
    fn announce_renewal(&mut self) {
        let mut known: Vec<&Peer> = self
            .peers
            .values()
            .filter(|p| p.status != NodeStatus::Left)
            .collect();
        known.sort_by_key(|p| p.status != NodeStatus::Alive);
        let targets: Vec<NodeId> = known
            .iter()
            .take(self.config.gossip_fanout.max(1) * 2)
            .map(|p| p.id)
            .collect();
        for to in targets {
            let _ = self.foca.announce(to, &mut self.out);
        }
        let _ = self
            .foca
            .apply_many(std::iter::empty(), false, &mut self.out);
    }

    /// A member says this node (or another) is suspected. Only a current
    /// member's word counts; the suspicion is handed to foca, which refutes
    /// it with a higher incarnation, once per incarnation (the other
    /// suspecters' copies of the same news are dropped). The highest
    /// incarnation is refused: foca would answer it by renewing this
    /// node's identity.
    fn on_suspected(&mut self, suspicion: Suspicion) {
        let member = self.peers.get(&suspicion.from.addr).is_some_and(|p| {
            p.id == suspicion.from && !p.swim_down && p.status != NodeStatus::Left
        });
        if !member {
            self.stats.packets_rejected += 1;
            return;
        }
        self.heard_from(suspicion.from, false);
        if suspicion.about != self.id || suspicion.incarnation == foca::Incarnation::MAX {
            return;
        }
        if let Some((id, refuted)) = self.refuted {
            if id == self.id && suspicion.incarnation <= refuted {
                return;
            }
        }
        self.refuted = Some((self.id, suspicion.incarnation));
        self.stats.refutations += 1;
        let update = foca::Member::new(self.id, suspicion.incarnation, foca::State::Suspect);
        let _ = self
            .foca
            .apply_many(std::iter::once(update), true, &mut self.out);
    }

    /// Sets a tag and spreads the new tag map.
    pub(crate) fn set_tag(&mut self, key: String, value: String, now: Duration) {
        self.now = now;
        if self.tags.get(&key) == Some(&value) {
            return;
        }
        self.tags.insert(key, value);
        self.broadcast_tags();
        let _ = self.foca.gossip(&mut self.out);
        self.flush();
    }

    /// Removes a tag and spreads the new tag map.
    pub(crate) fn remove_tag(&mut self, key: &str, now: Duration) {
        self.now = now;
        if self.tags.remove(key).is_some() {
            self.broadcast_tags();
            let _ = self.foca.gossip(&mut self.out);
            self.flush();
        }
    }

    /// First step of a graceful leave: tell everyone we are leaving (so
    /// they report `NodeLeft`, not `NodeFailed`).
    pub(crate) fn announce_leaving(&mut self, now: Duration) {
        self.now = now;
        self.leaving = true;
        self.broadcast_tags();
        let _ = self.foca.gossip(&mut self.out);
        self.flush();
    }

    /// Second step: leave the cluster.
    pub(crate) fn leave(&mut self, now: Duration) {
        self.now = now;
        let _ = self.foca.leave_cluster(&mut self.out);
        self.flush();
    }

    // ---- outputs -------------------------------------------------------

    pub(crate) fn drain_sends(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.sends)
    }

    /// Timers with the absolute time they are due.
    pub(crate) fn drain_timers(&mut self) -> Vec<(Duration, Timer<NodeId>)> {
        std::mem::take(&mut self.timers)
    }

    pub(crate) fn drain_events(&mut self) -> Vec<ClusterEvent> {
        std::mem::take(&mut self.events)
    }

    // ---- internals -----------------------------------------------------

    fn phi_failed_only(&self, peer: &Peer) -> bool {
        // Keep heartbeating members we failed on φ alone: SWIM still
        // considers them up, and they may come back.
        self.foca
            .iter_members()
            .any(|m| m.id() == &peer.id && m.state() != foca::State::Down)
    }

    fn tag_update(&self) -> TagUpdate {
        TagUpdate {
            node: self.id,
            version: self.tag_version,
            leaving: self.leaving,
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// This node's tag update as a direct packet: `kind` is [`HEARTBEAT`]
    /// or [`TAGS`].
    fn tags_packet(&self, kind: u8) -> Vec<u8> {
        let mut packet = vec![kind];
        packet.extend_from_slice(&self.tag_update().encode());
        packet
    }

    fn send_tags_to(&mut self, addr: SocketAddr) {
        self.send(addr, self.tags_packet(TAGS));
    }

    /// Hands a packet of this core's own envelopes to the transport.
    fn send(&mut self, to: SocketAddr, packet: Vec<u8>) {
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += packet.len() as u64;
        self.sends.push((to, packet));
    }

    /// Anti-entropy for tags: every `tag_refresh_interval`, this node's
    /// tags go directly to `gossip_fanout` members in turn (a constant load
    /// per node, whatever the cluster size), repairing any dissemination
    /// a member missed.
    fn refresh_tags(&mut self) {
        self.last_tag_refresh = self.now;
        let alive: Vec<SocketAddr> = {
            let mut a: Vec<SocketAddr> = self
                .peers
                .values()
                .filter(|p| p.status == NodeStatus::Alive)
                .map(|p| p.id.addr)
                .collect();
            a.sort_unstable();
            a
        };
        if alive.is_empty() {
            return;
        }
        for k in 0..self.config.gossip_fanout.min(alive.len()) {
            let addr = alive[(self.refresh_turn + k) % alive.len()];
            self.send_tags_to(addr);
        }
        self.refresh_turn = (self.refresh_turn + self.config.gossip_fanout) % alive.len();
    }

    fn broadcast_tags(&mut self) {
        self.tag_version += 1;
        self.last_tag_refresh = self.now;
        let update = self.tag_update();
        if let Err(e) = self.foca.add_broadcast(&update.encode()) {
            tracing::warn!("tag broadcast refused: {e}");
        }
    }

    /// A packet from `from` arrived: a sign of life, and an interval
    /// sample if it is one of its periodic `heartbeat`s.
    fn heard_from(&mut self, from: NodeId, heartbeat: bool) {
        let Some(peer) = self.peers.get_mut(&from.addr) else {
            return;
        };
        if peer.id != from {
            return;
        }
        if heartbeat {
            peer.detector.heartbeat(self.now);
        } else {
            peer.detector.heard(self.now);
        }
        peer.shared_silence = false;
        if peer.status == NodeStatus::Failed
            && peer.detector.phi(self.now) < self.config.phi.threshold
        {
            // Only φ had failed it: SWIM never declared it down.
            let active = self
                .foca
                .iter_members()
                .any(|m| m.id() == &from && m.state() != foca::State::Down);
            if active {
                peer.status = NodeStatus::Alive;
                self.events.push(ClusterEvent::NodeRecovered(from));
            }
        }
    }

    /// Lateness this large means this node itself was paused (a stall, a
    /// VM hiccup, SIGSTOP) rather than busy.
    fn pause_threshold(&self) -> Duration {
        (self
            .config
            .health_check_interval
            .min(self.config.probe_interval)
            / 2)
        .max(MIN_PAUSE)
    }

    /// If `late` (how late a timer or tick ran) shows that this node was
    /// itself paused, the silence of every peer during the pause is not
    /// theirs: it is discounted from their φ, and overdue timers wait a
    /// grace period (`probe_timeout`) so the packets that queued up during
    /// the pause (acks, refutations) are read before any probe or
    /// suspicion is judged. Returns whether a pause was noticed.
    fn noticed_own_pause(&mut self, late: Duration) -> bool {
        if late < self.pause_threshold() {
            return false;
        }
        let now = self.now;
        let from = now.saturating_sub(late);
        for peer in self.peers.values_mut() {
            peer.detector.discount_silence(from, now);
        }
        self.stats.own_pauses += 1;
        self.grace_until = now + self.config.probe_timeout;
        self.adjust_local_health(1);
        tracing::debug!(
            ?late,
            "this node was paused; discounting the silence it caused"
        );
        true
    }

    fn adjust_local_health(&mut self, delta: i32) {
        if !self.config.local_health_awareness {
            return;
        }
        let next = (self.local_health as i32 + delta).clamp(0, MAX_LOCAL_HEALTH as i32) as u32;
        if next != self.local_health {
            self.local_health = next;
            if let Err(e) = self.foca.set_config(self.config.foca_config(next)) {
                tracing::warn!("could not apply local health: {e}");
            }
        }
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
            for (timer, after) in self.out.timers.drain(..) {
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
        // Sending may have queued more timers/notifications only through foca; done.
    }

    fn on_notification(&mut self, note: OwnedNotification<NodeId>) {
        match note {
            OwnedNotification::MemberUp(id) => self.member_up(id),
            OwnedNotification::MemberDown(id) => self.member_down(id),
            OwnedNotification::Rename(old, new) => self.renamed(old, new),
            // foca renews our identity itself when the cluster declares us
            // down (`Rejoin`); `Defunct` would mean renewal was impossible,
            // which `NodeId::renew` never refuses.
            OwnedNotification::Defunct => {
                tracing::warn!(node = %self.id, "declared down and unable to rejoin")
            }
            OwnedNotification::Rejoin(id) => {
                tracing::debug!(old = %self.id, new = %id, "declared down; rejoined under a new generation");
                self.stats.renewals += 1;
                self.id = id;
                self.broadcast_tags();
                self.announce_renewal();
            }
            OwnedNotification::ProbeFailed(..) => {
                self.probe_failed = true;
                self.adjust_local_health(1);
            }
            OwnedNotification::DataReceived(header) => self.heard_from(header.src, false),
            OwnedNotification::Active
            | OwnedNotification::Idle
            | OwnedNotification::DataSent(_) => {}
        }
    }

    fn member_up(&mut self, id: NodeId) {
        if id.addr == self.id.addr {
            return;
        }
        self.remember(id);
        let (phi, now) = (self.config.phi, self.now);
        let tags = self.book.tags_of(&id).unwrap_or_default();
        match self.peers.get_mut(&id.addr) {
            Some(peer) if peer.id == id => {
                let was = peer.status;
                peer.status = NodeStatus::Alive;
                peer.swim_down = false;
                peer.start_health(phi, now);
                if matches!(was, NodeStatus::Failed | NodeStatus::Left) {
                    self.events.push(ClusterEvent::NodeRecovered(id));
                }
            }
            existing => {
                if existing.is_none() && self.peers.len() >= self.config.max_members {
                    tracing::warn!(node = %id, "member table full (max_members); ignoring");
                    return;
                }
                // A new member, or a new life of a known address (restart).
                let mut peer = Peer {
                    id,
                    status: NodeStatus::Alive,
                    detector: PhiAccrualDetector::new(phi),
                    swim_down: false,
                    reported_tags: tags.clone(),
                    since: now,
                    shared_silence: false,
                };
                peer.start_health(phi, now);
                self.peers.insert(id.addr, peer);
                self.events
                    .push(ClusterEvent::NodeJoined { node: id, tags });
            }
        }
        // The newcomer missed earlier dissemination of our tags: tell it
        // directly (a cluster-wide broadcast per join would cost every
        // member O(n) per join).
        self.send_tags_to(id.addr);
    }

    /// An address came back under a higher generation while its earlier
    /// life was still active here: a restart faster than failure
    /// detection (or a renewal). It is a new life: `NodeJoined`. If SWIM
    /// had declared the old one down, `MemberUp(new)` follows and reports
    /// the new life instead.
    fn renamed(&mut self, old: NodeId, new: NodeId) {
        self.remember(new);
        let now = self.now;
        let tags = self.book.tags_of(&new).unwrap_or_default();
        let Some(peer) = self.peers.get_mut(&old.addr) else {
            return;
        };
        if peer.id != old || peer.swim_down {
            return;
        }
        peer.id = new;
        peer.status = NodeStatus::Alive;
        peer.start_health(self.config.phi, now);
        peer.reported_tags = tags.clone();
        self.events
            .push(ClusterEvent::NodeJoined { node: new, tags });
        self.send_tags_to(new.addr);
    }

    fn member_down(&mut self, id: NodeId) {
        let leaving = self.book.is_leaving(&id);
        let Some(peer) = self.peers.get_mut(&id.addr) else {
            return;
        };
        if peer.id != id {
            return;
        }
        let was = peer.status;
        peer.swim_down = true;
        if was != NodeStatus::Failed || leaving {
            peer.since = self.now;
        }
        peer.status = if leaving {
            NodeStatus::Left
        } else {
            NodeStatus::Failed
        };
        match (was, leaving) {
            (_, true) => self.events.push(ClusterEvent::NodeLeft(id)),
            (NodeStatus::Failed, false) => {} // φ got there first
            (_, false) => self.events.push(ClusterEvent::NodeFailed(id)),
        }
    }

    fn check_partition(&mut self) {
        let total = self
            .peers
            .values()
            .filter(|p| p.status != NodeStatus::Left)
            .count();
        if total < 2 {
            return;
        }
        let unreachable: Vec<NodeId> = self
            .peers
            .values()
            .filter(|p| p.status == NodeStatus::Failed)
            .map(|p| p.id)
            .collect();
        let fraction = unreachable.len() as f64 / total as f64;
        if !self.partitioned
            && unreachable.len() >= 2
            && fraction >= self.config.partition_threshold
        {
            self.partitioned = true;
            self.events
                .push(ClusterEvent::PartitionDetected { unreachable });
        } else if self.partitioned && fraction < self.config.partition_threshold / 2.0 {
            self.partitioned = false;
            self.events.push(ClusterEvent::PartitionHealed);
        }
    }
}

/// How long `peer` has been silent at `now` (zero if never heard).
fn silence(peer: &Peer, now: Duration) -> Duration {
    now.saturating_sub(peer.detector.last_seen().unwrap_or(now))
}

/// One of this core's own packets: the envelope byte `kind`, then `body`.
fn envelope(kind: u8, body: &impl serde::Serialize) -> Vec<u8> {
    let mut packet = vec![kind];
    // Serializing these plain structs into a Vec cannot fail.
    packet.extend_from_slice(&postcard::to_allocvec(body).unwrap_or_default());
    packet
}
