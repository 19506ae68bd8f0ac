//! Handler types and the request stream a streaming handler consumes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;

use crate::RpcError;

pub(crate) type UnaryFn =
    dyn Fn(Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> + Send + Sync;
pub(crate) type ResponseItems = BoxStream<'static, Result<Vec<u8>, RpcError>>;
pub(crate) type StreamingFn =
    dyn Fn(RequestStream) -> BoxFuture<'static, ResponseItems> + Send + Sync;

/// A registered handler.
#[derive(Clone)]
pub(crate) enum Handler {
    Unary(Arc<UnaryFn>),
    Streaming(Arc<StreamingFn>),
}

/// Method name → handler. Registering a name again replaces the handler;
/// calls already running keep the handler they started with.
#[derive(Default)]
pub(crate) struct Registry {
    handlers: RwLock<HashMap<String, Handler>>,
}

impl Registry {
    pub(crate) fn insert(&self, method: &str, handler: Handler) {
        crate::sync::write(&self.handlers).insert(method.to_owned(), handler);
    }

    pub(crate) fn get(&self, method: &str) -> Option<Handler> {
        crate::sync::read(&self.handlers).get(method).cloned()
    }
}

pub(crate) fn unary<F, Fut>(f: F) -> Handler
where
    F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static,
{
    Handler::Unary(Arc::new(move |req| f(req).boxed()))
}

pub(crate) fn streaming<F, Fut, S>(f: F) -> Handler
where
    F: Fn(RequestStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S> + Send + 'static,
    S: Stream<Item = Result<Vec<u8>, RpcError>> + Send + 'static,
{
    Handler::Streaming(Arc::new(move |reqs| f(reqs).map(|s| s.boxed()).boxed()))
}

/// The request messages of a streaming call, in order, as the client sent
/// them (empty messages included). Ends when the client ends its side.
///
/// It is fed through a small bounded queue: a handler that stops reading
/// stops the client's upload through QUIC flow control.
pub struct RequestStream {
    rx: mpsc::Receiver<Vec<u8>>,
}

impl RequestStream {
    pub(crate) fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        Self { rx }
    }
}

impl Stream for RequestStream {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        self.rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for RequestStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestStream").finish_non_exhaustive()
    }
}
