//! Keep-alive held by calls in flight, on both ends of a connection.
//!
//! Without `with_keep_alive_interval` a connection sends no PINGs while it
//! is idle, so it closes after the idle timeout; but a call that waits
//! longer than that (a slow handler, a quiet stream) must not lose its
//! connection. So each end switches QUIC keep-alive on while it has calls
//! in flight and off again once it has had none for a while: the client
//! from any task that starts a call, the server from its connection task.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use s2n_quic::connection::Handle;

use crate::sync::lock;

/// Calls in flight on one connection and the keep-alive they hold on.
pub(crate) struct CallKeepAlive {
    in_flight: AtomicUsize,
    /// Whether keep-alive is on; read without the lock on every call start.
    on: AtomicBool,
    /// Serialises keep-alive switches, so the last one taken is the last
    /// one made.
    toggle: Mutex<Handle>,
}

impl CallKeepAlive {
    /// Tracks calls on the connection of `handle`; `on`: whether
    /// keep-alive is already on.
    pub(crate) fn new(handle: Handle, on: bool) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            on: AtomicBool::new(on),
            toggle: Mutex::new(handle),
        }
    }

    /// A call started: keep-alive is on until it ends.
    pub(crate) fn begin(&self) {
        // Count first: a sweep that switches keep-alive off re-checks the
        // count afterwards, so either it sees this call or this call sees
        // keep-alive off and switches it on.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if !self.on.load(Ordering::SeqCst) {
            let mut handle = lock(&self.toggle);
            if !self.on.load(Ordering::SeqCst) {
                let _ = handle.keep_alive(true);
                self.on.store(true, Ordering::SeqCst);
            }
        }
    }

    /// A call ended. Returns whether it was the last one in flight.
    pub(crate) fn end(&self) -> bool {
        self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Switches keep-alive off if nothing is in flight.
    pub(crate) fn sweep(&self) {
        if self.in_flight.load(Ordering::SeqCst) > 0 || !self.on.load(Ordering::SeqCst) {
            return;
        }
        let mut handle = lock(&self.toggle);
        self.on.store(false, Ordering::SeqCst);
        let _ = handle.keep_alive(false);
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            let _ = handle.keep_alive(true);
            self.on.store(true, Ordering::SeqCst);
        }
    }
}
