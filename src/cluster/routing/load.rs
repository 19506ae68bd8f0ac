//! Per-worker state shared by every selection of that worker: the calls in
//! flight (after tower's `load::PendingRequests`; the selected `Worker` is
//! the guard, so a cancelled, timed-out, failed or panicking call, or a
//! dropped stream, gives its count back when it is dropped); the client's
//! passive health record; and the slow start of the worker's life.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// What selection needs of `health` when it is plain: its epoch, or
    /// `NOT_PLAIN` ([`Health::plain_epoch`]). Kept by [`HealthGuard`] as
    /// the record changes, so the call path reads the record of a worker
    /// in plain health without taking its lock (0 is the epoch of a new
    /// record, which is plain).
    plain: AtomicU64,
    warmup: Option<Warmup>,
}

/// `WorkerCell::plain` of a record that is not plain.
const NOT_PLAIN: u64 = u64::MAX;

/// The record of a worker, locked; on release it publishes whether the
/// record is plain (see `WorkerCell::plain`).
pub(crate) struct HealthGuard<'a> {
    health: MutexGuard<'a, Health>,
    plain: &'a AtomicU64,
}

impl Deref for HealthGuard<'_> {
    type Target = Health;

    fn deref(&self) -> &Health {
        &self.health
    }
}

impl DerefMut for HealthGuard<'_> {
    fn deref_mut(&mut self) -> &mut Health {
        &mut self.health
    }
}

impl Drop for HealthGuard<'_> {
    fn drop(&mut self) {
        let plain = self.health.plain_epoch().map_or(NOT_PLAIN, u64::from);
        // Written only when it changes: recording an answer of a healthy
        // worker leaves the line alone.
        if self.plain.load(Ordering::Relaxed) != plain {
            self.plain.store(plain, Ordering::Relaxed);
        }
    }
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

    /// Its record, locked.
    pub(crate) fn health(&self) -> HealthGuard<'_> {
        HealthGuard {
            health: crate::sync::lock(&self.health),
            plain: &self.plain,
        }
    }

    /// The epoch of its record when the record is plain
    /// ([`Health::plain_epoch`]), read without the lock; `None` when
    /// selection must read the record itself. A change made under the
    /// lock is seen here once the lock is released.
    pub(crate) fn plain(&self) -> Option<u32> {
        u32::try_from(self.plain.load(Ordering::Relaxed)).ok()
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

    /// Selection reads a plain record without its lock: the mark must
    /// follow every change made under the lock, or an ejected or failing
    /// worker would be selected as a healthy one.
    #[test]
    fn the_plain_mark_follows_the_record() {
        use crate::cluster::routing::eject::{EjectionPolicy, Outcome, Reason, Ticket};
        use std::time::Duration;

        let cell = WorkerCell::default();
        let policy = EjectionPolicy::default();
        let now = Instant::now();
        assert_eq!(cell.plain(), Some(0), "a new record is plain");

        cell.health()
            .record(Ticket::normal(0), Outcome::Failed, now, &policy);
        assert_eq!(cell.plain(), None, "a failure in a row");
        cell.health()
            .record(Ticket::normal(0), Outcome::Answered, now, &policy);
        assert_eq!(cell.plain(), Some(0), "answered again");

        cell.health().hold(now, Duration::from_secs(5));
        assert_eq!(cell.plain(), None, "held back");
        // The first outcome after the hold ended drops it.
        let after_hold = now + Duration::from_secs(5);
        cell.health()
            .record(Ticket::normal(0), Outcome::Answered, after_hold, &policy);
        assert_eq!(cell.plain(), Some(0), "the hold ended");

        cell.health().hold(now, Duration::from_secs(5));

        cell.health()
            .eject(now, Duration::from_secs(5), Reason::Fault);
        assert_eq!(cell.plain(), None, "ejected");
        // The probe after the ejection ended puts it back, in a new epoch.
        let later = now + Duration::from_secs(6);
        let probe = cell.health().on_selected(later, &policy);
        assert_eq!(cell.plain(), None, "probing");
        cell.health()
            .record(probe, Outcome::Answered, later, &policy);
        assert_eq!(cell.health().plain_epoch(), Some(1));
        assert_eq!(cell.plain(), Some(1), "restored");
    }
}
