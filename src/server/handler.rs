//! Handler types and the request stream a streaming handler consumes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};

use super::layer::Wrap;
use crate::RpcError;

pub(crate) type UnaryFn =
    dyn Fn(Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> + Send + Sync;
pub(crate) type ResponseItems = BoxStream<'static, Result<Vec<u8>, RpcError>>;
/// A streaming handler; `Err` (from a layer) ends the call with that status.
pub(crate) type StreamingFn =
    dyn Fn(RequestStream) -> BoxFuture<'static, Result<ResponseItems, RpcError>> + Send + Sync;

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
    /// The application's layers, innermost first, and the methods they
    /// wrap (rpcnet's own methods are not).
    layers: RwLock<Layers>,
}

#[derive(Default)]
struct Layers {
    wraps: Vec<Wrap>,
    /// Methods registered without layers (the raw handlers of the others
    /// are kept too, so a layer added later wraps the raw handler once).
    internal: std::collections::HashSet<String>,
    raw: HashMap<String, Handler>,
}

impl Registry {
    /// Registers an application handler, wrapped in the layers.
    pub(crate) fn insert(&self, method: &str, handler: Handler) {
        let layers = crate::sync::read(&self.layers);
        let wrapped = layers.wraps.iter().fold(handler.clone(), |h, wrap| wrap(h));
        drop(layers);
        let mut layers = crate::sync::write(&self.layers);
        layers.internal.remove(method);
        layers.raw.insert(method.to_owned(), handler);
        crate::sync::write(&self.handlers).insert(method.to_owned(), wrapped);
    }

    /// Registers one of rpcnet's own handlers, which layers do not wrap.
    pub(crate) fn insert_internal(&self, method: &str, handler: Handler) {
        let mut layers = crate::sync::write(&self.layers);
        layers.internal.insert(method.to_owned());
        layers.raw.remove(method);
        crate::sync::write(&self.handlers).insert(method.to_owned(), handler);
    }

    /// Adds a layer around every application handler, present and future.
    pub(crate) fn layer(&self, wrap: Wrap) {
        let mut layers = crate::sync::write(&self.layers);
        layers.wraps.push(wrap);
        let mut handlers = crate::sync::write(&self.handlers);
        for (method, raw) in &layers.raw {
            let wrapped = layers.wraps.iter().fold(raw.clone(), |h, wrap| wrap(h));
            handlers.insert(method.clone(), wrapped);
        }
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
    Handler::Streaming(Arc::new(move |reqs| f(reqs).map(|s| Ok(s.boxed())).boxed()))
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
        self.rx.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for RequestStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestStream").finish_non_exhaustive()
    }
}
