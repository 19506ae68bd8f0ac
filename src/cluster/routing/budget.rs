//! How much retrying a client may do: Finagle's `RetryBudget`. Retries may
//! add up to `percent_can_retry` of the calls made in the last `ttl`, plus
//! `min_retries_per_sec` per second of it as a floor for quiet clients.
//! What is safe to retry at all is `failover`'s decision. Sans-IO: the
//! caller passes `now`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Bits of a slot's packed word that hold its count; the rest hold the
/// slot's number since the budget's start (2^40 slots of at least 1 ms:
/// decades).
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

/// Copies of the slots, each thread counting in one: every routed call
/// deposits, and one word written by the calls of every thread would move
/// its cache line between the cores on each call. Reading sums them
/// (only a retry reads).
const STRIPES: usize = 4;

/// One copy of the slots, on cache lines of its own.
#[derive(Debug)]
#[repr(align(128))]
struct Stripe([AtomicU64; SLOTS]);

/// The stripe this thread counts in: threads take the stripes in turn.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

/// A count per slot of the window, each slot one atomic word holding the
/// slot's number and its count, so counting takes no lock.
#[derive(Debug)]
struct Counter([Stripe; STRIPES]);

impl Counter {
    fn new() -> Self {
        Self(std::array::from_fn(|_| {
            Stripe(std::array::from_fn(|_| AtomicU64::new(0)))
        }))
    }

    /// Adds one to slot `n` (a slot last used for an older number starts
    /// again from zero); a full slot stays full.
    fn add(&self, n: u64) {
        let slot = &self.0[stripe()].0[(n % SLOTS as u64) as usize];
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let count = if word >> COUNT_BITS == n {
                (word & COUNT_MAX) + 1
            } else {
                1
            };
            Some((n << COUNT_BITS) | count.min(COUNT_MAX))
        });
    }

    /// The counts of the slots within the window ending at slot `n`.
    fn total(&self, n: u64) -> u64 {
        self.0
            .iter()
            .flat_map(|stripe| &stripe.0)
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|word| (word >> COUNT_BITS) + (SLOTS as u64) > n)
            .map(|word| word & COUNT_MAX)
            .sum()
    }
}

/// Calls and retries per slot of the window, shared by every call of a
/// client without a lock: a call's deposit is one atomic update. Two
/// retries withdrawn at the same instant may both pass the check, so the
/// budget may be overdrawn by as many retries as threads withdraw at once.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    config: RetryBudgetConfig,
    start: Instant,
    /// A slot's width in nanoseconds (at least 1 ms).
    width: u64,
    calls: Counter,
    retries: Counter,
}

impl RetryBudget {
    pub(crate) fn new(config: RetryBudgetConfig, now: Instant) -> Self {
        let width = (config.ttl / SLOTS as u32).max(Duration::from_millis(1));
        Self {
            config,
            start: now,
            width: u64::try_from(width.as_nanos()).unwrap_or(u64::MAX),
            calls: Counter::new(),
            retries: Counter::new(),
        }
    }

    /// The number of the slot `now` falls in.
    fn slot(&self, now: Instant) -> u64 {
        let since = u64::try_from(now.saturating_duration_since(self.start).as_nanos());
        since.unwrap_or(u64::MAX) / self.width
    }

    /// Counts a call (its first attempt).
    pub(crate) fn deposit(&self, now: Instant) {
        self.calls.add(self.slot(now));
    }

    /// Takes one retry from the budget if there is one left.
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let n = self.slot(now);
        let (calls, retries) = (self.calls.total(n), self.retries.total(n));
        let floor = f64::from(self.config.min_retries_per_sec) * self.config.ttl.as_secs_f64();
        let allowed = floor + self.config.percent_can_retry * calls as f64;
        if (retries + 1) as f64 > allowed {
            return false;
        }
        self.retries.add(n);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_allows_min_per_sec_times_ttl_without_traffic() {
        let t = Instant::now();
        let b = RetryBudget::new(RetryBudgetConfig::default(), t);
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
        let b = RetryBudget::new(config, t);
        for _ in 0..500 {
            b.deposit(t);
        }
        let granted = (0..1000).filter(|_| b.try_withdraw(t)).count();
        assert_eq!(granted, 100, "20% of 500");
    }

    #[test]
    fn calls_counted_from_many_threads_at_once_are_all_counted() {
        let t = Instant::now();
        let config = RetryBudgetConfig {
            min_retries_per_sec: 0,
            ..RetryBudgetConfig::default()
        };
        let b = RetryBudget::new(config, t);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..25_000 {
                        b.deposit(t);
                    }
                });
            }
        });
        let granted = (0..30_000).filter(|_| b.try_withdraw(t)).count();
        assert_eq!(granted, 20_000, "20% of the 100,000 calls");
    }

    #[test]
    fn the_window_forgets_old_retries() {
        let t = Instant::now();
        let config = RetryBudgetConfig {
            min_retries_per_sec: 1,
            ..RetryBudgetConfig::default()
        };
        let b = RetryBudget::new(config, t);
        assert_eq!((0..50).filter(|_| b.try_withdraw(t)).count(), 10);
        assert!(!b.try_withdraw(t + Duration::from_secs(5)));
        assert!(
            b.try_withdraw(t + Duration::from_secs(11)),
            "the spent retries aged out"
        );
    }
}
