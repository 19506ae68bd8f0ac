//! How long one attempt of a routed call may take before the call moves to
//! another worker (Envoy's `per_try_timeout`), and the record of answer
//! times the adaptive default reads. Sans-IO: durations in, limits out.
//!
//! A worker whose QUIC stack answers PINGs while its handlers never
//! answer keeps its connection alive, so only a limit per attempt gets an
//! idempotent call away from it before the call's own timeout. Which calls
//! get one, and how long, is decided here ([`AttemptTimeout::limit`]);
//! `ClusterClient::route` applies it to idempotent unary calls that have
//! an attempt left after this one.
//!
//! Sources: Envoy's route `retry_policy.per_try_timeout` (a fixed limit
//! per try, the whole route timeout bounding all tries); the adaptive
//! default follows "The Tail at Scale" (Dean and Barroso, 2013), which
//! sends a second request once the first has waited past a high
//! percentile of the expected latency, as gRPC's hedging policy (gRFC A6,
//! `hedgingDelay`) does with a fixed delay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sync::Snapshot;

/// The per-attempt timeout of idempotent unary calls a
/// [`ClusterClient`](super::ClusterClient) routes (set with
/// [`ClusterClientConfig::with_attempt_timeout`](super::ClusterClientConfig::with_attempt_timeout);
/// a call's own [`CallOptions::with_attempt_timeout`](crate::CallOptions::with_attempt_timeout)
/// wins over it). An attempt that reaches it is abandoned (the worker is
/// told to cancel the call, and its handler sees the shorter deadline),
/// counts as a timeout for the worker's ejection, and the call moves to
/// another worker, within its own timeout and retry budget.
///
/// Calls that are not idempotent never get one: a call that may have run
/// is not sent again, so cutting its one attempt short would only turn a
/// late answer into a failure. Neither does a streaming call, nor the last
/// attempt a call is allowed (`with_max_attempts`), which has what is left
/// of the call's timeout.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum AttemptTimeout {
    /// No limit per attempt: an attempt may use what is left of the call's
    /// timeout (Envoy's behaviour without `per_try_timeout`).
    Off,
    /// Each attempt at most this long (Envoy's `per_try_timeout`).
    Fixed(Duration),
    /// Derived per call from its timeout and the method's recent answer
    /// times (the default); see [`AdaptiveTimeout`].
    Adaptive(AdaptiveTimeout),
}

impl Default for AttemptTimeout {
    fn default() -> Self {
        Self::Adaptive(AdaptiveTimeout::default())
    }
}

/// The adaptive per-attempt timeout: the call's timeout divided by the
/// attempts it is allowed (`with_max_attempts`, default 3: each attempt an
/// equal share), shortened to `latency_multiple` × the p99 of the
/// method's recent answer times (idempotent calls) once 20 answers of that
/// method have been seen, but never below `floor`.
///
/// With the defaults, a call with a 2 s timeout whose method usually
/// answers within 5 ms gives up on an attempt after 100 ms (the floor);
/// before 20 answers of the method were seen, after 667 ms (a third).
/// A method whose answers take longer than the limit now and then (a
/// cache miss) should set [`AttemptTimeout::Fixed`] or a per-call
/// [`CallOptions::with_attempt_timeout`](crate::CallOptions::with_attempt_timeout)
/// above its slowest legitimate answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveTimeout {
    /// Multiple of the method's p99 answer time an attempt may take
    /// (default 4).
    pub latency_multiple: f64,
    /// The shortest limit the latency estimate may give (default 100 ms),
    /// so scheduling hiccups of a fast method do not move its calls.
    pub floor: Duration,
}

impl Default for AdaptiveTimeout {
    fn default() -> Self {
        Self {
            latency_multiple: 4.0,
            floor: Duration::from_millis(100),
        }
    }
}

/// Answers of a method needed before its p99 is used (fewer say too
/// little about its tail).
pub(crate) const MIN_SAMPLES: usize = 20;
/// Answer times kept per method (the most recent).
const WINDOW: usize = 128;
/// Methods whose answer times are kept; calls of further methods use the
/// share of the call's timeout only.
const MAX_METHODS: usize = 256;
/// Answers recorded between two computations of a method's p99.
const REFRESH: u32 = 16;

impl AttemptTimeout {
    /// The limit for one attempt of a call whose whole timeout is
    /// `call_timeout`, allowed `max_attempts` attempts, of a method whose
    /// recent p99 answer time is `p99` (`None`: not enough answers seen).
    /// `None`: no limit beyond the call's timeout.
    pub(crate) fn limit(
        &self,
        call_timeout: Duration,
        max_attempts: usize,
        p99: Option<Duration>,
    ) -> Option<Duration> {
        match self {
            Self::Off => None,
            Self::Fixed(limit) => Some(*limit),
            Self::Adaptive(adaptive) => {
                let share = call_timeout / u32::try_from(max_attempts.max(1)).unwrap_or(u32::MAX);
                let estimate = p99.map(|p| p.mul_f64(adaptive.latency_multiple.max(1.0)));
                Some(estimate.map_or(share, |e| e.max(adaptive.floor).min(share)))
            }
        }
    }
}

/// Recent answer times per method, for [`AttemptTimeout::Adaptive`],
/// shared by a client's calls: the methods are found without a lock,
/// reading a method's p99 is an atomic load, and recording an answer
/// takes the method's own window only if no other call holds it (a sample
/// skipped under contention changes a p99 over 128 samples by nothing a
/// limit of 4 × p99 notices), so no call waits on another's record.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    /// Replaced when a method is first seen.
    methods: Snapshot<HashMap<String, Arc<Method>>>,
}

/// One method's record: its window, and its p99 as last computed (µs,
/// `u64::MAX` until `MIN_SAMPLES` answers were seen).
#[derive(Debug)]
struct Method {
    window: Mutex<Window>,
    p99_micros: AtomicU64,
}

impl Method {
    fn new() -> Self {
        Self {
            window: Mutex::new(Window::default()),
            p99_micros: AtomicU64::new(u64::MAX),
        }
    }

    fn record(&self, micros: u32) {
        let Ok(mut window) = self.window.try_lock() else {
            return;
        };
        window.record(micros);
        if let Some(p99) = window.p99 {
            self.p99_micros
                .store(p99.as_micros() as u64, Ordering::Relaxed);
        }
    }
}

/// One method's most recent answer times (µs), in a ring.
#[derive(Debug, Default)]
struct Window {
    micros: Vec<u32>,
    next: usize,
    p99: Option<Duration>,
    since: u32,
}

impl Window {
    fn record(&mut self, micros: u32) {
        if self.micros.len() < WINDOW {
            self.micros.push(micros);
        } else {
            self.micros[self.next] = micros;
        }
        self.next = (self.next + 1) % WINDOW;
        self.since += 1;
        let due = self.since >= REFRESH || (self.p99.is_none() && self.micros.len() >= MIN_SAMPLES);
        if due && self.micros.len() >= MIN_SAMPLES {
            self.since = 0;
            let mut sorted = self.micros.clone();
            // The smallest sample at or above 99% of them (nearest rank).
            let rank = (sorted.len() * 99).div_ceil(100) - 1;
            let (_, p99, _) = sorted.select_nth_unstable(rank);
            self.p99 = Some(Duration::from_micros(u64::from(*p99)));
        }
    }
}

impl Latencies {
    /// Records that a call of `method` was answered after `latency`.
    pub(crate) fn record(&self, method: &str, latency: Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        if let Some(known) = self.methods.load().get(method) {
            known.record(micros);
            return;
        }
        let adding = self.methods.write();
        let methods = adding.current();
        if let Some(known) = methods.get(method) {
            known.record(micros);
        } else if methods.len() < MAX_METHODS {
            let new = Arc::new(Method::new());
            new.record(micros);
            let mut more = HashMap::clone(&methods);
            more.insert(method.to_owned(), new);
            adding.store(more);
        }
    }

    /// The p99 of `method`'s recent answer times, once
    /// `MIN_SAMPLES` were recorded (refreshed every few answers).
    pub(crate) fn p99(&self, method: &str) -> Option<Duration> {
        let micros = self
            .methods
            .load()
            .get(method)?
            .p99_micros
            .load(Ordering::Relaxed);
        (micros != u64::MAX).then(|| Duration::from_micros(micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn off_has_no_limit_and_fixed_is_fixed() {
        assert_eq!(AttemptTimeout::Off.limit(2000 * MS, 3, Some(MS)), None);
        let fixed = AttemptTimeout::Fixed(250 * MS);
        assert_eq!(fixed.limit(2000 * MS, 3, Some(MS)), Some(250 * MS));
        assert_eq!(fixed.limit(2000 * MS, 3, None), Some(250 * MS));
    }

    #[test]
    fn adaptive_is_a_share_of_the_timeout_until_the_method_is_known() {
        let adaptive = AttemptTimeout::default();
        let third = Duration::from_nanos(666_666_666);
        assert_eq!(adaptive.limit(2000 * MS, 3, None), Some(third));
        assert_eq!(adaptive.limit(2000 * MS, 1, None), Some(2000 * MS));
        // Known: 4 × p99, at least the floor, at most the share.
        assert_eq!(adaptive.limit(2000 * MS, 3, Some(5 * MS)), Some(100 * MS));
        assert_eq!(adaptive.limit(2000 * MS, 3, Some(50 * MS)), Some(200 * MS));
        assert_eq!(adaptive.limit(2000 * MS, 3, Some(400 * MS)), Some(third));
        // A floor above the share: the share (the call's timeout rules).
        assert_eq!(adaptive.limit(150 * MS, 3, Some(MS)), Some(50 * MS));
    }

    #[test]
    fn the_p99_needs_min_samples_and_follows_the_recent_window() {
        let l = Latencies::default();
        for _ in 0..MIN_SAMPLES - 1 {
            l.record("m", 2 * MS);
        }
        assert_eq!(l.p99("m"), None, "too few answers");
        l.record("m", 2 * MS);
        assert_eq!(l.p99("m"), Some(2 * MS));
        assert_eq!(l.p99("other"), None, "per method");
        // One slow answer in a hundred is the p99 of 100 samples...
        let l = Latencies::default();
        for i in 0..100 {
            l.record("m", if i == 50 { 900 * MS } else { 2 * MS });
        }
        assert_eq!(l.p99("m"), Some(2 * MS), "the 99th of 100 is a fast one");
        for _ in 0..2 {
            l.record("m", 900 * MS);
        }
        for _ in 0..REFRESH {
            l.record("m", 2 * MS);
        }
        assert_eq!(l.p99("m"), Some(900 * MS), "3 slow in the window");
        // ... and it ages out of the window.
        for _ in 0..WINDOW {
            l.record("m", 3 * MS);
        }
        assert_eq!(l.p99("m"), Some(3 * MS));
    }

    #[test]
    fn methods_beyond_the_cap_are_not_tracked() {
        let l = Latencies::default();
        for m in 0..MAX_METHODS + 5 {
            for _ in 0..MIN_SAMPLES {
                l.record(&format!("m{m}"), MS);
            }
        }
        assert_eq!(l.p99("m0"), Some(MS));
        assert_eq!(l.p99(&format!("m{}", MAX_METHODS + 1)), None);
    }
}
