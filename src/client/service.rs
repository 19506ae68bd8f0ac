//! Calls described by [`CallOptions`], one variant per call mode (named
//! after the mode, `_with_options`), and [`RpcClient`] as a
//! `tower::Service` for unary calls, so tower's timeout, rate-limit and
//! concurrency-limit layers apply to it.
//!
//! The streamed modes are [`invoke`](RpcClient::invoke) with the body of
//! their mode; the modes read as one response (unary, client streaming)
//! take invoke's path (check, then open the stream and send) bounded as a
//! whole by the timeout, and announce their own call kind to the handler.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use super::RpcClient;
use crate::call::RequestBody;
use crate::wire::CallKind;
use crate::{Body, CallOptions, ResponseStream, RpcError};

impl RpcClient {
    /// Calls a unary method as `options` describe: metadata, timeout
    /// (default: the configured default timeout). The idempotent flag
    /// matters to retrying callers such as `ClusterClient`.
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub fn call_with_options(
        &self,
        method: &str,
        params: Vec<u8>,
        options: &CallOptions,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        self.single(
            CallKind::Unary,
            method,
            (options.metadata().clone(), options.schema()),
            options.timeout().unwrap_or(self.inner.default_timeout),
            RequestBody::Message(params),
        )
    }

    /// [`call_with_options`](Self::call_with_options) answering the bytes
    /// received, for the typed layer to decode in place.
    pub(crate) fn call_with_options_bytes(
        &self,
        method: &str,
        params: Vec<u8>,
        options: &CallOptions,
    ) -> impl Future<Output = Result<Bytes, RpcError>> + Send + 'static {
        self.single_bytes(
            CallKind::Unary,
            method,
            (options.metadata().clone(), options.schema()),
            options.timeout().unwrap_or(self.inner.default_timeout),
            RequestBody::Message(params),
        )
    }

    /// [`call_with_options`](Self::call_with_options) with the request as
    /// shared bytes: the attempts of a routed call send one buffer.
    pub(crate) fn call_shared(
        &self,
        method: &str,
        params: Bytes,
        options: &CallOptions,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        self.single(
            CallKind::Unary,
            method,
            (options.metadata().clone(), options.schema()),
            options.timeout().unwrap_or(self.inner.default_timeout),
            RequestBody::Shared(params),
        )
    }

    /// Server streaming as `options` describe: one request, a stream of
    /// responses, with `options`' metadata. With a timeout the server ends
    /// the stream when it passes ([`RpcError::Timeout`] in the stream);
    /// without one the stream has no deadline, and only waiting for a
    /// connection and a stream slot is bounded by the default timeout.
    ///
    /// # Errors
    /// As [`invoke`](Self::invoke); errors after the start arrive in the stream.
    pub fn call_server_streaming_with_options(
        &self,
        method: &str,
        request: Vec<u8>,
        options: &CallOptions,
    ) -> impl Future<Output = Result<ResponseStream, RpcError>> + Send + 'static {
        self.invoke(method, options, Body::Message(request))
    }

    /// Bidirectional streaming as `options` describe: sends `requests`
    /// while yielding responses; timeout as for
    /// [`call_server_streaming_with_options`](Self::call_server_streaming_with_options).
    ///
    /// # Errors
    /// As [`invoke`](Self::invoke); errors after the start arrive in the stream.
    pub fn call_streaming_with_options<S>(
        &self,
        method: &str,
        requests: S,
        options: &CallOptions,
    ) -> impl Future<Output = Result<ResponseStream, RpcError>> + Send + 'static
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        self.invoke(method, options, Body::stream(requests))
    }

    /// Client streaming as `options` describe: uploads `requests`, then
    /// returns the single response, the whole call bounded by the timeout
    /// (default: the configured default timeout), which the server is told
    /// as the deadline.
    ///
    /// # Errors
    /// As [`call`](Self::call); a request over the message size limit
    /// ends the call with [`RpcError::MessageTooLarge`].
    pub fn call_client_streaming_with_options<S>(
        &self,
        method: &str,
        requests: S,
        options: &CallOptions,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        self.single(
            CallKind::ClientStreaming,
            method,
            (options.metadata().clone(), options.schema()),
            options.timeout().unwrap_or(self.inner.default_timeout),
            Body::stream(requests).into(),
        )
    }
}

/// A unary request for [`RpcClient`]'s `tower::Service` implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnaryRequest {
    /// The method name.
    pub method: String,
    /// The request payload.
    pub payload: Vec<u8>,
    /// Metadata, timeout, idempotence.
    pub options: CallOptions,
}

impl UnaryRequest {
    /// A request for `method` with default options.
    pub fn new(method: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            method: method.into(),
            payload,
            options: CallOptions::new(),
        }
    }
}

impl tower::Service<UnaryRequest> for RpcClient {
    type Response = Vec<u8>;
    type Error = RpcError;
    type Future = Pin<Box<dyn Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static>>;

    /// Always ready: calls wait for a stream slot inside the call itself
    /// (bounded by the call's timeout); put a `ConcurrencyLimit` layer in
    /// front to bound them.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: UnaryRequest) -> Self::Future {
        Box::pin(self.call_with_options(&request.method, request.payload, &request.options))
    }
}
