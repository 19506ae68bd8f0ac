//! Member lifecycle: members coming up, new lives of known addresses,
//! members going down or leaving (events `NodeJoined`, `NodeRecovered`,
//! `NodeFailed`, `NodeLeft`), pruning of departed members, and this
//! node's own graceful leave.

use crate::cluster::MemberAddr;
use std::time::Duration;

use super::peer::Peer;
use super::MembershipCore;
use crate::cluster::membership::config::DOWN_ANNOUNCE_FANOUT;
use crate::cluster::membership::detector::PhiAccrualDetector;
use crate::cluster::{ClusterEvent, NodeId, NodeStatus};

impl MembershipCore {
    pub(super) fn member_up(&mut self, id: NodeId) {
        if id.addr == self.id.addr {
            return;
        }
        self.remember(id);
        let (phi, now) = (self.config.phi, self.now);
        let tags = self.book.tags_of(&id).unwrap_or_default();
        match self.peers.get_mut(&id.addr) {
            Some(peer) if peer.id == id => {
                let was = peer.status;
                peer.swim_down = false;
                peer.start_health(phi, now);
                // Back in SWIM's eyes; a monitor's verdict may still hold
                // it until the monitor hears it again (reassess).
                if !self.held_unreachable(&id) {
                    let peer = self.peers.get_mut(&id.addr).expect("just seen");
                    peer.status = NodeStatus::Alive;
                    if matches!(was, NodeStatus::Failed | NodeStatus::Left) {
                        self.events.push(ClusterEvent::NodeRecovered(id));
                    }
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
                    monitored: false,
                    armed: false,
                };
                peer.start_health(phi, now);
                self.peers.insert(id.addr, peer);
                self.judged.remove(&id.addr);
                self.events
                    .push(ClusterEvent::NodeJoined { node: id, tags });
            }
        }
        self.place(id.addr, true);
        // As a subject, and as an observer whose verdicts count from now.
        let mut affected = self.verdicts.observed_by(&id);
        affected.push(id.addr);
        self.reassess(&affected);
        // The newcomer missed earlier dissemination of our tags: tell it
        // directly (a cluster-wide broadcast per join would cost every
        // member O(n) per join). A monitor gets them as a heartbeat, which
        // lets it judge this node from now on.
        if self.config.phi_monitoring && self.ring_monitors.contains(&id.addr) {
            self.send(id.addr, self.tags_packet(super::envelope::HEARTBEAT));
        } else {
            self.send_tags_to(id.addr);
        }
    }

    /// An address came back under a higher generation while its earlier
    /// life was still active here: a restart faster than failure
    /// detection (or a renewal). It is a new life: `NodeJoined`. If SWIM
    /// had declared the old one down, `MemberUp(new)` follows and reports
    /// the new life instead.
    pub(super) fn renamed(&mut self, old: NodeId, new: NodeId) {
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
        peer.armed = false;
        peer.reported_tags = tags.clone();
        self.judged.remove(&new.addr);
        self.events
            .push(ClusterEvent::NodeJoined { node: new, tags });
        self.send_tags_to(new.addr);
        // Verdicts of its earlier life no longer count, those of the new
        // one (and about it) do.
        let mut affected = self.verdicts.observed_by(&old);
        affected.extend(self.verdicts.observed_by(&new));
        affected.push(new.addr);
        self.reassess(&affected);
    }

    pub(super) fn member_down(&mut self, id: NodeId) {
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
        self.place(id.addr, false);
        self.judged.remove(&id.addr);
        // Its verdicts about others no longer count.
        let observed = self.verdicts.observed_by(&id);
        self.reassess(&observed);
    }

    /// Forgets members SWIM declared down (failed or left) longer than
    /// `forget_after` ago: their places in the member table, their tags.
    /// Their generations stay remembered.
    pub(super) fn forget_departed(&mut self, now: Duration) {
        let forget_after = self.config.forget_after;
        let gone: Vec<MemberAddr> = self
            .peers
            .values()
            .filter(|p| p.swim_down && now.saturating_sub(p.since) >= forget_after)
            .map(|p| p.id.addr)
            .collect();
        for addr in gone {
            self.peers.remove(&addr);
            self.book.forget(addr);
            self.verdicts.forget(addr);
            self.monitors.remove(&addr);
        }
    }

    /// foca announces this node to members it holds down (up to
    /// `DOWN_ANNOUNCE_FANOUT` every `rejoin_interval`, so a partition heals
    /// without restarts) only while it has an active member. A node whose
    /// every member went down, with no seed to rejoin through (a node that
    /// started the cluster) or only a dead one, would never speak to them
    /// again: when both sides of a partition are left alone (two members,
    /// or members split one from another after their seed died) the
    /// cluster would stay split after the network healed. While it has no
    /// active member the core announces in foca's place, to the same
    /// number of failed members per `rejoin_interval`, in address order
    /// from where the last turn stopped. Members that left are not asked
    /// back.
    pub(super) fn announce_while_alone(&mut self, now: Duration) {
        if self.leaving
            || self.foca.num_members() > 0
            || now.saturating_sub(self.last_alone_announce) < self.config.rejoin_interval
        {
            return;
        }
        let failed = self.failed_members();
        if failed.is_empty() {
            return;
        }
        self.last_alone_announce = now;
        let turn = DOWN_ANNOUNCE_FANOUT.min(failed.len());
        for k in 0..turn {
            let to = failed[(self.alone_turn + k) % failed.len()];
            let _ = self.foca.announce(to, &mut self.out);
        }
        self.alone_turn = (self.alone_turn + turn) % failed.len();
    }

    /// The members whose status is `Failed`, in address order.
    pub(super) fn failed_members(&self) -> Vec<NodeId> {
        self.peers
            .values()
            .filter(|p| p.status == NodeStatus::Failed)
            .map(|p| p.id)
            .collect()
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
        self.leaving = true;
        let _ = self.foca.leave_cluster(&mut self.out);
        self.flush();
    }
}
