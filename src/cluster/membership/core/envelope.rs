//! The core's own packets and who may send them. Every gossip packet is
//! an envelope: one byte saying what follows (a foca packet, a heartbeat,
//! tags, a staleness notice, a suspicion notice), then its body in
//! postcard. Admission checks that what a packet says about its sender is
//! covered by the sender's member credential, and that the sender is not
//! an earlier life of an address whose later life this node has seen.

use crate::cluster::MemberAddr;

use super::MembershipCore;
use crate::cluster::membership::credential::MemberCredential;
use crate::cluster::NodeId;

/// Envelope byte: a foca (SWIM) packet follows.
pub(super) const SWIM: u8 = 0;
/// Envelope byte: a health-check heartbeat follows: the sender's current
/// tag update (identity, version, tags), so tags also converge on every
/// tick. Its arrival times are the φ detector's interval samples.
pub(super) const HEARTBEAT: u8 = 1;
/// Envelope byte: "your packets come from an earlier life of your
/// address": a [`Stale`] follows. Sent to a node whose packets carry a
/// generation lower than one this node remembers for its address.
pub(super) const STALE: u8 = 2;
/// Envelope byte: the sender's tag update sent outside the heartbeat
/// rhythm (to a newcomer, or as anti-entropy): same body as
/// [`HEARTBEAT`], a sign of life but not an interval sample.
pub(super) const TAGS: u8 = 3;
/// Envelope byte: "you are suspected": a [`Suspicion`] follows. Lifeguard's
/// buddy system (Dadgar et al., 2018): a member that suspects another, and
/// has heard from it within an acceptable pause, tells it directly on every
/// health-check tick, so a suspect that was cut off
/// (a partition that just healed) refutes at once instead of waiting for
/// the suspicion to reach it by gossip, whose retransmissions may all have
/// been spent while it was unreachable.
pub(super) const SUSPECTED: u8 = 4;

/// Body of a [`STALE`] packet.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(super) struct Stale {
    /// Who answers (the node then announces its new identity to it).
    pub(super) from: NodeId,
    /// The identity the stale packet came from.
    pub(super) to: NodeId,
    /// The highest generation remembered for that address.
    pub(super) remembered: u64,
}

/// Body of a [`SUSPECTED`] packet.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(super) struct Suspicion {
    /// Who suspects.
    pub(super) from: NodeId,
    /// The suspect (the receiver, if the news is current).
    pub(super) about: NodeId,
    /// The suspect's incarnation the suspicion is about.
    pub(super) incarnation: foca::Incarnation,
}

/// One of this core's own packets: the envelope byte `kind`, then `body`.
pub(super) fn envelope(kind: u8, body: &impl serde::Serialize) -> Vec<u8> {
    let mut packet = vec![kind];
    // Serializing these plain structs into a Vec cannot fail.
    packet.extend_from_slice(&postcard::to_allocvec(body).unwrap_or_default());
    packet
}

impl MembershipCore {
    /// Whether a packet from `sender` (as it names itself) may be
    /// processed: its credential must cover the address, and the identity
    /// must not be an earlier life of an address whose later life this
    /// node has seen (that sender is told to move above, instead).
    pub(super) fn admit(&mut self, sender: NodeId, from: &MemberCredential) -> bool {
        if sender == self.id {
            // Our own packet, back through an address of ours (joining
            // through a service that resolves to this node too).
            return false;
        }
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

    /// Hands a packet of this core's own envelopes to the transport.
    pub(super) fn send(&mut self, to: MemberAddr, packet: Vec<u8>) {
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += packet.len() as u64;
        self.sends.push((to, packet));
    }
}
