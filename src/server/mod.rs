//! [`RpcServer`]: registers handlers, binds a QUIC endpoint and serves calls.
//!
//! Lifecycle: `start` accepts connections, each served by its own task; each
//! call (stream) runs in a task of its connection. Tasks live in `JoinSet`s,
//! so dropping the `start` future (the guide's `tokio::select!` pattern)
//! aborts every connection at once, while a [`ShutdownHandle`] stops
//! gracefully: no new calls, in-flight calls finish within the drain timeout.

mod call;
pub(crate) mod context;
mod control;
mod handler;
mod layer;
mod limits;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use futures::Stream;
use s2n_quic::Connection;
use tokio::sync::{watch, Semaphore};
use tokio::task::{AbortHandle, JoinSet};

pub use context::CallInfo;
use handler::Registry;
pub use handler::RequestStream;
pub use layer::{ServerBody, ServerRequest, ServerResponse, ServerService};

use crate::io::{FrameReader, SendHalf};
use crate::keepalive::CallKeepAlive;
use crate::quic::start_error;
use crate::wire::{reset, Frame, FrameDecoder};
use crate::{RpcConfig, RpcError};
use control::{CallBook, Cancel};

/// An RPC server. See the crate docs for an example.
pub struct RpcServer {
    /// The bound address, set by [`RpcServer::bind`] (port 0 is resolved to the real port).
    pub socket_addr: Option<SocketAddr>,
    config: RpcConfig,
    registry: Arc<Registry>,
    shutdown: Arc<watch::Sender<bool>>,
}

/// A cloneable handle to an [`RpcServer`]: registers handlers (also while
/// the server runs), tells its address and configuration, shuts it down.
#[derive(Clone)]
pub struct ServerHandle {
    registry: Arc<Registry>,
    socket_addr: Option<SocketAddr>,
    config: RpcConfig,
    shutdown: ShutdownHandle,
}

impl ServerHandle {
    /// See [`RpcServer::register`].
    pub async fn register<F, Fut>(&self, method: &str, handler: F)
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        self.registry.insert(method, handler::unary(handler));
    }

    /// See [`RpcServer::register_streaming`].
    pub async fn register_streaming<F, Fut, S>(&self, method: &str, handler: F)
    where
        F: Fn(RequestStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = S> + Send + 'static,
        S: Stream<Item = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        self.registry.insert(method, handler::streaming(handler));
    }

    /// Registers one of rpcnet's own streaming methods, which the
    /// application's layers do not wrap.
    pub(crate) fn register_streaming_internal<F, Fut, S>(&self, method: &str, handler: F)
    where
        F: Fn(RequestStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = S> + Send + 'static,
        S: Stream<Item = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        self.registry
            .insert_internal(method, handler::streaming(handler));
    }

    /// Registers one of rpcnet's own unary methods, which the
    /// application's layers do not wrap.
    pub(crate) fn register_internal<F, Fut>(&self, method: &str, handler: F)
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        self.registry
            .insert_internal(method, handler::unary(handler));
    }

    /// The bound address (`None` if the handle was taken before `bind`).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.socket_addr
    }

    /// The server's configuration.
    pub fn config(&self) -> &RpcConfig {
        &self.config
    }

    /// Starts a graceful shutdown (see [`ShutdownHandle::shutdown`]).
    pub fn shutdown(&self) {
        self.shutdown.shutdown();
    }

    /// Becomes `true` when the server starts shutting down: for handlers
    /// of endless streams, which would otherwise hold the drain.
    pub(crate) fn shutting_down(&self) -> watch::Receiver<bool> {
        self.shutdown.0.subscribe()
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("socket_addr", &self.socket_addr)
            .finish_non_exhaustive()
    }
}

/// Requests a graceful shutdown of a running [`RpcServer`].
#[derive(Clone, Debug)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Stops accepting connections and calls; calls already running finish
    /// (up to the drain timeout), then connections close and `start` returns.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// What every call on a connection needs.
pub(crate) struct ConnContext {
    registry: Arc<Registry>,
    decoder: FrameDecoder,
    /// Calls a client may have open at once (bounds early cancels).
    max_concurrent_streams: usize,
    /// How long keep-alive that calls switched on stays on after the last
    /// one ended; `None` when the user's keep-alive is always on or there
    /// is no idle timeout.
    keep_alive_linger: Option<std::time::Duration>,
}

impl RpcServer {
    /// A server with no handlers yet.
    pub fn new(config: RpcConfig) -> Self {
        Self {
            socket_addr: None,
            config,
            registry: Arc::default(),
            shutdown: Arc::new(watch::channel(false).0),
        }
    }

    /// The configuration this server was created with.
    pub fn config(&self) -> &RpcConfig {
        &self.config
    }

    /// Registers a unary handler; registering the same name again replaces it.
    pub async fn register<F, Fut>(&self, method: &str, handler: F)
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        self.registry.insert(method, handler::unary(handler));
    }

    /// Registers a streaming handler: it receives the request messages as a
    /// [`RequestStream`] and returns a stream of responses. It serves
    /// bidirectional, server-streaming and client-streaming calls, and unary
    /// calls too (one request in, the first response out).
    pub async fn register_streaming<F, Fut, S>(&self, method: &str, handler: F)
    where
        F: Fn(RequestStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = S> + Send + 'static,
        S: Stream<Item = Result<Vec<u8>, RpcError>> + Send + 'static,
    {
        self.registry.insert(method, handler::streaming(handler));
    }

    /// Wraps every method the application registered, or registers later,
    /// in `layer` (tower middleware: authentication from metadata or the
    /// peer certificate, concurrency and rate limits, timeouts; see
    /// [`ServerRequest`]). Layers added later wrap those added earlier.
    /// rpcnet's own methods (membership) are not wrapped.
    ///
    /// A layer's `Err` ends the call with a status in every call mode:
    /// an [`RpcError::PermissionDenied`] or [`RpcError::Unavailable`] (the
    /// call did not run; a `ClusterClient` tries another worker) reaches
    /// the caller as itself, tower's timeout as [`RpcError::Timeout`],
    /// anything else as [`RpcError::RemoteError`] with its text. A layer
    /// wraps each method on its own: a concurrency limit for the whole
    /// server is `tower::limit::GlobalConcurrencyLimitLayer`.
    ///
    /// ```no_run
    /// use rpcnet::{RpcConfig, RpcError, RpcServer, ServerRequest};
    ///
    /// # async fn example() {
    /// let server = RpcServer::new(RpcConfig::new("certs/test_cert.pem", "127.0.0.1:0"));
    /// // Only calls carrying the right token reach a handler.
    /// server.layer(tower::filter::FilterLayer::new(|request: ServerRequest| {
    ///     match request.call.metadata_value("token") {
    ///         Some(b"secret") => Ok(request),
    ///         _ => Err(RpcError::PermissionDenied("a valid token is required".into())),
    ///     }
    /// }));
    /// server.register("echo", |request| async move { Ok(request) }).await;
    /// # }
    /// ```
    pub fn layer<L>(&self, layer: L) -> &Self
    where
        L: tower::Layer<ServerService> + Send + Sync + 'static,
        L::Service: tower::Service<ServerRequest, Response = ServerResponse>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<ServerRequest>>::Error: Into<tower::BoxError>,
        <L::Service as tower::Service<ServerRequest>>::Future: Send + 'static,
    {
        self.registry.layer(layer::wrap(layer));
        self
    }

    /// Creates the QUIC endpoint from the configuration's TLS material and
    /// limits, and records the bound address in [`socket_addr`](Self::socket_addr).
    ///
    /// # Errors
    ///
    /// [`RpcError::ConfigError`] for a bad bind address, unreadable or
    /// missing TLS material (the key is required) or unusable limits;
    /// [`RpcError::IoError`] if the endpoint cannot start (address in use).
    pub fn bind(&mut self) -> Result<s2n_quic::Server, RpcError> {
        let addr = self.config.parsed_bind_address()?;
        let tls = crate::tls::server_tls(&self.config)?;
        let limits = crate::quic::limits(&self.config, 1)?;
        let config_io = crate::quic::io(&self.config, addr, 8 << 20)?;
        let endpoint_limits = limits::Admission::new(
            self.config.max_inflight_handshakes(),
            self.config.max_connections(),
            self.shutdown.subscribe(),
        );
        let private_key = match self.config.key_path() {
            Some(path) => crate::tls::read_pem(path, "private key")?,
            None => String::new(),
        };
        let reset_tokens = limits::ResetTokens::new(self.config.stateless_reset_key());
        let server = s2n_quic::Server::builder()
            .with_tls(tls)
            .map_err(|e| start_error(addr, e))?
            .with_io(config_io)
            .map_err(|e| start_error(addr, e))?
            .with_limits(limits)
            .map_err(|e| start_error(addr, e))?
            .with_endpoint_limits(endpoint_limits)
            .map_err(|e| start_error(addr, e))?
            .with_stateless_reset_token(reset_tokens.clone())
            .map_err(|e| start_error(addr, e))?
            .with_event(context::PeerCertificate)
            .map_err(|e| start_error(addr, e))?
            .start()
            .map_err(|e| start_error(addr, e))?;
        let bound = server.local_addr()?;
        reset_tokens.bound(private_key.as_bytes(), bound);
        self.socket_addr = Some(bound);
        Ok(server)
    }

    /// A cloneable handle for registering handlers and reading the address
    /// after `start` has taken `&mut self`. Take it after [`bind`](Self::bind).
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            registry: self.registry.clone(),
            socket_addr: self.socket_addr,
            config: self.config.clone(),
            shutdown: self.shutdown_handle(),
        }
    }

    /// A handle that can stop [`start`](Self::start) gracefully from another task.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Serves connections until the endpoint stops delivering them or a
    /// graceful shutdown completes.
    ///
    /// # Errors
    ///
    /// None today: it returns `Ok(())` when it stops, including when the
    /// endpoint closed by itself (its socket failed; logged) and when the
    /// drain timeout cut in-flight calls short. Failures of single
    /// connections and calls are answered to their clients and logged, and
    /// never end the server. Setup errors come from [`bind`](Self::bind).
    pub async fn start(&mut self, mut server: s2n_quic::Server) -> Result<(), RpcError> {
        let ctx = Arc::new(ConnContext {
            registry: self.registry.clone(),
            decoder: FrameDecoder::new(
                self.config.max_message_size(),
                self.config.max_header_size(),
            ),
            max_concurrent_streams: self.config.max_concurrent_streams() as usize,
            keep_alive_linger: (self.config.keep_alive_interval().is_none()
                && self.config.idle_timeout() > std::time::Duration::ZERO)
                .then(|| self.config.idle_timeout() / 4),
        });
        let connection_slots = Arc::new(Semaphore::new(self.config.max_connections()));
        let keep_alive = self.config.keep_alive_interval().is_some();
        let mut shutdown = self.shutdown.subscribe();
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = server.accept() => {
                    let Some(mut connection) = accepted else { break };
                    // The endpoint refuses most connections over the limit
                    // before their handshake (`limits::Admission`); this
                    // catches those it counted before a slot was freed.
                    let Ok(slot) = connection_slots.clone().try_acquire_owned() else {
                        tracing::warn!("connection limit reached; refusing {:?}", connection.remote_addr());
                        connection.close(reset::CONNECTION_LIMIT.into());
                        if crate::telemetry::is_enabled() {
                            crate::telemetry::connection_refused("limit");
                        }
                        continue;
                    };
                    if keep_alive {
                        let _ = connection.keep_alive(true);
                    }
                    let ctx = ctx.clone();
                    let shutdown = self.shutdown.subscribe();
                    connections.spawn(async move {
                        let _counted = crate::telemetry::ConnectionGauge::open();
                        serve_connection(connection, ctx, shutdown).await;
                        drop(slot);
                    });
                }
                _ = shutdown.wait_for(|stop| *stop) => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // Draining: the endpoint refuses new connection attempts
        // (`limits::Admission`); connections whose handshake completed as
        // the shutdown began are told at once instead of waiting for
        // service that will not come.
        let drain = async {
            loop {
                tokio::select! {
                    accepted = server.accept() => match accepted {
                        Some(connection) => {
                            connection.close(reset::DRAINING.into());
                            if crate::telemetry::is_enabled() {
                                crate::telemetry::connection_refused("draining");
                            }
                        }
                        None => break,
                    },
                    ended = connections.join_next() => if ended.is_none() { break },
                }
            }
        };
        if tokio::time::timeout(self.config.drain_timeout(), drain)
            .await
            .is_err()
        {
            tracing::warn!("drain timeout passed; aborting remaining connections");
            connections.shutdown().await;
        }
        Ok(())
    }

    /// [`start`](Self::start), shutting down gracefully when `signal` completes.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start): none today.
    pub async fn start_with_shutdown(
        &mut self,
        server: s2n_quic::Server,
        signal: impl Future<Output = ()>,
    ) -> Result<(), RpcError> {
        let handle = self.shutdown_handle();
        let trigger = async move {
            signal.await;
            handle.shutdown();
            std::future::pending::<()>().await
        };
        tokio::select! {
            result = self.start(server) => result,
            _ = trigger => unreachable!("the trigger never completes"),
        }
    }
}

async fn serve_connection(
    connection: Connection,
    ctx: Arc<ConnContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = connection
        .query_event_context(|slot: &context::PeerCertificateSlot| slot.0.clone())
        .ok()
        .flatten();
    let remote = connection.remote_addr().ok();
    let (handle, acceptor) = connection.split();
    let (mut calls_in, mut controls_in) = acceptor.split();
    let mut calls: JoinSet<(u64, call::Answered)> = JoinSet::new();
    let mut book = CallBook::<AbortHandle>::new(ctx.max_concurrent_streams);
    let mut control: Option<FrameReader> = None;
    let mut draining = *shutdown.borrow();
    let mut arrived = None;
    // Answers written and not yet acknowledged by the client (see
    // `call::Answered`): a shutdown closes the connection only once the
    // client has every answer the server gave, so no call that ran is
    // lost to the close.
    let mut unacked = Unacked::default();
    // Keep-alive held on while calls wait (see `keep_alive_linger`), and
    // switched off once none has waited for that long.
    let keep_alive = ctx
        .keep_alive_linger
        .map(|linger| (CallKeepAlive::new(handle.clone(), false), linger));
    let mut quiet_since: Option<tokio::time::Instant> = None;
    while !(draining && calls.is_empty()) {
        tokio::select! {
            // Cancels first: a cancel that arrived before its call is then
            // known when the call is accepted.
            biased;
            frame = next_control_frame(&mut control) => match on_control_frame(&mut book, frame) {
                // The client closed its control stream; it may open another.
                Ok(true) => control = None,
                Ok(false) => {}
                Err(violation) => {
                    tracing::debug!("{violation}");
                    handle.close(reset::PROTOCOL.into());
                    break;
                }
            },
            accepted = controls_in.accept_receive_stream(), if control.is_none() => match accepted {
                Ok(Some(stream)) => control = Some(FrameReader::new(stream, ctx.decoder)),
                Ok(None) | Err(_) => break,
            },
            Some(ended) = calls.join_next_with_id(), if !calls.is_empty() => {
                if let Some((keep_alive, linger)) = &keep_alive {
                    if keep_alive.end() {
                        quiet_since = Some(tokio::time::Instant::now() + *linger);
                    }
                }
                match ended {
                Ok((_, (id, answer))) => {
                    book.finished(id);
                    unacked.extend(answer);
                }
                Err(e) => {
                    let task = e.id();
                    book.forget(|h| h.id() == task);
                }
                }
            },
            accepted = calls_in.accept_bidirectional_stream() => match accepted {
                Ok(Some(stream)) => {
                    let id = stream.id();
                    if book.admit(id) {
                        arrived = Some((id, stream));
                    } else {
                        // Through rpcnet's halves, which leave both in a
                        // state s2n-quic frees: the client's STOP_SENDING
                        // may have reset (and seen acknowledged) the send
                        // half already, and a plain reset then leaves the
                        // stream, and its slot, held for good.
                        let (rx, tx) = stream.split();
                        SendHalf::new(tx).reset(reset::CANCELLED);
                        FrameReader::new(rx, ctx.decoder).stop(reset::CANCELLED);
                    }
                }
                Ok(None) | Err(_) => break,
            },
            _ = shutdown.wait_for(|stop| *stop), if !draining => draining = true,
            _ = std::future::poll_fn(|cx| unacked.poll_sweep(cx)), if !unacked.is_empty() => {}
            _ = tokio::time::sleep_until(quiet_since.unwrap_or_else(tokio::time::Instant::now)), if quiet_since.is_some() => {
                if let Some((keep_alive, _)) = &keep_alive {
                    keep_alive.sweep();
                }
                quiet_since = None;
            }
        }
        if let Some((id, stream)) = arrived.take() {
            // Most unary calls can be answered at once (their request
            // arrived with the stream): try on this task first, and spawn a
            // task only for a call that has to wait. The call's state
            // machine lives in its own allocation, so handing it to a task
            // moves a pointer.
            let mut call = Box::pin(call::serve_call(
                stream,
                ctx.clone(),
                peer.clone(),
                remote,
                draining,
            ));
            match futures::poll!(call.as_mut()) {
                Poll::Ready(answer) => unacked.extend(answer),
                Poll::Pending => {
                    if let Some((keep_alive, _)) = &keep_alive {
                        keep_alive.begin();
                    }
                    let task = calls.spawn(async move { (id, call.await) });
                    book.started(id, task);
                }
            }
        }
    }
    if draining {
        // Closing discards stream data still in flight: let the last
        // answers arrive first (the drain timeout in `start` bounds this).
        unacked.acknowledged().await;
        handle.close(reset::SHUTDOWN.into());
    }
    while calls.join_next().await.is_some() {}
}

/// Answers written on a connection whose acknowledgement by the client has
/// not been seen yet. Settled ones are swept out when the list doubles
/// (with a floor of [`Unacked::FLOOR`]) and whenever the oldest one
/// settles (only it is watched: answers settle about in order), so keeping
/// them costs about one poll per answer and never holds a stream slot
/// longer than the oldest answer takes to be acknowledged.
#[derive(Default)]
struct Unacked {
    answers: Vec<SendHalf>,
    sweep_at: usize,
    /// Watches the oldest answer: set when it may have settled.
    watch: Option<Arc<OldestWatch>>,
}

/// A waker handed to the oldest answer's stream: notes that it fired and
/// wakes the connection task, so the task checks the answer again only
/// then (one atomic load per turn meanwhile).
struct OldestWatch {
    fired: std::sync::atomic::AtomicBool,
    task: std::task::Waker,
}

impl std::task::Wake for OldestWatch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, std::sync::atomic::Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl Unacked {
    const FLOOR: usize = 32;

    fn extend(&mut self, answer: call::Answered) {
        let Some(tx) = answer else { return };
        self.answers.push(tx);
        if self.answers.len() >= self.sweep_at.max(Self::FLOOR) {
            self.sweep();
        }
    }

    fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    fn sweep(&mut self) {
        self.answers.retain_mut(|tx| !tx.is_settled());
        if self.answers.is_empty() {
            // An idle connection holds no room for answers (144 bytes
            // each). Under load the list rarely empties; at worst (one
            // call at a time) this is one allocation more per call.
            self.answers = Vec::new();
        }
        self.sweep_at = self.answers.len() * 2;
        // The oldest answer may have changed: watch the new one.
        self.watch = None;
    }

    /// Ready (after a sweep) once the oldest answer has settled.
    fn poll_sweep(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if let Some(watch) = &self.watch {
            if !watch.fired.load(std::sync::atomic::Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        let Some(oldest) = self.answers.first_mut() else {
            return Poll::Pending;
        };
        let watch = Arc::new(OldestWatch {
            fired: std::sync::atomic::AtomicBool::new(false),
            task: cx.waker().clone(),
        });
        let waker = std::task::Waker::from(watch.clone());
        if oldest
            .poll_settled(&mut std::task::Context::from_waker(&waker))
            .is_pending()
        {
            self.watch = Some(watch);
            return Poll::Pending;
        }
        self.sweep();
        Poll::Ready(())
    }

    /// Waits until the client has acknowledged every answer.
    async fn acknowledged(self) {
        futures::future::join_all(self.answers.into_iter().map(SendHalf::acknowledged)).await;
    }
}

/// Applies one control-stream frame: `Ok(true)` when the client closed the
/// stream, `Err` with what the client did wrong.
fn on_control_frame(
    book: &mut CallBook<AbortHandle>,
    frame: Result<Option<Frame>, RpcError>,
) -> Result<bool, String> {
    match frame {
        Ok(Some(Frame::Cancel(id))) => match book.cancel(id) {
            Cancel::Stop(task) => {
                task.abort();
                Ok(false)
            }
            Cancel::Nothing => Ok(false),
            Cancel::Overflow => Err("client cancelled more calls than it may open".into()),
        },
        Ok(None) => Ok(true),
        Ok(Some(other)) => Err(format!("unexpected {other:?} on the control stream")),
        Err(e) => Err(format!("control stream: {e}")),
    }
}

/// The next frame of the control stream; never resolves while there is none.
async fn next_control_frame(control: &mut Option<FrameReader>) -> Result<Option<Frame>, RpcError> {
    match control {
        Some(reader) => reader.next_frame().await,
        None => std::future::pending().await,
    }
}
