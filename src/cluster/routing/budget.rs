//! How much retrying a client may do: Finagle's `RetryBudget`. Retries may
//! add up to `percent_can_retry` of the calls made in the last `ttl`, plus
//! `min_retries_per_sec` per second of it as a floor for quiet clients.
//! What is safe to retry at all is `failover`'s decision. Sans-IO: the
//! caller passes `now`.

use std::time::Duration;

use tokio::time::Instant;

/// Finagle's retry budget parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// The window over which calls and retries are counted (default 10 s).
    pub ttl: Duration,
    /// Retries allowed per second of the window whatever the traffic (default 10).
    pub min_retries_per_sec: u32,
    /// Retries allowed as a share of calls in the window (default 0.2).
    pub percent_can_retry: f64,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_retries_per_sec: 10,
            percent_can_retry: 0.2,
        }
    }
}

/// Slots the window is divided into.
const SLOTS: usize = 10;

/// Calls and retries per slot of the window, newest last.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    config: RetryBudgetConfig,
    start: Instant,
    /// (slot number since `start`, calls, retries)
    slots: [(u64, u64, u64); SLOTS],
}

impl RetryBudget {
    pub(crate) fn new(config: RetryBudgetConfig, now: Instant) -> Self {
        Self {
            config,
            start: now,
            slots: [(0, 0, 0); SLOTS],
        }
    }

    fn slot(&mut self, now: Instant) -> &mut (u64, u64, u64) {
        let width = (self.config.ttl / SLOTS as u32).max(Duration::from_millis(1));
        let n = (now.saturating_duration_since(self.start).as_nanos() / width.as_nanos()) as u64;
        let slot = &mut self.slots[(n % SLOTS as u64) as usize];
        if slot.0 != n {
            *slot = (n, 0, 0);
        }
        slot
    }

    fn totals(&self, now: Instant) -> (u64, u64) {
        let width = (self.config.ttl / SLOTS as u32).max(Duration::from_millis(1));
        let n = (now.saturating_duration_since(self.start).as_nanos() / width.as_nanos()) as u64;
        self.slots
            .iter()
            .filter(|s| s.0 + (SLOTS as u64) > n)
            .fold((0, 0), |(c, r), s| (c + s.1, r + s.2))
    }

    /// Counts a call (its first attempt).
    pub(crate) fn deposit(&mut self, now: Instant) {
        self.slot(now).1 += 1;
    }

    /// Takes one retry from the budget if there is one left.
    pub(crate) fn try_withdraw(&mut self, now: Instant) -> bool {
        let (calls, retries) = self.totals(now);
        let floor = f64::from(self.config.min_retries_per_sec) * self.config.ttl.as_secs_f64();
        let allowed = floor + self.config.percent_can_retry * calls as f64;
        if (retries + 1) as f64 > allowed {
            return false;
        }
        self.slot(now).2 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_allows_min_per_sec_times_ttl_without_traffic() {
        let t = Instant::now();
        let mut b = RetryBudget::new(RetryBudgetConfig::default(), t);
        let granted = (0..1000).filter(|_| b.try_withdraw(t)).count();
        assert_eq!(granted, 100, "10 per second over 10 s");
    }

    #[test]
    fn traffic_adds_a_fifth_of_its_calls() {
        let t = Instant::now();
        let config = RetryBudgetConfig {
            min_retries_per_sec: 0,
            ..RetryBudgetConfig::default()
        };
        let mut b = RetryBudget::new(config, t);
        for _ in 0..500 {
            b.deposit(t);
        }
        let granted = (0..1000).filter(|_| b.try_withdraw(t)).count();
        assert_eq!(granted, 100, "20% of 500");
    }

    #[test]
    fn the_window_forgets_old_retries() {
        let t = Instant::now();
        let config = RetryBudgetConfig {
            min_retries_per_sec: 1,
            ..RetryBudgetConfig::default()
        };
        let mut b = RetryBudget::new(config, t);
        assert_eq!((0..50).filter(|_| b.try_withdraw(t)).count(), 10);
        assert!(!b.try_withdraw(t + Duration::from_secs(5)));
        assert!(
            b.try_withdraw(t + Duration::from_secs(11)),
            "the spent retries aged out"
        );
    }
}
