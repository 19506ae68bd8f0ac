//! [`Registrar`]: where a typed server adapter registers its handlers.

use std::future::Future;

use futures::Stream;

use crate::{RequestStream, RpcError, RpcServer, ServerHandle};

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::RpcServer {}
    impl Sealed for crate::ServerHandle {}
}

/// Something handlers can be registered on: an [`RpcServer`] or a
/// [`ServerHandle`] (also while the server runs). Sealed.
pub trait Registrar: sealed::Sealed + Sync {
    /// [`RpcServer::register`].
    fn register_unary<F, Fut>(&self, method: &str, handler: F) -> impl Future<Output = ()> + Send
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static;

    /// [`RpcServer::register_streaming`].
    fn register_streaming<F, Fut, S>(
        &self,
        method: &str,
        handler: F,
    ) -> impl Future<Output = ()> + Send
    where
        F: Fn(RequestStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = S> + Send + 'static,
        S: Stream<Item = Result<Vec<u8>, RpcError>> + Send + 'static;
}

impl Registrar for RpcServer {
    fn register_unary<F, Fut>(&self, method: &str, handler: F) -> impl Future<Output = ()> + Send
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        self.register(method, handler)
    }

    fn register_streaming<F, Fut, S>(
        &self,
        method: &str,
        handler: F,
    ) -> impl Future<Output = ()> + Send
    where
        F: Fn(RequestStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = S> + Send + 'static,
        S: Stream<Item = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        RpcServer::register_streaming(self, method, handler)
    }
}

impl Registrar for ServerHandle {
    fn register_unary<F, Fut>(&self, method: &str, handler: F) -> impl Future<Output = ()> + Send
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        self.register(method, handler)
    }

    fn register_streaming<F, Fut, S>(
        &self,
        method: &str,
        handler: F,
    ) -> impl Future<Output = ()> + Send
    where
        F: Fn(RequestStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = S> + Send + 'static,
        S: Stream<Item = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        ServerHandle::register_streaming(self, method, handler)
    }
}
