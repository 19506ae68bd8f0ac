//! The foca adapter: collects foca's outputs during one input, turns its
//! notifications into the core's state changes, and works around two foca
//! 2.0 behaviours (the courtesy `TurnUndead` after a refuted suspicion,
//! and a renewed identity left without timers).

use std::time::Duration;

use foca::{Notification, OwnedNotification, PostcardCodec, Timer};

use super::envelope::SWIM;
use super::MembershipCore;
use crate::cluster::membership::core::Peer;
use crate::cluster::{NodeId, NodeStatus};

/// Collects foca's outputs during one input.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) sends: Vec<(NodeId, Vec<u8>)>,
    pub(super) timers: Vec<(Timer<NodeId>, Duration)>,
    pub(super) notes: Vec<OwnedNotification<NodeId>>,
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

/// Whether `packet` is a SWIM announce (a request to join): the one packet
/// that may go to an address that is not a known member (a seed).
pub(crate) fn is_announce(packet: &[u8]) -> bool {
    use foca::Codec;
    match packet.split_first() {
        Some((&SWIM, foca_packet)) => PostcardCodec
            .decode_header(foca_packet)
            .is_ok_and(|h: foca::Header<NodeId>| h.message == foca::Message::Announce),
        _ => false,
    }
}

pub(super) fn is_turn_undead(packet: &[u8]) -> bool {
    use foca::Codec;
    match packet.split_first() {
        Some((&SWIM, foca_packet)) => PostcardCodec
            .decode_header(foca_packet)
            .is_ok_and(|h: foca::Header<NodeId>| h.message == foca::Message::TurnUndead),
        _ => false,
    }
}

impl MembershipCore {
    pub(super) fn on_notification(&mut self, note: OwnedNotification<NodeId>) {
        match note {
            OwnedNotification::MemberUp(id) => self.member_up(id),
            OwnedNotification::MemberDown(id) => self.member_down(id),
            OwnedNotification::Rename(old, new) => self.renamed(old, new),
            // foca renews our identity itself when the cluster declares us
            // down (`Rejoin`); `Defunct` otherwise means renewal was
            // impossible, which `NodeId::renew` never refuses, or that this
            // node left (foca reports its own departure so).
            OwnedNotification::Defunct if self.leaving => {
                tracing::debug!(node = %self.id, "left the cluster")
            }
            OwnedNotification::Defunct => {
                tracing::warn!(node = %self.id, "declared down and unable to rejoin")
            }
            OwnedNotification::Rejoin(id) => {
                tracing::debug!(old = %self.id, new = %id, "declared down; rejoined under a new generation");
                self.stats.renewals += 1;
                self.id = id;
                // Verdicts of the earlier life no longer count: judge
                // afresh, and let go of members only they held.
                let judged: Vec<_> = std::mem::take(&mut self.judged).into_iter().collect();
                self.reassess(&judged);
                self.broadcast_tags();
                self.announce_renewal();
            }
            OwnedNotification::ProbeFailed(_, member) => {
                self.probe_failed = true;
                if self.heard_during_probe(&member) {
                    self.adjust_local_health(1);
                }
            }
            OwnedNotification::DataReceived(header) => self.heard_from(header.src, false),
            OwnedNotification::Active
            | OwnedNotification::Idle
            | OwnedNotification::DataSent(_) => {}
        }
    }

    /// Works around foca 2.0: when a suspicion timer fires for a member
    /// that has since refuted (its incarnation moved on), foca does not
    /// declare it down but still sends it the courtesy `TurnUndead`, which
    /// makes a live member believe the cluster declared it down and renew
    /// its identity. Keep that message only if the member really went down.
    pub(super) fn drop_courtesy_turn_undead(
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

    /// After foca renewed this node's identity (the cluster had declared it
    /// down), it is `Disconnected` with every timer cancelled, and packets
    /// addressed to its old identity are dropped: if every member renewed
    /// at once (both sides of a long partition told each other "you are
    /// down"), nobody would ever speak again. So: announce the new identity
    /// to members this node knows (announcements are accepted by address),
    /// whose answers reconnect it, and let foca reconnect to the members it
    /// still holds active, which restarts its probe and announce timers.
    pub(super) fn announce_renewal(&mut self) {
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
}
