//! Verdicts: heartbeats to this node's monitors on the heartbeat ring, φ
//! verdicts about its subjects (shared silence waiting for
//! `partition_grace`), published as reachability records every member
//! learns by gossip; statuses that follow the records; partition detection.

use crate::cluster::MemberAddr;
use std::time::Duration;

use super::envelope::HEARTBEAT;
use super::peer::{silence, Peer};
use super::MembershipCore;
use crate::cluster::membership::broadcasts::encode_verdict;
use crate::cluster::membership::reachability::Verdict;
use crate::cluster::{ClusterEvent, NodeId, NodeStatus};

/// How long a member keeps heartbeating one that stopped being its
/// monitor (a member joined between them on the ring, or the monitor
/// learned of one first). The old monitor may not know of the newcomer
/// yet and would judge the silence: this covers the time gossip takes to
/// tell it (2.5 s for 1,000 members joining at once in the simulation)
/// with room.
pub(super) const MONITOR_HANDOVER: Duration = Duration::from_secs(10);

impl MembershipCore {
    /// The health-check tick's φ work: heartbeats to this node's monitors,
    /// then verdicts about its subjects.
    pub(super) fn monitor(&mut self, now: Duration) {
        self.heartbeat(now);
        let threshold = self.config.phi.threshold;
        let pause = self.config.phi.acceptable_pause;
        // A subject is judged once it is armed (`Peer::armed`), or at once
        // when every member watches every other.
        let all_to_all = self.all_to_all();
        let armed = |p: &Peer| self.judged.contains(&p.id.addr) || p.armed || all_to_all;
        // Ordered and without repeats (a ring subject may be judged too).
        let subjects: std::collections::BTreeSet<MemberAddr> = self
            .ring_subjects
            .iter()
            .chain(self.judged.iter())
            .filter_map(|a| self.peers.get(a))
            .filter(|p| !p.swim_down && armed(p))
            .map(|p| p.id.addr)
            .collect();
        // Subjects silent longer than an acceptable pause (usually none).
        // Members already judged are not paired with: a crash a second
        // after another's verdict is its own.
        let quiet: Vec<(MemberAddr, Duration)> = subjects
            .iter()
            .filter(|a| !self.judged.contains(*a))
            .filter_map(|a| self.peers.get(a))
            .filter(|p| silence(p, now) >= pause)
            .map(|p| (p.id.addr, silence(p, now)))
            .collect();
        for &(addr, own) in &quiet {
            if quiet
                .iter()
                .any(|&(other, theirs)| other != addr && theirs.abs_diff(own) <= pause)
            {
                if let Some(peer) = self.peers.get_mut(&addr) {
                    peer.shared_silence = true;
                }
            }
        }
        let grace = self.config.partition_grace;
        let mut verdicts = Vec::new();
        for addr in subjects {
            let Some(peer) = self.peers.get(&addr) else {
                continue;
            };
            let phi = peer.detector.phi(now);
            let held = self.judged.contains(&addr);
            if !held && phi >= threshold && (!peer.shared_silence || silence(peer, now) >= grace) {
                tracing::debug!(node = %peer.id, "phi verdict: unreachable");
                verdicts.push((peer.id, false));
            } else if held && phi < threshold {
                verdicts.push((peer.id, true));
            }
        }
        for (subject, reachable) in verdicts {
            self.publish(subject, reachable);
        }
    }

    /// Heartbeats to this node's monitors: its successors on the ring,
    /// members that were within `MONITOR_HANDOVER`, and observers whose
    /// verdict holds it unreachable (so they hear it again and take the
    /// verdict back).
    fn heartbeat(&mut self, now: Duration) {
        for &addr in &self.ring_monitors {
            self.monitors.insert(addr, now);
        }
        self.monitors
            .retain(|_, last| now.saturating_sub(*last) <= MONITOR_HANDOVER);
        let mut targets: Vec<MemberAddr> = self.monitors.keys().copied().collect();
        // Observers of this life that hold it unreachable, as long as
        // they are members under that identity.
        targets.extend(
            self.verdicts
                .unreachable_by(&self.id)
                .into_iter()
                .filter(|o| self.peers.get(&o.addr).is_some_and(|p| p.id == *o))
                .map(|observer| observer.addr),
        );
        targets.sort_unstable();
        targets.dedup();
        let heartbeat = self.tags_packet(HEARTBEAT);
        for addr in targets {
            if self.peers.get(&addr).is_some_and(|p| !p.swim_down) {
                self.send(addr, heartbeat.clone());
            }
        }
    }

    /// Whether `peer`'s φ means something here: this node monitors it
    /// and has had a heartbeat from it since (one of its subjects on the
    /// ring, or one it was when SWIM declared it down), or its own verdict
    /// holds it unreachable.
    pub(super) fn judges(&self, peer: &Peer) -> bool {
        self.config.phi_monitoring
            && ((peer.monitored && (peer.armed || self.all_to_all()))
                || self.judged.contains(&peer.id.addr))
    }

    /// Whether the ring is small enough (n ≤ `phi_monitors` + 1) that
    /// every member watches every other: a member then knows this node is
    /// its monitor as soon as it knows this node, so its subjects are
    /// judged from the moment they are known, without waiting for a first
    /// heartbeat (a member killed right after joining is judged as fast as
    /// any other).
    fn all_to_all(&self) -> bool {
        self.ring.len() <= self.config.phi_monitors + 1
    }

    /// Places the member at `addr` on the heartbeat ring (`true`) or takes
    /// it off, and recomputes this node's monitors and subjects.
    pub(super) fn place(&mut self, addr: MemberAddr, on: bool) {
        if on {
            self.ring.insert(addr);
        } else {
            self.ring.remove(&addr);
        }
        let k = self.config.phi_monitors;
        self.ring_monitors = self.ring.successors(&self.id.addr, k);
        let before = std::mem::replace(
            &mut self.ring_subjects,
            self.ring.predecessors(&self.id.addr, k),
        );
        // Only the members whose place changed (at most 2k), so a join
        // costs O(k) here whatever the cluster's size. A member SWIM took
        // off the ring keeps its mark: its φ still tells how long it has
        // been silent.
        // A member that becomes a subject is judged only once it has
        // heartbeated this node since (`Peer::armed`).
        for addr in before.iter().chain(&self.ring_subjects) {
            let subject = self.ring_subjects.contains(addr);
            let was = before.contains(addr);
            if let Some(peer) = self.peers.get_mut(addr) {
                if !peer.swim_down {
                    peer.monitored = subject;
                    if subject != was {
                        peer.armed = false;
                    }
                }
            }
        }
    }

    /// Anti-entropy for verdicts (every `tag_refresh_interval`): this
    /// node's verdicts that still hold, and those it took back within the
    /// last two intervals, go out again under new versions. Gossip's
    /// retransmissions of a verdict last about a second; a member that
    /// heard nothing then (a loss burst, a pause) would otherwise hold a
    /// live member failed until SWIM's next word on it, which may never come.
    pub(super) fn repeat_verdicts(&mut self) {
        let window = 2 * self.config.tag_refresh_interval;
        let now = self.now;
        self.retracted
            .retain(|(_, at)| now.saturating_sub(*at) <= window);
        let held: Vec<NodeId> = self
            .judged
            .iter()
            .filter_map(|a| self.peers.get(a))
            .map(|p| p.id)
            .collect();
        let taken_back: Vec<NodeId> = self.retracted.iter().map(|(id, _)| *id).collect();
        for subject in held {
            self.publish(subject, false);
        }
        for subject in taken_back {
            if !self.judged.contains(&subject.addr) {
                self.publish(subject, true);
            }
        }
    }

    /// This node's verdict about `subject`, as news for every member.
    fn publish(&mut self, subject: NodeId, reachable: bool) {
        if reachable {
            if self.judged.remove(&subject.addr) {
                self.retracted.retain(|(id, _)| id.addr != subject.addr);
                self.retracted.push((subject, self.now));
            }
        } else {
            self.judged.insert(subject.addr);
        }
        self.verdict_version += 1;
        let verdict = Verdict {
            observer: self.id,
            subject,
            reachable,
            version: self.verdict_version,
        };
        if let Err(e) = self.foca.add_broadcast(&encode_verdict(&verdict)) {
            tracing::warn!("verdict not spread: {e}");
        }
    }

    /// Whether a current observer's verdict holds `id` unreachable. An
    /// observer counts while it is this node or a member SWIM holds
    /// active under that identity.
    pub(super) fn held_unreachable(&self, id: &NodeId) -> bool {
        self.verdicts.unreachable_by(id).iter().any(|observer| {
            (*observer == self.id && self.judged.contains(&id.addr))
                || self
                    .peers
                    .get(&observer.addr)
                    .is_some_and(|p| p.id == *observer && !p.swim_down)
        })
    }

    /// Statuses follow the verdicts about the members at `addrs`: a
    /// member SWIM holds active is `Failed` while a current observer holds
    /// it unreachable, and recovers when none does.
    pub(super) fn reassess(&mut self, addrs: &[MemberAddr]) {
        for addr in addrs {
            let Some(peer) = self.peers.get(addr) else {
                continue;
            };
            if peer.swim_down || peer.status == NodeStatus::Left {
                continue;
            }
            let (id, status) = (peer.id, peer.status);
            let held = self.held_unreachable(&id);
            let now = self.now;
            let Some(peer) = self.peers.get_mut(addr) else {
                continue;
            };
            match (status, held) {
                (NodeStatus::Alive | NodeStatus::Suspect, true) => {
                    peer.status = NodeStatus::Failed;
                    peer.since = now;
                    self.events.push(ClusterEvent::NodeFailed(id));
                }
                (NodeStatus::Failed, false) => {
                    peer.status = NodeStatus::Alive;
                    self.events.push(ClusterEvent::NodeRecovered(id));
                }
                _ => {}
            }
        }
    }

    /// A packet from `from` arrived: a sign of life, and an interval
    /// sample if it is one of its periodic `heartbeat`s. A subject this
    /// node held unreachable whose φ fell back is declared reachable.
    pub(super) fn heard_from(&mut self, from: NodeId, heartbeat: bool) {
        let Some(peer) = self.peers.get_mut(&from.addr) else {
            return;
        };
        if peer.id != from {
            return;
        }
        if heartbeat {
            peer.detector.heartbeat(self.now);
            peer.armed = true;
        } else {
            peer.detector.heard(self.now);
        }
        peer.shared_silence = false;
        if self.judged.contains(&from.addr)
            && peer.detector.phi(self.now) < self.config.phi.threshold
        {
            self.publish(from, true);
        }
    }

    pub(super) fn check_partition(&mut self) {
        let total = self
            .peers
            .values()
            .filter(|p| p.status != NodeStatus::Left)
            .count();
        if total < 2 {
            return;
        }
        let unreachable = self.failed_members();
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
