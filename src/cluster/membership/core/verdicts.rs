//! Verdicts: heartbeats to the monitored members, φ verdicts (with shared
//! silence waiting for `partition_grace`), recoveries when a member failed
//! on φ alone is heard again, and partition detection.

use crate::cluster::MemberAddr;
use std::time::Duration;

use super::envelope::HEARTBEAT;
use super::peer::{silence, Peer};
use super::MembershipCore;
use crate::cluster::{ClusterEvent, NodeId, NodeStatus};

impl MembershipCore {
    pub(super) fn monitor(&mut self, now: Duration) {
        let heartbeat = self.tags_packet(HEARTBEAT);
        let targets: Vec<MemberAddr> = self
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
        let quiet: Vec<(MemberAddr, Duration)> = self
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
        let due: Vec<MemberAddr> = self
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

    /// A packet from `from` arrived: a sign of life, and an interval
    /// sample if it is one of its periodic `heartbeat`s.
    pub(super) fn heard_from(&mut self, from: NodeId, heartbeat: bool) {
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

    pub(super) fn phi_failed_only(&self, peer: &Peer) -> bool {
        // Keep heartbeating members we failed on φ alone: SWIM still
        // considers them up, and they may come back.
        self.foca
            .iter_members()
            .any(|m| m.id() == &peer.id && m.state() != foca::State::Down)
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
