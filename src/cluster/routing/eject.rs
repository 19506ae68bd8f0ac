//! Passive outlier ejection (after Envoy's outlier detection): the client
//! takes a worker out of rotation on its own evidence, without waiting for
//! the membership's verdict. Sans-IO: the caller passes `now`.
//!
//! * A connection failure, or a worker saying it will not take calls
//!   (`Unavailable`), ejects at once; [`EjectionPolicy::consecutive_failures`]
//!   timeouts in a row eject too. Handler errors do not: the worker answered.
//! * An ejection lasts `base_ejection × n` for the n-th ejection in a row,
//!   capped at `max_ejection`. When it ends, one call is let through (the
//!   ejection is re-armed meanwhile, half-open); its success puts the worker
//!   back, its failure ejects it for longer.
//! * A worker that answers, or that membership reports recovered (a new
//!   registry entry), starts with a clean record.

use std::time::Duration;

use tokio::time::Instant;

/// When a worker is taken out of rotation and for how long; set on the
/// registry that keeps each worker's record
/// ([`WorkerRegistry::with_ejection_policy`](super::WorkerRegistry::with_ejection_policy)),
/// for every client routing through it.
///
/// The n-th ejection in a row lasts `base_ejection × n`, at most
/// `max_ejection` (Envoy's rule). Connection failures and refusals eject
/// at once, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionPolicy {
    /// Timeouts in a row that eject a worker (default 5, Envoy's
    /// `consecutive_5xx` default; 0 counts as 1).
    pub consecutive_failures: u32,
    /// First ejection's length (default 1 s; Envoy's `base_ejection_time`
    /// defaults to 30 s, this library takes a worker back sooner, after one
    /// successful probe call).
    pub base_ejection: Duration,
    /// Longest ejection (default 30 s; Envoy's `max_ejection_time`
    /// defaults to 300 s).
    pub max_ejection: Duration,
}

impl Default for EjectionPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(30),
        }
    }
}

/// How a call to a worker ended, as far as the worker's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The worker answered (with a result or a handler error).
    Answered,
    /// No connection, or the connection was lost: eject at once.
    ConnectionFailed,
    /// The worker refused the call (shutting down, over a limit): eject at once.
    Refused,
    /// No answer in time: counts toward `consecutive_failures`.
    TimedOut,
}

/// One worker's record.
#[derive(Debug, Default, Clone)]
pub(crate) struct Health {
    consecutive: u32,
    ejections: u32,
    until: Option<Instant>,
}

impl Health {
    /// Whether the worker is out of rotation at `now`.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// Whether the worker has an ejection on record (current or ended but
    /// not yet cleared by a success).
    #[cfg(test)]
    pub(crate) fn has_ejection(&self) -> bool {
        self.until.is_some()
    }

    /// The worker was chosen for a call at `now`. After an ended ejection
    /// this call is the probe: the ejection is re-armed so that other calls
    /// keep away until the probe's outcome is known.
    pub(crate) fn on_selected(&mut self, now: Instant, policy: &EjectionPolicy) {
        if self.until.is_some_and(|until| now >= until) {
            self.until = Some(now + self.period(policy));
        }
    }

    /// Records a call's outcome; returns whether the worker's rotation
    /// status changed (ejected or put back).
    pub(crate) fn record(
        &mut self,
        outcome: Outcome,
        now: Instant,
        policy: &EjectionPolicy,
    ) -> bool {
        match outcome {
            Outcome::Answered => {
                let was = self.until.is_some();
                *self = Self::default();
                was
            }
            Outcome::ConnectionFailed | Outcome::Refused => self.eject(now, policy),
            Outcome::TimedOut => {
                self.consecutive += 1;
                if self.consecutive >= policy.consecutive_failures.max(1) {
                    self.eject(now, policy)
                } else {
                    false
                }
            }
        }
    }

    fn eject(&mut self, now: Instant, policy: &EjectionPolicy) -> bool {
        let was = self.is_ejected(now);
        self.consecutive = 0;
        self.ejections = self.ejections.saturating_add(1);
        self.until = Some(now + self.period(policy));
        !was
    }

    fn period(&self, policy: &EjectionPolicy) -> Duration {
        policy
            .base_ejection
            .saturating_mul(self.ejections.max(1))
            .min(policy.max_ejection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn connection_failure_ejects_at_once_and_success_restores() {
        let p = EjectionPolicy::default();
        let t0 = Instant::now();
        let mut h = Health::default();
        assert!(h.record(Outcome::ConnectionFailed, t0, &p));
        assert!(h.is_ejected(t0) && h.is_ejected(t0 + S / 2));
        assert!(
            !h.is_ejected(t0 + S),
            "the ejection ends after base_ejection"
        );
        h.on_selected(t0 + S, &p);
        assert!(h.is_ejected(t0 + S), "re-armed while the probe runs");
        assert!(h.record(Outcome::Answered, t0 + S, &p));
        assert!(!h.is_ejected(t0 + S) && !h.has_ejection());
    }

    #[test]
    fn failed_probes_eject_for_longer_up_to_the_cap() {
        let p = EjectionPolicy {
            max_ejection: 3 * S,
            ..EjectionPolicy::default()
        };
        let mut now = Instant::now();
        let mut h = Health::default();
        let mut lengths = Vec::new();
        for _ in 0..5 {
            h.record(Outcome::ConnectionFailed, now, &p);
            let start = now;
            while h.is_ejected(now) {
                now += S / 4;
            }
            lengths.push(now - start);
        }
        assert_eq!(lengths, vec![S, 2 * S, 3 * S, 3 * S, 3 * S]);
    }

    #[test]
    fn timeouts_eject_only_in_a_row() {
        let p = EjectionPolicy::default();
        let t = Instant::now();
        let mut h = Health::default();
        for _ in 0..4 {
            assert!(!h.record(Outcome::TimedOut, t, &p));
        }
        h.record(Outcome::Answered, t, &p);
        for _ in 0..4 {
            assert!(!h.record(Outcome::TimedOut, t, &p));
        }
        assert!(!h.is_ejected(t));
        assert!(h.record(Outcome::TimedOut, t, &p));
        assert!(h.is_ejected(t));
    }

    #[test]
    fn selection_without_an_ended_ejection_changes_nothing() {
        let p = EjectionPolicy::default();
        let t = Instant::now();
        let mut h = Health::default();
        h.on_selected(t, &p);
        assert!(!h.has_ejection());
        h.record(Outcome::Refused, t, &p);
        h.on_selected(t, &p);
        assert!(h.is_ejected(t) && !h.is_ejected(t + S));
    }
}
