//! Self-awareness: a node that notices its own timers or ticks ran late
//! was itself paused, discounts the silence it caused, and raises its
//! Lifeguard local-health score (Dadgar et al., 2018).

use std::time::Duration;

use super::MembershipCore;

/// The shortest lateness taken for a pause of this node itself; shorter
/// ones are scheduling noise on a busy machine.
pub(super) const MIN_PAUSE: Duration = Duration::from_millis(250);
/// Highest Lifeguard local-health multiplier.
pub(super) const MAX_LOCAL_HEALTH: u32 = 8;

impl MembershipCore {
    /// Lateness this large means this node itself was paused (a stall, a
    /// VM hiccup, SIGSTOP) rather than busy.
    pub(super) fn pause_threshold(&self) -> Duration {
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
    pub(super) fn noticed_own_pause(&mut self, late: Duration) -> bool {
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

    pub(super) fn adjust_local_health(&mut self, delta: i32) {
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
}
