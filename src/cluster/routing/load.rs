//! Per-worker state shared by every selection of that worker: the calls in
//! flight (after tower's `load::PendingRequests`; the selected `Worker` is
//! the guard, so a cancelled, timed-out, failed or panicking call, or a
//! dropped stream, gives its count back when it is dropped); the client's
//! passive health record; and the slow start of the worker's life.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;

use super::eject::Health;
use super::memory::Warmup;

/// One worker identity's live state; a restarted worker (new generation)
/// gets a new one.
#[derive(Debug, Default)]
pub(crate) struct WorkerCell {
    in_flight: AtomicUsize,
    health: Mutex<Health>,
    warmup: Option<Warmup>,
}

impl WorkerCell {
    /// A cell for a new life, in slow start if `warmup` is given.
    pub(crate) fn new(warmup: Option<Warmup>) -> Self {
        Self {
            warmup,
            ..Self::default()
        }
    }

    /// Its slow-start weight at `now` (1 outside slow start).
    pub(crate) fn warmup_weight(&self, now: Instant, min: f64) -> f64 {
        self.warmup.map_or(1.0, |w| w.weight(now, min))
    }

    /// Calls in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A call to this worker started; the selected `Worker` ends it when
    /// dropped (tower's `PendingRequests` counts the same way).
    pub(crate) fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A call started by [`call_started`](Self::call_started) ended.
    pub(crate) fn call_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn health(&self) -> MutexGuard<'_, Health> {
        crate::sync::lock(&self.health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_until_they_end() {
        let cell = WorkerCell::default();
        cell.call_started();
        cell.call_started();
        assert_eq!(cell.in_flight(), 2);
        cell.call_ended();
        assert_eq!(cell.in_flight(), 1);
    }
}
