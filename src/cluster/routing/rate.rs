//! Success-rate outlier detection, sans-IO: each worker's calls and
//! failures over a sliding window, and the one comparison that judges a
//! worker against the others.
//!
//! A worker is an outlier when it has made at least
//! [`success_rate_volume`](super::EjectionPolicy::success_rate_volume)
//! calls in the window and its failure rate is above that of the typical
//! other worker by at least
//! [`success_rate_margin_percent`](super::EjectionPolicy::success_rate_margin_percent)
//! points. The typical other worker's rate is the lower median of the
//! failure rates of the other workers in rotation that made as many calls
//! (the lower of the two middle ones for an even count), so a second
//! failing worker among three does not shield the first. Every failure
//! counts, a handler's `Err` included: an error that is the request's
//! comes from every worker alike and moves no worker away from the
//! others, while a worker that is broken fails where the others answer.
//!
//! After Envoy's success-rate and failure-percentage ejection: Envoy
//! compares with the mean and standard deviation of the hosts' success
//! rates, which cannot single out one of fewer than five hosts (with one
//! host at 0% and the rest at 100%, mean − 1.9 σ is below zero up to four
//! hosts), and its failure percentage is absolute, so an error every host
//! returns would eject them all up to the limit. A margin over the others
//! works from two workers up and ejects nobody for a shared error.

use std::time::Duration;

use tokio::time::Instant;

use super::eject::EjectionPolicy;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    calls: u32,
    failures: u32,
}

/// Calls and failures in the current period and the one before it
/// (periods of `success_rate_interval`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Window {
    /// When the current period began (none before the first call).
    start: Option<Instant>,
    current: Counts,
    previous: Counts,
}

impl Window {
    /// Counts one call at `now`.
    pub(crate) fn add(&mut self, now: Instant, interval: Duration, failed: bool) {
        let interval = interval.max(Duration::from_millis(1));
        match self.start {
            None => self.start = Some(now),
            Some(start) if now >= start + interval => {
                let periods = periods(now - start, interval);
                self.previous = if periods == 1 {
                    self.current
                } else {
                    Counts::default()
                };
                self.current = Counts::default();
                self.start = Some(if periods == 1 { start + interval } else { now });
            }
            Some(_) => {}
        }
        self.current.calls = self.current.calls.saturating_add(1);
        self.current.failures = self.current.failures.saturating_add(u32::from(failed));
    }

    /// Calls and failures counted over the current and the previous
    /// period as of `now`.
    pub(crate) fn totals(&self, now: Instant, interval: Duration) -> (u32, u32) {
        let interval = interval.max(Duration::from_millis(1));
        let Some(start) = self.start else {
            return (0, 0);
        };
        let counts = match periods(now.saturating_duration_since(start), interval) {
            0 => [self.current, self.previous],
            1 => [self.current, Counts::default()],
            _ => return (0, 0),
        };
        counts.iter().fold((0, 0), |(c, f), n| {
            (c.saturating_add(n.calls), f.saturating_add(n.failures))
        })
    }
}

/// Whole periods of `interval` in `elapsed`.
fn periods(elapsed: Duration, interval: Duration) -> u128 {
    elapsed.as_nanos() / interval.as_nanos().max(1)
}

/// Whether a worker with `own` (calls, failures) in its window is an
/// outlier against `others`, the (calls, failures) of each other worker in
/// rotation. See the module's rule.
pub(crate) fn is_outlier(own: (u32, u32), others: &[(u32, u32)], policy: &EjectionPolicy) -> bool {
    let volume = policy.success_rate_volume.max(1);
    let margin = policy.success_rate_margin_percent.min(100);
    if margin == 0 || own.0 < volume {
        return false;
    }
    let mut rates: Vec<f64> = others
        .iter()
        .filter(|(calls, _)| *calls >= volume)
        .map(|&(calls, failures)| f64::from(failures) / f64::from(calls))
        .collect();
    if rates.is_empty() {
        return false;
    }
    rates.sort_by(f64::total_cmp);
    let typical = rates[(rates.len() - 1) / 2];
    let own_rate = f64::from(own.1) / f64::from(own.0);
    (own_rate - typical) * 100.0 >= f64::from(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(10);

    #[test]
    fn the_window_covers_the_current_and_the_previous_period() {
        let t0 = Instant::now();
        let mut w = Window::default();
        assert_eq!(w.totals(t0, S), (0, 0));
        for i in 0..10 {
            w.add(t0 + Duration::from_millis(i), S, i % 2 == 0);
        }
        assert_eq!(w.totals(t0 + S / 2, S), (10, 5));
        w.add(t0 + S + S / 2, S, true);
        assert_eq!(
            w.totals(t0 + S + S / 2, S),
            (11, 6),
            "the previous period still counts"
        );
        assert_eq!(
            w.totals(t0 + 2 * S + S / 2, S),
            (1, 1),
            "then only the current"
        );
        assert_eq!(w.totals(t0 + 3 * S + S / 2, S), (0, 0), "then nothing");
        w.add(t0 + 5 * S, S, false);
        assert_eq!(
            w.totals(t0 + 5 * S, S),
            (1, 0),
            "a long silence forgets all"
        );
    }

    #[test]
    fn an_outlier_fails_far_more_than_the_typical_other_worker() {
        let p = EjectionPolicy::default();
        // Always failing, the others never: an outlier once both have 20 calls.
        assert!(is_outlier((20, 20), &[(20, 0)], &p));
        assert!(!is_outlier((19, 19), &[(40, 0)], &p), "too few own calls");
        assert!(
            !is_outlier((20, 20), &[(19, 0), (19, 0)], &p),
            "too few calls elsewhere"
        );
        // A shared error: everyone fails alike.
        assert!(!is_outlier((100, 100), &[(200, 200), (50, 50)], &p));
        assert!(!is_outlier((100, 30), &[(200, 60)], &p));
        // 50 points above: 60% against 10%, but not 55% against 10%.
        assert!(is_outlier((100, 60), &[(200, 20)], &p));
        assert!(!is_outlier((100, 55), &[(200, 20)], &p));
        // Two failing workers of three: each is judged against the lower
        // median of the other two, the healthy one.
        assert!(is_outlier((50, 50), &[(50, 50), (30, 0)], &p));
        // Most failing: failing is what workers do here.
        assert!(!is_outlier((50, 50), &[(50, 50), (50, 50), (30, 0)], &p));
        let off = EjectionPolicy {
            success_rate_margin_percent: 0,
            ..p
        };
        assert!(!is_outlier((20, 20), &[(40, 0)], &off));
    }

    #[test]
    fn chance_alone_rarely_makes_an_outlier() {
        // Every worker fails 30% of its calls at random (seeded): over
        // 10,000 windows of 20 calls of a worker against two others', the
        // rule singles out a worker in at most one window in a thousand
        // (8 with this seed).
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let p = EjectionPolicy::default();
        let mut failures = |calls: u32| (0..calls).filter(|_| rng.random_bool(0.3)).count() as u32;
        let mut judged = 0;
        for _ in 0..10_000 {
            let own = (20, failures(20));
            let others = [(20, failures(20)), (20, failures(20))];
            judged += usize::from(is_outlier(own, &others, &p));
        }
        assert!(judged <= 10, "{judged} of 10,000");
    }
}
