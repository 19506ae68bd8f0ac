//! [`ClusterClient`]'s call modes: each is one attempt closure given to
//! `route`.
//!
//! | mode | methods | moves to another worker |
//! |---|---|---|
//! | unary | `call_worker`, `call_worker_with` | as `failover` rules |
//! | server streaming | `call_worker_server_streaming` | only while connecting |
//! | bidirectional | `call_worker_streaming` | only while connecting |

use futures::Stream;

use super::{ClusterClient, WorkerStream};
use crate::wire::CallKind;
use crate::{Body, CallOptions, RpcError};

impl ClusterClient {
    /// Calls unary `method` on a worker matching `filter` (see
    /// [`WorkerRegistry::select_worker`](crate::cluster::WorkerRegistry::select_worker))
    /// with default options: not idempotent, the configuration's default
    /// timeout.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker(
        &self,
        method: &str,
        data: Vec<u8>,
        filter: Option<&str>,
    ) -> Result<Vec<u8>, RpcError> {
        self.call_worker_with(method, data, filter, CallOptions::new())
            .await
    }

    /// [`call_worker`](Self::call_worker) with call options: metadata, a
    /// timeout for the whole call (retries included) and whether the call
    /// is idempotent.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_with(
        &self,
        method: &str,
        data: Vec<u8>,
        filter: Option<&str>,
        options: CallOptions,
    ) -> Result<Vec<u8>, RpcError> {
        let (response, _worker) = self
            .route(filter, &options, CallKind::Unary, |client, options| {
                client.call_with_options(method, data.clone(), &options)
            })
            .await?;
        Ok(response)
    }

    /// Server streaming on a worker matching `filter`: one request, a
    /// stream of responses. The call moves to another worker only while
    /// connecting; once the request is sent, failures arrive in the stream.
    /// The worker counts the call as in flight until the stream is dropped.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_server_streaming(
        &self,
        method: &str,
        request: Vec<u8>,
        filter: Option<&str>,
    ) -> Result<WorkerStream, RpcError> {
        let kind = CallKind::ServerStreaming;
        // The stream itself has no deadline (as `call_server_streaming`).
        let (inner, worker) = self
            .route(filter, &CallOptions::new(), kind, |client, options| {
                client.invoke(method, &options, Body::Message(request.clone()))
            })
            .await?;
        Ok(WorkerStream { inner, worker })
    }

    /// Bidirectional streaming on a worker matching `filter`. A request
    /// stream cannot be replayed, so the call moves to another worker only
    /// if connecting fails.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_streaming<S>(
        &self,
        method: &str,
        requests: S,
        filter: Option<&str>,
    ) -> Result<WorkerStream, RpcError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let mut requests = Some(requests);
        let kind = CallKind::Bidirectional;
        let (inner, worker) = self
            .route(filter, &CallOptions::new(), kind, |client, options| {
                let call = take_once(&mut requests)
                    .map(|requests| client.invoke(method, &options, Body::stream(requests)));
                async move { call?.await }
            })
            .await?;
        Ok(WorkerStream { inner, worker })
    }
}

/// A request stream for `route`'s attempts: the first attempt that has a
/// connection takes it. `failover::decide` never repeats a streaming call
/// once connected, so the error below is not expected to be seen.
fn take_once<S>(requests: &mut Option<S>) -> Result<S, RpcError> {
    requests
        .take()
        .ok_or_else(|| RpcError::StreamError("the request stream was already sent".into()))
}
