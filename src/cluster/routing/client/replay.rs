//! The request stream of a routed client- or bidirectional-streaming call,
//! kept while the call may still have to be sent to another worker: gRFC
//! A6's retry buffer. Every attempt reads the requests kept so far, then
//! the rest of the caller's stream, keeping what it takes; the call is
//! *committed* (nothing kept any more, no other worker tried) once the
//! requests taken exceed the limit or the worker's first response arrives.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;

use crate::sync::lock;

type Source = Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>;

/// A call's request stream, shared by its attempts.
#[derive(Clone)]
pub(super) struct Requests {
    shared: Arc<Mutex<Kept>>,
}

struct Kept {
    source: Source,
    source_done: bool,
    kept: Vec<Vec<u8>>,
    bytes: usize,
    limit: usize,
    committed: bool,
    /// The attempt whose stream reads now; earlier ones stop.
    attempt: u64,
}

impl Requests {
    /// `source`, keeping up to `limit` bytes of it for another attempt.
    pub(super) fn new(source: impl Stream<Item = Vec<u8>> + Send + 'static, limit: usize) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Kept {
                source: Box::pin(source),
                source_done: false,
                kept: Vec::new(),
                bytes: 0,
                limit,
                committed: false,
                attempt: 0,
            })),
        }
    }

    /// The requests for a new attempt: those kept so far, then the rest of
    /// the caller's stream. The streams of earlier attempts stop yielding
    /// (without ending: an end would tell their worker the requests are
    /// complete).
    pub(super) fn attempt(&self) -> AttemptRequests {
        let mut kept = lock(&self.shared);
        kept.attempt += 1;
        AttemptRequests {
            shared: self.shared.clone(),
            attempt: kept.attempt,
            next: 0,
        }
    }

    /// Whether every request taken so far is kept: the call can be sent
    /// again.
    pub(super) fn replayable(&self) -> bool {
        !lock(&self.shared).committed
    }

    /// Stops keeping requests: the call stays with its worker.
    pub(super) fn commit(&self) {
        let mut kept = lock(&self.shared);
        kept.committed = true;
        kept.kept = Vec::new();
    }
}

/// One attempt's view of the requests.
pub(super) struct AttemptRequests {
    shared: Arc<Mutex<Kept>>,
    attempt: u64,
    /// The next kept request to send.
    next: usize,
}

impl Stream for AttemptRequests {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let this = &mut *self;
        let mut kept = lock(&this.shared);
        if kept.attempt != this.attempt {
            return Poll::Pending;
        }
        if let Some(request) = kept.kept.get(this.next) {
            this.next += 1;
            return Poll::Ready(Some(request.clone()));
        }
        if kept.source_done {
            return Poll::Ready(None);
        }
        match kept.source.as_mut().poll_next(cx) {
            Poll::Ready(Some(request)) => {
                if !kept.committed {
                    if kept.bytes + request.len() <= kept.limit {
                        kept.bytes += request.len();
                        kept.kept.push(request.clone());
                        this.next += 1;
                    } else {
                        kept.committed = true;
                        kept.kept = Vec::new();
                    }
                }
                Poll::Ready(Some(request))
            }
            Poll::Ready(None) => {
                kept.source_done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn items(n: u8) -> impl Stream<Item = Vec<u8>> + Send + 'static {
        futures::stream::iter((0..n).map(|i| vec![i; 10]))
    }

    #[tokio::test]
    async fn a_second_attempt_replays_what_the_first_took_then_the_rest() {
        let requests = Requests::new(items(5), 1024);
        let mut first = requests.attempt();
        assert_eq!(first.next().await, Some(vec![0; 10]));
        assert_eq!(first.next().await, Some(vec![1; 10]));
        assert!(requests.replayable());
        let second: Vec<_> = requests.attempt().collect().await;
        assert_eq!(second, (0..5).map(|i| vec![i; 10]).collect::<Vec<_>>());
        // The first attempt's stream neither yields nor ends any more.
        assert!(futures::poll!(first.next()).is_pending());
    }

    #[tokio::test]
    async fn past_the_limit_or_after_a_commit_nothing_is_kept() {
        let requests = Requests::new(items(5), 25);
        let mut first = requests.attempt();
        first.next().await;
        first.next().await;
        assert!(requests.replayable(), "20 bytes kept");
        first.next().await;
        assert!(!requests.replayable(), "30 bytes taken, over 25");
        let rest: Vec<_> = first.collect().await;
        assert_eq!(rest.len(), 2, "the attempt still gets every request");

        let requests = Requests::new(items(2), 1024);
        requests.attempt().next().await;
        requests.commit();
        assert!(!requests.replayable());
    }
}
