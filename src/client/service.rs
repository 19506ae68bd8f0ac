//! Calls described by [`CallOptions`], and [`RpcClient`] as a
//! `tower::Service` for unary calls, so tower's timeout, rate-limit and
//! concurrency-limit layers apply to it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::RpcClient;
use crate::{CallOptions, RpcError};

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
        self.call_with_metadata(
            method,
            params,
            options.metadata().clone(),
            options.timeout().unwrap_or(self.inner.default_timeout),
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
