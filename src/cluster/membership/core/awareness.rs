//! Self-awareness: a node that notices its own timers or ticks ran late
//! was itself paused, discounts the silence it caused, and raises its
//! Lifeguard local-health score (Dadgar, Phillips, Currey, "Lifeguard:
//! Local Health Awareness for More Accurate Failure Detection", 2018),
//! which stretches its probe and suspicion timers.
//!
//! ## How local health takes effect
//! foca 2.0 refuses any change of `probe_period` or `probe_rtt` once it
//! runs (`Foca::set_config` fails with `InvalidConfig`), so the score
//! cannot be applied through foca's configuration. Every timer foca asks
//! for passes through this core on its way out ([`MembershipCore::stretch`]),
//! and three of them are the timeouts Lifeguard scales; they are scheduled
//! `1 + local_health` times later:
//!
//! * `ProbeRandomMember` (the probe interval) and `SendIndirectProbe` (the
//!   direct probe's timeout): Lifeguard's LHA-Probe. A node that answers
//!   slowly itself gives each probe more time and probes less often, so
//!   the acks it handles late still count.
//! * `ChangeSuspectToDown` (the suspicion timeout of a member whose probe
//!   failed here): as far as foca allows Lifeguard's LHA-Suspicion. The
//!   paper shortens suspicion as independent confirmations arrive; foca
//!   keeps no confirmations and starts this timer only at the member whose
//!   probe failed, so the suspecter's own health scales it instead: an
//!   unhealthy node waits longer for the suspect's refutation, which it
//!   may be handling late.
//!
//! A timer is stretched by the score at the moment foca schedules it: the
//! probe cycle whose end schedules the next one is counted afterwards, so a
//! healthy node's first failed probe (a member that really died) starts an
//! unstretched suspicion. Rebuilding foca with a new configuration would
//! lose its member states and broadcast backlog; stretching needs nothing
//! from foca.

use std::time::Duration;

use foca::Timer;

use super::peer::silence;
use super::MembershipCore;
use crate::cluster::NodeId;

/// The shortest lateness taken for a pause of this node itself; shorter
/// ones are scheduling noise on a busy machine.
pub(super) const MIN_PAUSE: Duration = Duration::from_millis(250);
/// Highest Lifeguard local-health score: timeouts are stretched at most
/// `1 + MAX_LOCAL_HEALTH` times (memberlist's `AwarenessMaxMultiplier`).
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

    /// Lifeguard's local health score moves by `delta`, within
    /// 0..=[`MAX_LOCAL_HEALTH`]: up when a probe of a member this node
    /// hears from fails, a timer of its runs late, it was paused or had to
    /// refute a suspicion of itself; down when a probe cycle succeeds.
    pub(super) fn adjust_local_health(&mut self, delta: i32) {
        if !self.config.local_health_awareness {
            return;
        }
        self.local_health = self
            .local_health
            .saturating_add_signed(delta)
            .min(MAX_LOCAL_HEALTH);
    }

    /// Whether a member whose probe just failed was heard from during the
    /// probe cycle (one stretched probe interval). Lifeguard tells "the
    /// target is down" from "I am slow" by nacks from the indirect probers;
    /// foca has none. A target this node keeps hearing from is evidently
    /// alive and talking, so the failed probe is this node's doing (acks
    /// handled late, or a lossy path here) and counts against its health.
    /// A silent target is most likely down (or cut off): counting it would
    /// stretch the very suspicion that must declare it down.
    pub(super) fn heard_during_probe(&self, member: &NodeId) -> bool {
        let cycle = self.config.probe_interval * (1 + self.local_health);
        self.peers
            .get(&member.addr)
            .is_some_and(|p| p.id == *member && silence(p, self.now) < cycle)
    }

    /// When foca's `timer`, asked for `after`, is due: the probe interval,
    /// the probe timeout and the suspicion timeout are stretched
    /// `1 + local_health` times; gossip, announce and forgetting timers are not.
    pub(super) fn stretch(&self, timer: &Timer<NodeId>, after: Duration) -> Duration {
        match timer {
            Timer::ProbeRandomMember(_)
            | Timer::SendIndirectProbe { .. }
            | Timer::ChangeSuspectToDown { .. } => after * (1 + self.local_health),
            Timer::PeriodicAnnounce(_)
            | Timer::PeriodicAnnounceDown(_)
            | Timer::PeriodicGossip(_)
            | Timer::RemoveDown(_) => after,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cluster::MemberAddr;

    use super::*;
    use crate::cluster::membership::credential::MemberCredential;
    use crate::cluster::ClusterConfig;

    fn addr(i: u8) -> MemberAddr {
        MemberAddr::from(sock(i))
    }

    fn sock(i: u8) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([10, 0, 0, i], 7000))
    }

    /// Delivers every packet `from` has for `to`, at `now`.
    fn deliver(from: &mut MembershipCore, to: &mut MembershipCore, now: Duration) {
        let credential = MemberCredential::for_addr(from.id().addr);
        for (_, packet) in from.drain_sends() {
            to.handle_packet(&packet, &credential, now);
        }
    }

    fn take(
        timers: &mut Vec<(Duration, Timer<NodeId>)>,
        kind: fn(&Timer<NodeId>) -> bool,
    ) -> (Duration, Timer<NodeId>) {
        let i = timers
            .iter()
            .position(|(_, t)| kind(t))
            .unwrap_or_else(|| panic!("no such timer among {timers:?}"));
        timers.remove(i)
    }

    fn probe(t: &Timer<NodeId>) -> bool {
        matches!(t, Timer::ProbeRandomMember(_))
    }

    fn indirect(t: &Timer<NodeId>) -> bool {
        matches!(t, Timer::SendIndirectProbe { .. })
    }

    fn suspicion(t: &Timer<NodeId>) -> bool {
        matches!(t, Timer::ChangeSuspectToDown { .. })
    }

    /// foca 2.0 refuses new probe timings at run time; the core stretches
    /// the probe interval, the probe timeout and the suspicion timeout
    /// itself, by 1 + local health (before, `set_config` failed and every
    /// timer kept its configured length whatever the score).
    #[test]
    fn local_health_stretches_probe_and_suspicion_timers() {
        let config = ClusterConfig::default().with_phi_monitoring(false);
        let zero = Duration::ZERO;
        let mut a = MembershipCore::new(NodeId::new(addr(1), 1), config.clone(), 1, zero);
        let mut b = MembershipCore::new(NodeId::new(addr(2), 1), config.clone(), 2, zero);
        a.join(addr(2), zero);
        let mut timers = Vec::new();
        for _ in 0..3 {
            deliver(&mut a, &mut b, zero);
            deliver(&mut b, &mut a, zero);
            timers.extend(a.drain_timers());
        }
        assert!(a.peer(&addr(2)).is_some(), "a knows b");

        // Healthy: the configured lengths; b answers.
        let (due, timer) = take(&mut timers, probe);
        assert_eq!(due, config.probe_interval);
        a.handle_timer(timer, due, due);
        deliver(&mut a, &mut b, due);
        deliver(&mut b, &mut a, due);
        let mut timers = a.drain_timers();
        let (indirect_due, indirect_timer) = take(&mut timers, indirect);
        assert_eq!(indirect_due, due + config.probe_timeout);
        let (due, timer) = take(&mut timers, probe);
        assert_eq!(
            due,
            indirect_due - config.probe_timeout + config.probe_interval
        );
        a.handle_timer(indirect_timer, indirect_due, indirect_due);

        // Local health 3: the next probe waits four probe timeouts for its
        // ack, and the one after comes four probe intervals later.
        a.local_health = 3;
        a.handle_timer(timer, due, due);
        a.drain_sends(); // b never hears of this probe
        let mut timers = a.drain_timers();
        let (indirect_due, indirect_timer) = take(&mut timers, indirect);
        assert_eq!(indirect_due, due + config.probe_timeout * 4);
        let (next_due, next) = take(&mut timers, probe);
        assert_eq!(next_due, due + config.probe_interval * 4);
        // The probe cycle that ended there had succeeded.
        assert_eq!(a.local_health, 2);

        // Still unhealthy when the probe is found failed: b is suspected
        // for four suspicion timeouts.
        a.local_health = 3;
        a.handle_timer(indirect_timer, indirect_due, indirect_due);
        a.handle_timer(next, next_due, next_due);
        let mut timers = a.drain_timers();
        let (down_due, _) = take(&mut timers, suspicion);
        assert_eq!(down_due, next_due + config.suspicion_timeout() * 4);
        // b had been silent for the whole (stretched) cycle: the failure
        // does not count against a's own health, nor for it.
        assert_eq!(a.local_health, 3);
    }
}
