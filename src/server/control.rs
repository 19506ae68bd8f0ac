//! The connection's control stream: which calls are running, and which the
//! client has cancelled.
//!
//! A unary call's client closes its side of the call stream as soon as the
//! request is out (so request, `END` and FIN share a packet and the server's
//! call task ends with its response), which leaves the call stream no way to
//! say "I gave up". The client says it instead with a `CANCEL(stream id)`
//! frame on its one unidirectional control stream. [`CallBook`] is the
//! sans-IO bookkeeping behind that: the connection task records each call it
//! starts and each that ends, and asks the book what a `CANCEL` refers to.
//!
//! A `CANCEL` can overtake its call: the control stream and the call stream
//! are delivered independently, so the cancel for a stream the server has
//! not accepted yet is remembered (boundedly) and the call is refused when
//! it arrives.

use std::collections::{HashMap, HashSet};

/// Running calls by QUIC stream id, and cancels that arrived before their call.
///
/// Generic over the handle used to stop a call (a task's abort handle in
/// the server), so it can be tested without a runtime.
#[derive(Debug)]
pub(crate) struct CallBook<H> {
    running: HashMap<u64, H>,
    /// Cancels for streams not accepted yet.
    early: HashSet<u64>,
    /// Highest stream id accepted so far.
    highest: Option<u64>,
    /// Bound on `early`: at most the number of calls the client may have open.
    max_early: usize,
}

/// What to do with a `CANCEL` frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancel<H> {
    /// Stop this running call.
    Stop(H),
    /// The call finished already, or its cancel was remembered for later.
    Nothing,
    /// The client cancelled more not-yet-opened calls than it may open:
    /// a protocol violation.
    Overflow,
}

impl<H> CallBook<H> {
    /// A book that remembers at most `max_early` early cancels
    /// (the connection's stream limit).
    pub(crate) fn new(max_early: usize) -> Self {
        Self {
            running: HashMap::new(),
            early: HashSet::new(),
            highest: None,
            max_early,
        }
    }

    /// A call stream was accepted. Returns `false` if it was already
    /// cancelled (it must not be served).
    pub(crate) fn admit(&mut self, stream_id: u64) -> bool {
        self.highest = Some(self.highest.map_or(stream_id, |h| h.max(stream_id)));
        !self.early.remove(&stream_id)
    }

    /// The call on `stream_id` started; `handle` stops it.
    pub(crate) fn started(&mut self, stream_id: u64, handle: H) {
        self.running.insert(stream_id, handle);
    }

    /// The call on `stream_id` ended.
    pub(crate) fn finished(&mut self, stream_id: u64) {
        self.running.remove(&stream_id);
    }

    /// Forgets every call whose handle matches (used when a call's task
    /// ended without reporting its stream id).
    pub(crate) fn forget(&mut self, mut matches: impl FnMut(&H) -> bool) {
        self.running.retain(|_, h| !matches(h));
    }

    /// The client cancelled the call on `stream_id`.
    pub(crate) fn cancel(&mut self, stream_id: u64) -> Cancel<H> {
        if let Some(handle) = self.running.remove(&stream_id) {
            return Cancel::Stop(handle);
        }
        if self.highest.is_some_and(|h| stream_id <= h) {
            // Accepted before: it has finished, or was refused already.
            return Cancel::Nothing;
        }
        if self.early.len() >= self.max_early {
            return Cancel::Overflow;
        }
        self.early.insert(stream_id);
        Cancel::Nothing
    }

    /// Calls running.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_stops_a_running_call_once() {
        let mut book = CallBook::new(4);
        assert!(book.admit(0));
        book.started(0, "task 0");
        assert_eq!(book.cancel(0), Cancel::Stop("task 0"));
        assert_eq!(book.cancel(0), Cancel::Nothing);
        assert_eq!(book.running(), 0);
    }

    #[test]
    fn cancel_after_the_call_finished_does_nothing() {
        let mut book = CallBook::new(4);
        assert!(book.admit(0));
        book.started(0, ());
        book.finished(0);
        assert_eq!(book.cancel(0), Cancel::Nothing);
        // And it is not remembered as an early cancel for a later call.
        assert!(book.admit(4));
    }

    #[test]
    fn a_cancel_that_overtakes_its_call_refuses_the_call() {
        let mut book = CallBook::<()>::new(4);
        assert!(book.admit(0));
        assert_eq!(book.cancel(8), Cancel::Nothing);
        assert!(book.admit(4));
        assert!(!book.admit(8), "stream 8 was cancelled before it arrived");
        assert!(book.admit(12));
    }

    #[test]
    fn early_cancels_are_bounded() {
        let mut book = CallBook::<()>::new(2);
        assert_eq!(book.cancel(4), Cancel::Nothing);
        assert_eq!(book.cancel(8), Cancel::Nothing);
        assert_eq!(book.cancel(12), Cancel::Overflow);
        assert!(!book.admit(4));
        assert_eq!(book.cancel(12), Cancel::Nothing);
    }

    #[test]
    fn forget_drops_matching_calls() {
        let mut book = CallBook::new(4);
        for id in [0, 4, 8] {
            assert!(book.admit(id));
            book.started(id, id * 10);
        }
        book.forget(|h| *h == 40);
        assert_eq!(book.running(), 2);
        assert_eq!(book.cancel(4), Cancel::Nothing);
        assert_eq!(book.cancel(8), Cancel::Stop(80));
    }
}
