//! Lifeguard's buddy system (Dadgar et al., 2018): suspects that are
//! evidently alive are told directly that they are suspected, and a
//! suspicion of this node from a current member is refuted once per
//! incarnation.

use super::envelope::{envelope, Suspicion, SUSPECTED};
use super::peer::silence;
use super::MembershipCore;
use crate::cluster::{NodeId, NodeStatus};

impl MembershipCore {
    /// Lifeguard's buddy system: every member SWIM suspects here, and that
    /// this node has nevertheless heard from within an acceptable pause
    /// (so it is evidently alive, and may not know it is suspected: a
    /// partition just healed), hears so directly, once per tick (see
    /// [`SUSPECTED`]). A suspect that stays silent is told nothing.
    pub(super) fn tell_suspects(&mut self) {
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

    /// A member says this node (or another) is suspected. Only a current
    /// member's word counts; the suspicion is handed to foca, which refutes
    /// it with a higher incarnation, once per incarnation (the other
    /// suspecters' copies of the same news are dropped). The highest
    /// incarnation is refused: foca would answer it by renewing this
    /// node's identity.
    pub(super) fn on_suspected(&mut self, suspicion: Suspicion) {
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
        // Lifeguard: a node suspected by a member that evidently hears
        // from it is likely slow itself.
        self.adjust_local_health(1);
        let update = foca::Member::new(self.id, suspicion.incarnation, foca::State::Suspect);
        let _ = self
            .foca
            .apply_many(std::iter::once(update), true, &mut self.out);
    }
}
