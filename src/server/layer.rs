//! Server middleware: tower layers around every handler.
//!
//! [`RpcServer::layer`](super::RpcServer::layer) wraps each method the
//! application registers (before or after the call) in a
//! [`tower::Layer`], so authentication (from metadata or the peer
//! certificate), concurrency and rate limits and timeouts are written once.
//! A layer sees a [`ServerRequest`] (the call's header as [`CallInfo`], and
//! its request message or stream) and answers a [`ServerResponse`] (a
//! message or a stream of items) or an [`RpcError`], which the caller
//! receives as a terminal status in every call mode:
//! [`RpcError::PermissionDenied`] and [`RpcError::Unavailable`] as
//! themselves (a `ClusterClient` takes `Unavailable` to mean "never ran"
//! and tries another worker), anything else as [`RpcError::RemoteError`].
//!
//! rpcnet's own methods (membership gossip and queries) are not wrapped:
//! membership authenticates its callers by their member certificates.
//! Without a layer nothing of this runs: each call goes straight to its
//! handler.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tower::util::{BoxCloneSyncService, ServiceExt};
use tower::{Layer, Service};

use super::handler::{Handler, RequestStream};
use super::CallInfo;
use crate::RpcError;

/// What a layer sees of a call.
pub struct ServerRequest {
    /// The call's header: method, request id, kind, deadline, metadata,
    /// the client's certificate.
    pub call: Arc<CallInfo>,
    /// The request side.
    pub body: ServerBody,
}

/// The request side of a call.
pub enum ServerBody {
    /// A unary call's one request message.
    Message(Vec<u8>),
    /// The request messages of a streaming handler's call (for a unary or
    /// server-streaming call to a streaming handler, the one message).
    Stream(RequestStream),
}

/// What a handler answers.
pub enum ServerResponse {
    /// A unary handler's response message.
    Message(Vec<u8>),
    /// A streaming handler's response items.
    Stream(BoxStream<'static, Result<Vec<u8>, RpcError>>),
}

impl std::fmt::Debug for ServerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerRequest")
            .field("method", &self.call.method)
            .finish_non_exhaustive()
    }
}

/// A handler (and the layers inside the one being applied) as a service.
pub type ServerService = BoxCloneSyncService<ServerRequest, ServerResponse, RpcError>;

/// Wraps handlers in one layer; kept by the registry for methods
/// registered later.
pub(crate) type Wrap = Arc<dyn Fn(Handler) -> Handler + Send + Sync>;

/// The wrapper applying `layer` to a handler.
pub(crate) fn wrap<L>(layer: L) -> Wrap
where
    L: Layer<ServerService> + Send + Sync + 'static,
    L::Service: Service<ServerRequest, Response = ServerResponse> + Clone + Send + Sync + 'static,
    <L::Service as Service<ServerRequest>>::Error: Into<tower::BoxError>,
    <L::Service as Service<ServerRequest>>::Future: Send + 'static,
{
    Arc::new(move |handler: Handler| {
        let unary = matches!(handler, Handler::Unary(_));
        let service = ServerService::new(
            layer
                .layer(handler_service(handler))
                .map_err(|e| rpc_error(e.into())),
        );
        if unary {
            Handler::Unary(Arc::new(move |message| {
                let service = service.clone();
                async move {
                    match service
                        .oneshot(request(ServerBody::Message(message)))
                        .await?
                    {
                        ServerResponse::Message(message) => Ok(message),
                        ServerResponse::Stream(_) => Err(RpcError::RemoteError(
                            "a layer answered a unary call with a stream".into(),
                        )),
                    }
                }
                .boxed()
            }))
        } else {
            Handler::Streaming(Arc::new(move |requests| {
                let service = service.clone();
                async move {
                    match service
                        .oneshot(request(ServerBody::Stream(requests)))
                        .await?
                    {
                        ServerResponse::Stream(items) => Ok(items),
                        ServerResponse::Message(message) => {
                            Ok(futures::stream::once(async move { Ok(message) }).boxed())
                        }
                    }
                }
                .boxed()
            }))
        }
    })
}

/// A layer's error as the caller will see it: an [`RpcError`] as itself,
/// tower's timeout as [`RpcError::Timeout`], anything else as its text.
fn rpc_error(error: tower::BoxError) -> RpcError {
    match error.downcast::<RpcError>() {
        Ok(error) => *error,
        Err(other) if other.is::<tower::timeout::error::Elapsed>() => RpcError::Timeout,
        Err(other) => RpcError::RemoteError(other.to_string()),
    }
}

/// The current call's request as layers see it.
fn request(body: ServerBody) -> ServerRequest {
    ServerRequest {
        // Handlers always run inside their call's scope.
        call: CallInfo::current().expect("a handler runs inside its call"),
        body,
    }
}

/// The innermost service: the handler itself.
fn handler_service(handler: Handler) -> ServerService {
    ServerService::new(tower::service_fn(move |request: ServerRequest| {
        let answer: BoxFuture<'static, Result<ServerResponse, RpcError>> =
            match (&handler, request.body) {
                (Handler::Unary(f), ServerBody::Message(message)) => {
                    f(message).map(|r| r.map(ServerResponse::Message)).boxed()
                }
                (Handler::Streaming(f), ServerBody::Stream(requests)) => {
                    f(requests).map(|r| r.map(ServerResponse::Stream)).boxed()
                }
                (Handler::Unary(_), ServerBody::Stream(_)) => futures::future::ready(Err(
                    RpcError::RemoteError("a layer gave a unary handler a request stream".into()),
                ))
                .boxed(),
                (Handler::Streaming(f), ServerBody::Message(message)) => {
                    let (mut tx, rx) = futures::channel::mpsc::channel(1);
                    let _ = tx.try_send(message);
                    f(RequestStream::new(rx))
                        .map(|r| r.map(ServerResponse::Stream))
                        .boxed()
                }
            };
        answer
    }))
}
