//! [`ClusterClient`]'s call modes: each is one attempt closure given to
//! `route`, and each has a variant taking [`CallOptions`] (metadata,
//! timeout, idempotence), named after the mode with `_with`:
//!
//! | mode | methods | moves to another worker | deadline without a timeout |
//! |---|---|---|---|
//! | unary | `call_worker`, `call_worker_with` | as `failover` rules, per-attempt timeout if idempotent | the default timeout |
//! | server streaming | `call_worker_server_streaming(_with)` | until its first response | none for the stream |
//! | client streaming | `call_worker_client_streaming(_with)` | while its requests are kept | the default timeout |
//! | bidirectional | `call_worker_streaming(_with)` | until its first response, while its requests are kept | none for the stream |
//! | resumable server streaming | `call_worker_resumable` | whenever its worker fails, from the last item | none for the stream |
//!
//! With a timeout, the whole call is bounded by it, a stream included.

use std::future::Future;

use futures::Stream;

use super::replay::Requests;
use super::stream::{self, Reopen, Request, Resume, ResumeFn};
use super::{ClusterClient, Route, WorkerStream};
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
    pub fn call_worker<'a>(
        &'a self,
        method: &'a str,
        data: Vec<u8>,
        filter: Option<&'a str>,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'a {
        // The future of `call_worker_with` itself, not one awaiting it: a
        // routed call's state is moved and polled through one level less.
        self.call_worker_with(method, data, filter, CallOptions::new())
    }

    /// [`call_worker`](Self::call_worker) with call options: metadata, a
    /// timeout for the whole call (retries included), whether the call
    /// is idempotent, and for an idempotent call how long one attempt may
    /// take ([`CallOptions::with_attempt_timeout`]; default: the client's
    /// [`AttemptTimeout`](crate::cluster::AttemptTimeout)).
    ///
    /// # Errors
    /// See [`ClusterClient`].
    // An async block on purpose: an `async fn` keeps its arguments in the
    // call's state twice (the options were 2 × 80 bytes of it).
    #[allow(clippy::manual_async_fn)]
    pub fn call_worker_with<'a>(
        &'a self,
        method: &'a str,
        data: Vec<u8>,
        filter: Option<&'a str>,
        options: CallOptions,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'a {
        async move {
            let shared = &self.shared;
            let mut route = Route::new(
                method,
                filter,
                &options,
                CallKind::Unary,
                shared.default_timeout(),
            );
            // Shared by the attempts: a retry sends the same buffer.
            let data = bytes::Bytes::from(data);
            let answered = shared
                .route(&mut route, |client, options| {
                    client.call_shared(method, data.clone(), options)
                })
                .await?;
            Ok(answered.value)
        }
    }

    /// Server streaming on a worker matching `filter`: one request, a
    /// stream of responses, with default options (no deadline for the
    /// stream). Until its first response the stream moves to another
    /// worker when its worker refused it or could not be reached; once a
    /// response arrived, failures arrive in the stream. The worker counts
    /// the call as in flight until the stream is dropped.
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
    /// with call options: the worker's handler sees the metadata, a
    /// timeout bounds the whole call, stream included (the worker ends the
    /// stream with [`RpcError::Timeout`] when it passes), and an
    /// idempotent stream also moves on when its worker's connection is
    /// lost before the first response.
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
        self.open_stream(
            method,
            filter,
            &options,
            Request::Message(request.into()),
            None,
        )
        .await
    }

    /// A resumable server stream: `method`'s handler takes, in its
    /// request, the position to start from, and every item it yields
    /// carries its position, so `resume(last)` makes the request that
    /// starts the stream right after `last`, the last item the caller
    /// received (`request` starts it from the beginning).
    ///
    /// When the stream's worker fails (refuses it, drains, loses its
    /// connection, resets the stream), the stream opens itself on another
    /// worker matching `filter` with `resume`'s request: the caller sees
    /// every item once, in order, and no error. Each resumption is a
    /// round of attempts under the call's rules (at most `max_attempts`
    /// workers, the retry budget, the call's timeout if `options` has
    /// one); when one fails, the stream delivers the
    /// [`RpcError::Failover`] and ends, and
    /// [`WorkerStream::resume_on`] can resume it later. An error item from
    /// the handler is delivered as it is, the stream staying with its
    /// worker. A resumable stream is idempotent from its position: it is
    /// opened again after failures that may have run it, whatever
    /// `options` say.
    ///
    /// ```no_run
    /// # async fn f(client: rpcnet::cluster::ClusterClient) -> Result<(), rpcnet::RpcError> {
    /// use futures::StreamExt;
    /// use rpcnet::CallOptions;
    ///
    /// // Items are 8-byte big-endian sequence numbers; the request is the first wanted.
    /// let after = |last: &[u8]| -> Result<Vec<u8>, rpcnet::RpcError> {
    ///     let n = u64::from_be_bytes(last.try_into().map_err(|_| rpcnet::RpcError::ProtocolError("item".into()))?);
    ///     Ok((n + 1).to_be_bytes().to_vec())
    /// };
    /// let mut items = client
    ///     .call_worker_resumable("count", 1u64.to_be_bytes().to_vec(), Some("role=worker"), CallOptions::new(), after)
    ///     .await?;
    /// while let Some(item) = items.next().await {
    ///     println!("{:?} from {}", item?, items.worker().addr());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// See [`ClusterClient`], for opening the stream.
    pub async fn call_worker_resumable<F>(
        &self,
        method: &str,
        request: Vec<u8>,
        filter: Option<&str>,
        options: CallOptions,
        resume: F,
    ) -> Result<WorkerStream, RpcError>
    where
        F: FnMut(&[u8]) -> Result<Vec<u8>, RpcError> + Send + 'static,
    {
        self.open_resumable(method, request, filter, options, Box::new(resume), |_| true)
            .await
    }

    /// [`call_worker_resumable`](Self::call_worker_resumable) whose
    /// positions are the items `is_position` accepts: the typed layer's
    /// resumable streams, whose service errors are items but not
    /// positions.
    pub(crate) async fn open_resumable(
        &self,
        method: &str,
        request: Vec<u8>,
        filter: Option<&str>,
        options: CallOptions,
        next: ResumeFn,
        is_position: fn(&[u8]) -> bool,
    ) -> Result<WorkerStream, RpcError> {
        let resume = Resume {
            next,
            is_position,
            last: None,
        };
        let request = Request::Message(request.into());
        self.open_stream(method, filter, &options, request, Some(resume))
            .await
    }

    /// Client streaming on a worker matching `filter`: uploads `requests`,
    /// then returns the single response, bounded as a whole by the default
    /// timeout. The requests sent are kept up to
    /// [`with_replay_limit`](crate::cluster::ClusterClientConfig::with_replay_limit),
    /// so the call moves to another worker when its worker refused it (or
    /// could not be reached) before more was sent.
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
    /// with call options: metadata, a timeout for the whole call, and
    /// idempotence (an idempotent call also moves on when its connection
    /// is lost, while its requests are kept).
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
        let shared = &self.shared;
        let requests = Requests::new(requests, shared.config.replay_limit);
        let kind = CallKind::ClientStreaming;
        let mut route = Route::new(method, filter, &options, kind, shared.default_timeout());
        route.requests = Some(requests.clone());
        let answered = shared
            .route(&mut route, |client, options| {
                client.call_client_streaming_with_options(method, requests.attempt(), options)
            })
            .await;
        requests.commit();
        Ok(answered?.value)
    }

    /// Bidirectional streaming on a worker matching `filter`, with default
    /// options (no deadline for the stream). Until its first response, and
    /// while the requests sent are kept (see
    /// [`call_worker_client_streaming`](Self::call_worker_client_streaming)),
    /// the call moves to another worker when its worker refused it.
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
    /// options: metadata, a timeout bounding the whole call, stream
    /// included, and idempotence.
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
        let requests = Requests::new(requests, self.shared.config.replay_limit);
        let request = Request::Stream(requests);
        self.open_stream(method, filter, &options, request, None)
            .await
    }

    /// Opens a routed stream: the route's first round of attempts, then a
    /// [`WorkerStream`] that owns the route to go on with it.
    async fn open_stream(
        &self,
        method: &str,
        filter: Option<&str>,
        options: &CallOptions,
        request: Request,
        resume: Option<Resume>,
    ) -> Result<WorkerStream, RpcError> {
        let shared = &self.shared;
        let kind = match request {
            Request::Message(_) => CallKind::ServerStreaming,
            Request::Stream(_) => CallKind::Bidirectional,
        };
        let mut route = Route::new(method, filter, options, kind, shared.default_timeout());
        // A resumable stream is repeatable from its position.
        route.idempotent |= resume.is_some();
        if let Request::Stream(requests) = &request {
            route.requests = Some(requests.clone());
        }
        let mut reopen = Reopen {
            route: route.into_owned(),
            request,
            resume,
        };
        let opened = stream::open(shared, &mut reopen).await?;
        Ok(WorkerStream::new(shared.clone(), opened, reopen))
    }
}
