//! Shared state. Poison-tolerant locking: a panic while a lock is held (a
//! handler that panicked, say) poisons a `std::sync` lock; every lock in
//! rpcnet guards state that stays consistent between statements, so the
//! guard is taken whatever a panicking holder left behind, rather than
//! spreading the panic to every later caller. And [`Snapshot`], for
//! state read on every call without a lock.

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, ignoring poisoning.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read-locks `rwlock`, ignoring poisoning.
pub(crate) fn read<T>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rwlock
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Write-locks `rwlock`, ignoring poisoning.
pub(crate) fn write<T>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rwlock
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A value read without a lock and replaced whole, one writer at a time:
/// `arc-swap`'s snapshot with the writers' mutex beside it. For state read
/// on every call and changed rarely (a process-wide lock, even taken for
/// reading, moves its cache line between the threads making calls twice
/// per call). A reader keeps the snapshot it loaded; a writer builds the
/// next value from the current one and stores it.
#[derive(Debug, Default)]
pub(crate) struct Snapshot<T> {
    current: arc_swap::ArcSwap<T>,
    writing: Mutex<()>,
}

/// The one writer of a [`Snapshot`], until dropped.
pub(crate) struct SnapshotWriter<'a, T> {
    snapshot: &'a Snapshot<T>,
    _writing: MutexGuard<'a, ()>,
}

impl<T> Snapshot<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            current: arc_swap::ArcSwap::from_pointee(value),
            writing: Mutex::new(()),
        }
    }

    /// The current value, without a lock (the call path).
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<T>> {
        self.current.load()
    }

    /// The current value, to keep.
    pub(crate) fn load_full(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Becomes the one writer (other writers wait; readers do not).
    pub(crate) fn write(&self) -> SnapshotWriter<'_, T> {
        SnapshotWriter {
            snapshot: self,
            _writing: lock(&self.writing),
        }
    }

    /// Changes a copy of the current value with `change` and stores it.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&mut T) -> R) -> R
    where
        T: Clone,
    {
        let writer = self.write();
        let mut next = T::clone(&writer.current());
        let result = change(&mut next);
        writer.store(next);
        result
    }
}

impl<T> SnapshotWriter<'_, T> {
    /// The current value (no other writer can change it meanwhile).
    pub(crate) fn current(&self) -> Arc<T> {
        self.snapshot.current.load_full()
    }

    /// Replaces the value readers see.
    pub(crate) fn store(&self, value: T) {
        self.snapshot.current.store(Arc::new(value));
    }
}
