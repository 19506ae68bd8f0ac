//! Per-worker state shared by every selection of that worker: the calls in
//! flight, counted by RAII guards (after tower's `load::PendingRequests`),
//! so a cancelled, timed-out, failed or panicking call, or a dropped
//! stream, gives its count back when its guard is dropped; the client's
//! passive health record; and the slow start of the worker's life.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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

    pub(crate) fn health(&self) -> MutexGuard<'_, Health> {
        crate::sync::lock(&self.health)
    }
}

/// One call in flight on a worker; dropping it ends the count.
#[derive(Debug)]
pub(crate) struct InFlight {
    cell: Arc<WorkerCell>,
}

impl InFlight {
    pub(crate) fn new(cell: Arc<WorkerCell>) -> Self {
        cell.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { cell }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.cell.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_and_give_back_even_on_panic() {
        let cell = Arc::new(WorkerCell::default());
        let a = InFlight::new(cell.clone());
        let b = InFlight::new(cell.clone());
        assert_eq!(cell.in_flight(), 2);
        drop(a);
        assert_eq!(cell.in_flight(), 1);
        let moved = cell.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = InFlight::new(moved);
            panic!("handler panicked");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(
            cell.in_flight(),
            1,
            "the panicking holder gave its count back"
        );
        drop(b);
        assert_eq!(cell.in_flight(), 0);
    }
}
