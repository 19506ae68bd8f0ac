//! [`ClusterClient`]'s call modes: each is one attempt closure given to
//! `route`, and each has a variant taking [`CallOptions`] (metadata,
//! timeout, idempotence), named after the mode with `_with`:
//!
//! | mode | methods | moves to another worker | deadline without a timeout |
//! |---|---|---|---|
//! | unary | `call_worker`, `call_worker_with` | as `failover` rules | the default timeout |
//! | server streaming | `call_worker_server_streaming(_with)` | only while connecting | none for the stream |
//! | client streaming | `call_worker_client_streaming(_with)` | only while connecting | the default timeout |
//! | bidirectional | `call_worker_streaming(_with)` | only while connecting | none for the stream |
//!
//! With a timeout, the whole call is bounded by it, a stream included.

use futures::Stream;

use super::{ClusterClient, WorkerStream};
use crate::wire::CallKind;
use crate::{CallOptions, RpcError};

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
    /// stream of responses, with default options (no deadline for the
    /// stream). The call moves to another worker only while connecting;
    /// once the request is sent, failures arrive in the stream. The worker
    /// counts the call as in flight until the stream is dropped.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_server_streaming(
        &self,
        method: &str,
        request: Vec<u8>,
        filter: Option<&str>,
    ) -> Result<WorkerStream, RpcError> {
        self.call_worker_server_streaming_with(method, request, filter, CallOptions::new())
            .await
    }

    /// [`call_worker_server_streaming`](Self::call_worker_server_streaming)
    /// with call options: the worker's handler sees the metadata, and a
    /// timeout bounds the whole call, stream included (the worker ends the
    /// stream with [`RpcError::Timeout`] when it passes).
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_server_streaming_with(
        &self,
        method: &str,
        request: Vec<u8>,
        filter: Option<&str>,
        options: CallOptions,
    ) -> Result<WorkerStream, RpcError> {
        let kind = CallKind::ServerStreaming;
        let (inner, worker) = self
            .route(filter, &options, kind, |client, options| {
                client.call_server_streaming_with_options(method, request.clone(), &options)
            })
            .await?;
        Ok(WorkerStream { inner, worker })
    }

    /// Client streaming on a worker matching `filter`: uploads `requests`,
    /// then returns the single response, bounded as a whole by the default
    /// timeout. A request stream cannot be replayed, so the call moves to
    /// another worker only if connecting fails.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_client_streaming<S>(
        &self,
        method: &str,
        requests: S,
        filter: Option<&str>,
    ) -> Result<Vec<u8>, RpcError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        self.call_worker_client_streaming_with(method, requests, filter, CallOptions::new())
            .await
    }

    /// [`call_worker_client_streaming`](Self::call_worker_client_streaming)
    /// with call options: metadata, and a timeout for the whole call.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_client_streaming_with<S>(
        &self,
        method: &str,
        requests: S,
        filter: Option<&str>,
        options: CallOptions,
    ) -> Result<Vec<u8>, RpcError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let mut requests = Some(requests);
        let kind = CallKind::ClientStreaming;
        let (response, _worker) = self
            .route(filter, &options, kind, |client, options| {
                let call = take_once(&mut requests).map(|requests| {
                    client.call_client_streaming_with_options(method, requests, &options)
                });
                async move { call?.await }
            })
            .await?;
        Ok(response)
    }

    /// Bidirectional streaming on a worker matching `filter`, with default
    /// options (no deadline for the stream). A request stream cannot be
    /// replayed, so the call moves to another worker only if connecting
    /// fails.
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
        self.call_worker_streaming_with(method, requests, filter, CallOptions::new())
            .await
    }

    /// [`call_worker_streaming`](Self::call_worker_streaming) with call
    /// options: metadata, and a timeout bounding the whole call, stream
    /// included.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_streaming_with<S>(
        &self,
        method: &str,
        requests: S,
        filter: Option<&str>,
        options: CallOptions,
    ) -> Result<WorkerStream, RpcError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let mut requests = Some(requests);
        let kind = CallKind::Bidirectional;
        let (inner, worker) = self
            .route(filter, &options, kind, |client, options| {
                let call = take_once(&mut requests)
                    .map(|requests| client.call_streaming_with_options(method, requests, &options));
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
