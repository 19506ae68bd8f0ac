//! [`WorkerStream`]: the responses of a routed streaming call, which go on
//! routing the call after it opened.
//!
//! A worker can refuse a stream only in its first response (a draining or
//! shutting-down server answers a new call with `Unavailable` before
//! running anything), and a connection that died unnoticed fails a stream
//! only when it is read. So until the first response, a failure is fed to
//! the call's failover decision like any attempt's (`Shared::failed`): a
//! stream that never ran, or an idempotent one, is opened again on another
//! worker through the call's route, its request sent again (a request
//! stream replayed from the kept requests). The first response commits the
//! stream to its worker: later failures reach the caller, counted for the
//! worker's ejection.
//!
//! A resumable stream ([`ClusterClient::call_worker_resumable`](super::ClusterClient::call_worker_resumable))
//! is not committed: when its worker fails (refuses, loses the connection,
//! resets the stream), a new round of attempts opens it on another worker
//! with the request its resume function makes from the last item the
//! caller received, so nothing is lost or repeated. A handler's own error
//! is delivered as it is; [`WorkerStream::resume_on`] moves the stream on
//! the caller's say.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::time::Instant;

use super::pool::Connection;
use super::replay::Requests;
use super::{Attempted, Route, Shared};
use crate::call::RequestBody;
use crate::cluster::routing::discover::Worker;
use crate::cluster::routing::eject::Outcome;
use crate::cluster::routing::failover::{classify, Verdict};
use crate::{ResponseStream, RpcError};

/// Makes the request that resumes a stream right after the item given.
pub(crate) type ResumeFn = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, RpcError> + Send>;

/// The request a stream is opened with.
pub(super) enum Request {
    /// One message (server streaming), shared by the stream's attempts.
    Message(Bytes),
    /// A request stream, replayed from what is kept.
    Stream(Requests),
}

impl Request {
    fn body(&self) -> RequestBody {
        match self {
            Self::Message(message) => RequestBody::Shared(message.clone()),
            Self::Stream(requests) => RequestBody::Stream(Box::pin(requests.attempt())),
        }
    }
}

/// A resumable stream's position: how to make its next request.
pub(super) struct Resume {
    pub(super) next: ResumeFn,
    /// Which items are positions (every item of
    /// [`call_worker_resumable`](super::ClusterClient::call_worker_resumable);
    /// a typed stream's values, not its service errors).
    pub(super) is_position: fn(&[u8]) -> bool,
    /// The last position delivered to the caller.
    pub(super) last: Option<Vec<u8>>,
}

/// What a stream needs to be opened again on another worker.
pub(super) struct Reopen {
    pub(super) route: Route<'static>,
    pub(super) request: Request,
    pub(super) resume: Option<Resume>,
}

impl Reopen {
    /// For a resumable stream that delivered a position: the request
    /// resuming after the last one.
    fn resume_request(&mut self) -> Result<(), RpcError> {
        if let Some(Resume {
            next,
            last: Some(last),
            ..
        }) = &mut self.resume
        {
            self.request = Request::Message(next(last)?.into());
        }
        Ok(())
    }

    /// It will not move again: stop keeping its request stream.
    fn commit(&self) {
        if let Some(requests) = &self.route.requests {
            requests.commit();
        }
    }
}

type Opened = Attempted<ResponseStream>;
type Moving = Pin<Box<dyn Future<Output = (Box<Reopen>, Result<Opened, RpcError>)> + Send>>;

/// Opens the stream `reopen` describes on a worker its route selects.
pub(super) async fn open(shared: &Shared, reopen: &mut Reopen) -> Result<Opened, RpcError> {
    let Reopen { route, request, .. } = reopen;
    let method = route.method.clone();
    shared
        .route(route, |client, options| {
            client.invoke_body(&method, options, request.body())
        })
        .await
}

/// The responses of a streaming call to a worker; the worker counts the
/// call as in flight until this is dropped. Dropping it before the end
/// cancels the call.
///
/// Until its first response the stream may move to another worker (see
/// [`ClusterClient`](super::ClusterClient)): a refusal or a dead
/// connection is not the caller's to see. A resumable stream moves
/// whenever its worker fails.
pub struct WorkerStream {
    shared: Arc<Shared>,
    /// The current worker's responses (`None` once they ended or broke).
    inner: Option<ResponseStream>,
    worker: Worker,
    cell: Option<Connection>,
    /// Whether the current worker delivered a response.
    delivered: bool,
    /// How to open the stream elsewhere; `None` once it cannot move.
    reopen: Option<Box<Reopen>>,
    moving: Option<Moving>,
}

impl std::fmt::Debug for WorkerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerStream")
            .field("worker", &self.worker)
            .field("moving", &self.moving.is_some())
            .finish_non_exhaustive()
    }
}

impl WorkerStream {
    pub(super) fn new(shared: Arc<Shared>, opened: Opened, reopen: Reopen) -> Self {
        Self {
            shared,
            inner: Some(opened.value),
            worker: opened.worker,
            cell: opened.cell,
            delivered: false,
            reopen: Some(Box::new(reopen)),
            moving: None,
        }
    }

    /// The worker serving the call (while the stream moves, the one that
    /// served it last).
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Moves a resumable stream to a worker matching `filter` now: the
    /// current worker's part is cancelled, and the stream resumes after
    /// the last item received. For a caller that picks workers itself
    /// (the guide's example asks its director), or that gives up on a
    /// worker whose error item the stream delivered. Dropping the future
    /// before it completes ends the stream.
    ///
    /// # Errors
    /// [`RpcError::ConfigError`] for a stream not opened by
    /// [`call_worker_resumable`](super::ClusterClient::call_worker_resumable);
    /// the resume function's error; the routing's errors, as for the call
    /// (the stream then has no worker, and ends unless resumed again).
    pub async fn resume_on(&mut self, filter: Option<&str>) -> Result<(), RpcError> {
        if let Some(moving) = self.moving.take() {
            let (reopen, _discarded) = moving.await;
            self.reopen = Some(reopen);
        }
        let Some(mut reopen) = self.reopen.take_if(|r| r.resume.is_some()) else {
            return Err(RpcError::ConfigError(
                "only a stream opened by call_worker_resumable can be resumed".into(),
            ));
        };
        self.inner = None;
        reopen.route.filter = filter.map(|f| Cow::Owned(f.to_owned()));
        reopen.route.restart(self.shared.default_timeout());
        let opened = match reopen.resume_request() {
            Ok(()) => open(&self.shared, &mut reopen).await,
            Err(e) => Err(e),
        };
        self.reopen = Some(reopen);
        self.install(opened?);
        Ok(())
    }

    fn install(&mut self, opened: Opened) {
        self.inner = Some(opened.value);
        self.worker = opened.worker;
        self.cell = opened.cell;
        self.delivered = false;
    }

    fn on_item(&mut self, item: &[u8]) {
        if !self.delivered {
            self.delivered = true;
            let now = Instant::now();
            self.shared
                .record(&self.worker, None, Outcome::Answered, now);
            match self.reopen.take() {
                Some(mut reopen) if reopen.resume.is_some() => {
                    reopen.route.succeeded();
                    self.reopen = Some(reopen);
                }
                Some(reopen) => reopen.commit(),
                None => {}
            }
        }
        if let Some(resume) = self.reopen.as_mut().and_then(|r| r.resume.as_mut()) {
            if (resume.is_position)(item) {
                resume.last = Some(item.to_vec());
            }
        }
    }

    /// What an error read from the current worker means: `Some` to deliver
    /// it, `None` when the stream is moving to another worker.
    fn on_error(&mut self, error: RpcError) -> Option<RpcError> {
        let now = Instant::now();
        let resumable = self.reopen.as_ref().is_some_and(|r| r.resume.is_some());
        let mut reopen = match self.reopen.take() {
            Some(reopen) if !self.delivered || resumable => reopen,
            other => {
                self.reopen = other;
                let (_, outcome) = classify(&error, true);
                self.shared.record(&self.worker, self.cell, outcome, now);
                return Some(error);
            }
        };
        if self.delivered {
            if classify(&error, true).0 == Verdict::Final {
                // The handler's own error: the caller's to see.
                self.reopen = Some(reopen);
                return Some(error);
            }
            reopen.route.restart(self.shared.default_timeout());
        } else {
            reopen.route.rebound(self.shared.default_timeout());
        }
        let decided = self
            .shared
            .failed(&mut reopen.route, &self.worker, self.cell, error, true);
        let prepared = decided.and_then(|()| reopen.resume_request());
        if let Err(error) = prepared {
            if self.delivered {
                // The worker's part broke and no other worker took over.
                self.inner = None;
            }
            if resumable {
                self.reopen = Some(reopen);
            } else {
                reopen.commit();
            }
            return Some(error);
        }
        // Dropping the current worker's responses cancels its part.
        self.inner = None;
        let shared = self.shared.clone();
        self.moving = Some(Box::pin(async move {
            let opened = open(&shared, &mut reopen).await;
            (reopen, opened)
        }));
        None
    }
}

impl Stream for WorkerStream {
    type Item = Result<Vec<u8>, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(moving) = &mut this.moving {
                let (reopen, opened) = std::task::ready!(moving.as_mut().poll(cx));
                this.moving = None;
                match opened {
                    Ok(opened) => {
                        this.reopen = Some(reopen);
                        this.install(opened);
                    }
                    Err(error) => {
                        if reopen.resume.is_some() {
                            this.reopen = Some(reopen);
                        } else {
                            reopen.commit();
                        }
                        return Poll::Ready(Some(Err(error)));
                    }
                }
            }
            let Some(inner) = &mut this.inner else {
                return Poll::Ready(None);
            };
            match std::task::ready!(Pin::new(inner).poll_next(cx)) {
                Some(Ok(item)) => {
                    this.on_item(&item);
                    return Poll::Ready(Some(Ok(item)));
                }
                Some(Err(error)) => {
                    if let Some(error) = this.on_error(error) {
                        return Poll::Ready(Some(Err(error)));
                    }
                }
                None => {
                    if !this.delivered {
                        let now = Instant::now();
                        this.shared
                            .record(&this.worker, None, Outcome::Answered, now);
                    }
                    this.inner = None;
                    return Poll::Ready(None);
                }
            }
        }
    }
}
