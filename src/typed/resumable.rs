//! [`Resumable`]: a typed server stream routed by a `ClusterClient` that
//! resumes on another worker after the last value received.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use super::__private::Method;
use super::CallError;
use crate::cluster::{Worker, WorkerStream};
use crate::RpcError;

/// The values of a resumable server stream, made by a generated cluster
/// client's `<method>_resumable` (see
/// [`ClusterClient::call_worker_resumable`](crate::cluster::ClusterClient::call_worker_resumable)
/// for when it moves). Its positions are its values: a service error item
/// (`Err(CallError::Service(e))`) is delivered as it is and leaves the
/// position where the last value put it, so a stream resumed after it
/// starts right after that value.
///
/// Dropping it cancels the call; the worker counts the call as in flight
/// until then.
pub struct Resumable<T, E> {
    inner: WorkerStream,
    method: &'static Method,
    decode: fn(&'static Method, Vec<u8>) -> Result<T, CallError<E>>,
}

impl<T, E> Resumable<T, E> {
    pub(crate) fn new(
        inner: WorkerStream,
        method: &'static Method,
        decode: fn(&'static Method, Vec<u8>) -> Result<T, CallError<E>>,
    ) -> Self {
        Self {
            inner,
            method,
            decode,
        }
    }

    /// The worker serving the stream (while it moves, the one that served
    /// it last).
    pub fn worker(&self) -> &Worker {
        self.inner.worker()
    }

    /// Moves the stream to a worker matching `filter` now, resuming after
    /// the last value received: for a caller that picks workers itself
    /// (the guide's example asks its director), or that gives up on a
    /// worker whose service error it received.
    ///
    /// # Errors
    /// The resume function's request could not be encoded
    /// ([`RpcError::Codec`]); the routing's errors, as for opening the
    /// stream (it then has no worker, and ends unless resumed again).
    pub async fn resume_on(&mut self, filter: Option<&str>) -> Result<(), RpcError> {
        self.inner.resume_on(filter).await
    }
}

impl<T, E> Stream for Resumable<T, E> {
    type Item = Result<T, CallError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = std::task::ready!(Pin::new(&mut this.inner).poll_next(cx));
        Poll::Ready(item.map(|item| match item {
            Ok(message) => (this.decode)(this.method, message),
            Err(e) => Err(CallError::Rpc(e)),
        }))
    }
}

impl<T, E> fmt::Debug for Resumable<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resumable")
            .field("method", &self.method.name)
            .field("worker", self.inner.worker())
            .finish_non_exhaustive()
    }
}
