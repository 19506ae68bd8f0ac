//! Generations and restarts: the highest generation seen per address is
//! remembered (bounded), so an earlier life that comes back under a lower
//! generation is told to move above it (`STALE`), and a restarted node
//! that is told so moves above it once.

use crate::cluster::MemberAddr;
use std::time::Duration;

use super::envelope::Stale;
use super::MembershipCore;
use crate::cluster::membership::credential::MemberCredential;
use crate::cluster::NodeId;

/// Generations are remembered for up to this many times `max_members`
/// addresses.
pub(super) const GENERATION_MEMORY: usize = 4;

impl MembershipCore {
    /// The highest generation remembered for `addr` (0: none).
    pub(super) fn remembered(&self, addr: MemberAddr) -> u64 {
        self.generations.get(&addr).map_or(0, |&(g, _)| g)
    }

    /// The cluster remembers this address under a generation at least as
    /// high as ours: an earlier life of this node. Move above it, once
    /// (later `Stale` packets addressed to the old identity are ignored).
    pub(super) fn on_stale(&mut self, stale: Stale, from: &MemberCredential) {
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

    pub(super) fn remember(&mut self, id: NodeId) {
        let now = self.now;
        let entry = self.generations.entry(id.addr).or_insert((0, now));
        *entry = (entry.0.max(id.generation), now);
        let cap = self.config.max_members.saturating_mul(GENERATION_MEMORY);
        if self.generations.len() > cap {
            // Forget the least recently seen tenth of the non-members.
            let mut old: Vec<(Duration, MemberAddr)> = self
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
}
