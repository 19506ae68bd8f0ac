//! [`RpcClient`]: one QUIC connection, one stream per call.
//!
//! The connection handle is cloned per call (an `Arc` clone), so opening a
//! stream takes no lock and any number of calls run concurrently, up to the
//! server's stream limit (further calls wait for a slot).

mod connection;
mod endpoint;
pub(crate) mod pool;
pub(crate) mod retention;
mod service;
mod streaming;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use s2n_quic::client::Connect;

pub use service::UnaryRequest;
pub use streaming::ResponseStream;

use crate::call::RequestBody;
use crate::io::{FrameReader, SendHalf};
use crate::wire::{CallKind, FrameDecoder, Metadata, RequestHeader};
use crate::{Body, CallOptions, RpcConfig, RpcError};
use connection::{after_attempt, next_step, Busy, Conn, Link, LinkState, Step};

/// A client of one server. Cheap to clone; clones share the connection.
///
/// When the connection closes (the server restarted and sent a stateless
/// reset, the idle timeout passed, the server went away), calls in flight
/// on it fail with their typed error and the next call reconnects. Failed
/// reconnects are spaced out (100 ms doubling to 5 s, ±20 %); a call made
/// before the next attempt is due fails at once with
/// [`RpcError::Unavailable`] naming the last failure. Dropping the last
/// clone (and the last [`ResponseStream`]) closes the connection.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    link: Link,
    /// For reconnecting: the endpoint and its configuration.
    endpoint: Arc<endpoint::Endpoint>,
    config: RpcConfig,
    next_id: AtomicU64,
    decoder: FrameDecoder,
    default_timeout: Duration,
    max_message_size: usize,
    max_header_size: usize,
    remote: SocketAddr,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("remote", &self.inner.remote)
            .finish_non_exhaustive()
    }
}

/// Opens one connection to `addr` on `endpoint`.
async fn connect_once(
    endpoint: &Arc<endpoint::Endpoint>,
    addr: SocketAddr,
    config: &RpcConfig,
) -> Result<Arc<Conn>, RpcError> {
    let connect = Connect::new(addr).with_server_name(config.server_name());
    let connection = endpoint.quic().connect(connect).await?;
    if let Some(member) = config.expected_member {
        let certificate = connection
            .query_event_context(|slot: &crate::server::context::PeerCertificateSlot| {
                slot.0.clone()
            })
            .ok()
            .flatten();
        let credential = certificate.and_then(|der| {
            crate::cluster::membership::credential::MemberCredential::from_der(&der)
        });
        let speaks = match member {
            crate::config::ExpectedMember::At(addr) => {
                credential.is_some_and(|c| c.speaks_for(addr))
            }
            crate::config::ExpectedMember::Any => credential.is_some(),
        };
        if !speaks {
            connection.close(0u32.into());
            return Err(RpcError::TlsError(format!(
                "the server at {addr} is not {member:?}: its certificate is not a member \
                 certificate for it"
            )));
        }
    }
    Conn::start(
        connection,
        endpoint.clone(),
        config.idle_timeout(),
        config.keep_alive_interval().is_some(),
    )
}

impl RpcClient {
    /// Connects to `addr`, verifying the server's certificate against the
    /// configured CA and server name.
    ///
    /// # Errors
    ///
    /// [`RpcError::ConfigError`] for unreadable TLS material or a bad bind
    /// address, [`RpcError::IoError`] if the local endpoint cannot start,
    /// [`RpcError::TlsError`] if the handshake fails (untrusted
    /// certificate, wrong name), [`RpcError::Unavailable`] if the server
    /// refused the connection (over its connection limit, shutting down),
    /// [`RpcError::ConnectionError`] for other connection failures
    /// (handshake timeout).
    pub async fn connect(addr: SocketAddr, config: RpcConfig) -> Result<Self, RpcError> {
        let endpoint = endpoint::endpoint_for(&config)?;
        let conn = connect_once(&endpoint, addr, &config).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                link: Link::new(LinkState::Up(conn)),
                endpoint,
                next_id: AtomicU64::new(1),
                decoder: FrameDecoder::new(config.max_message_size(), config.max_header_size()),
                default_timeout: config.default_timeout(),
                max_message_size: config.max_message_size(),
                max_header_size: config.max_header_size(),
                remote: addr,
                config,
            }),
        })
    }

    /// The id the next call will carry in its request header. Ids increase
    /// by one per call; they appear in server traces, which helps match
    /// traffic to calls.
    pub fn next_id(&self) -> u64 {
        self.inner.next_id.load(Ordering::Relaxed)
    }

    /// The server address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.remote
    }

    /// The local address of this client's QUIC endpoint (clients sharing
    /// an endpoint report the same one).
    ///
    /// # Errors
    ///
    /// [`RpcError::IoError`] if the endpoint's socket cannot tell its address.
    pub fn local_addr(&self) -> Result<SocketAddr, RpcError> {
        Ok(self.inner.endpoint.quic().local_addr()?)
    }

    /// Whether the client's current connection is open. A closed one (or
    /// none, after a failed reconnect) is replaced on the next call.
    pub fn is_connected(&self) -> bool {
        matches!(&*self.inner.link.borrow(), LinkState::Up(conn) if conn.is_open())
    }

    /// The current open connection, reconnecting if it has closed.
    async fn conn(&self) -> Result<Arc<Conn>, RpcError> {
        if let LinkState::Up(conn) = &*self.inner.link.borrow() {
            if conn.is_open() {
                return Ok(conn.clone());
            }
        }
        loop {
            let mut changes = self.inner.link.subscribe();
            let mut step = Step::Wait;
            self.inner.link.send_if_modified(|state| {
                let (next, changed) = next_step(state, tokio::time::Instant::now());
                step = next;
                changed
            });
            match step {
                Step::Use(conn) => return Ok(conn),
                Step::Connect { failures } => self.reconnect(failures),
                Step::Wait => {}
                Step::Fail { error, retry_at } => {
                    return Err(RpcError::Unavailable(format!(
                        "not connected to {}: {error}; next attempt in {} ms",
                        self.inner.remote,
                        retry_at
                            .saturating_duration_since(tokio::time::Instant::now())
                            .as_millis()
                    )))
                }
            }
            // The link outlives this call (`self` holds it).
            let _ = changes.changed().await;
        }
    }

    /// Starts a connection attempt in the background; its outcome is
    /// published on the link. The attempt is bounded by the handshake timeout.
    fn reconnect(&self, failures: u32) {
        let inner = Arc::downgrade(&self.inner);
        let (endpoint, addr, config) = (
            self.inner.endpoint.clone(),
            self.inner.remote,
            self.inner.config.clone(),
        );
        tokio::spawn(async move {
            let result = connect_once(&endpoint, addr, &config).await;
            if let Err(e) = &result {
                tracing::debug!(%addr, "reconnect failed: {e}");
            }
            if let Some(inner) = inner.upgrade() {
                inner.link.send_replace(after_attempt(
                    result,
                    failures,
                    tokio::time::Instant::now(),
                    rand::random(),
                ));
            }
        });
    }

    /// Calls a unary method, waiting at most the configured default timeout
    /// ([`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT) unless changed).
    ///
    /// The returned future owns what it needs (it does not borrow the
    /// client), so it can be spawned or joined freely.
    ///
    /// # Errors
    ///
    /// [`RpcError::MessageTooLarge`] for `params` over the configured
    /// limit (nothing is sent); [`RpcError::ProtocolError`] for a method
    /// name or metadata the header cannot carry; [`RpcError::Timeout`]
    /// when the timeout passes (waiting for a connection or a stream slot
    /// included); the server's answer ([`RpcError::RemoteError`],
    /// [`RpcError::UnknownMethod`], [`RpcError::Unavailable`] while it
    /// drains); connection errors as [`connect`](Self::connect) lists them.
    pub fn call(
        &self,
        method: &str,
        params: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        self.call_with_timeout(method, params, self.inner.default_timeout)
    }

    /// Calls a unary method with its own timeout. The server is told the
    /// deadline and cancels the handler when it passes.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_with_timeout(
        &self,
        method: &str,
        params: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        self.call_with_metadata(method, params, Metadata::new(), timeout)
    }

    /// Calls a unary method with request metadata (trace context, tokens, ...).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_with_metadata(
        &self,
        method: &str,
        params: Vec<u8>,
        metadata: Metadata,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        self.single(
            CallKind::Unary,
            method,
            (metadata, None),
            timeout,
            RequestBody::Message(params),
        )
    }

    /// Starts a call of `method` as `options` describe, sending `body`,
    /// and returns its responses: the one path every call mode takes.
    ///
    /// The request header carries `options`' metadata and its timeout as
    /// the call's deadline (none if unset). Waiting for a connection and a
    /// stream slot, and sending a [`Body::Message`], are bounded by the
    /// timeout, or the configured default timeout if unset. A
    /// [`Body::Message`] is announced as a server-streaming call, a
    /// [`Body::Stream`] as a bidirectional one; read one response with
    /// [`ResponseStream::single`] for unary or client-streaming use.
    ///
    /// ```no_run
    /// # async fn f(client: rpcnet::RpcClient) -> Result<(), rpcnet::RpcError> {
    /// use std::time::Duration;
    /// use rpcnet::{Body, CallOptions};
    ///
    /// let options = CallOptions::new()
    ///     .with_timeout(Duration::from_secs(2))
    ///     .with_metadata("trace-id", b"abc".to_vec());
    /// let mut responses = client.invoke("echo", &options, Body::Message(b"hi".to_vec())).await?;
    /// let answer = responses.single().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RpcError::MessageTooLarge`] for a [`Body::Message`] over the
    /// configured limit (an oversized streamed request ends the stream with
    /// it instead); [`RpcError::ProtocolError`] for a method name or
    /// metadata the header cannot carry;
    /// [`RpcError::Timeout`] as above; the server's refusal if sending a
    /// single message failed because it answered first; connection errors
    /// as [`connect`](Self::connect) lists them.
    pub fn invoke(
        &self,
        method: &str,
        options: &CallOptions,
        body: Body,
    ) -> impl Future<Output = Result<ResponseStream, RpcError>> + Send + 'static {
        self.invoke_body(method, options, body.into())
    }

    /// [`invoke`](Self::invoke) with the body as it is sent.
    pub(crate) fn invoke_body(
        &self,
        method: &str,
        options: &CallOptions,
        body: RequestBody,
    ) -> impl Future<Output = Result<ResponseStream, RpcError>> + Send + 'static {
        let prepared = self.prepare(
            body.streaming_kind(),
            method,
            (options.metadata().clone(), options.schema()),
            options.timeout(),
            &body,
        );
        let bound = options.timeout().unwrap_or(self.inner.default_timeout);
        let this = self.clone();
        async move {
            let header = prepared?;
            tokio::time::timeout(bound, this.start(header, body))
                .await
                .unwrap_or(Err(RpcError::Timeout))
        }
    }

    /// A call read as one response (unary, client streaming), bounded as a
    /// whole by `timeout`, which the server is told as the deadline;
    /// `labels` are the header's metadata and schema hash.
    pub(crate) fn single(
        &self,
        kind: CallKind,
        method: &str,
        labels: (Metadata, Option<u64>),
        timeout: Duration,
        body: RequestBody,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        let answer = self.single_bytes(kind, method, labels, timeout, body);
        async move { answer.await.map(Vec::from) }
    }

    /// [`single`](Self::single) answering the bytes received (the typed
    /// layer decodes them in place).
    pub(crate) fn single_bytes(
        &self,
        kind: CallKind,
        method: &str,
        labels: (Metadata, Option<u64>),
        timeout: Duration,
        body: RequestBody,
    ) -> impl Future<Output = Result<Bytes, RpcError>> + Send + 'static {
        let prepared = self.prepare(kind, method, labels, Some(timeout), &body);
        let this = self.clone();
        let started =
            crate::telemetry::is_enabled().then(|| (method.to_owned(), std::time::Instant::now()));
        async move {
            let header = prepared?;
            // Boxed: the call's state machine is then built once, in place,
            // instead of being moved with every future that awaits it.
            let call =
                Box::pin(async move { this.start(header, body).await?.single_bytes().await });
            let outcome = tokio::time::timeout(timeout, call)
                .await
                .unwrap_or(Err(RpcError::Timeout));
            if let Some((method, started)) = started {
                crate::telemetry::client_call(&method, &outcome, started.elapsed());
            }
            outcome
        }
    }

    /// Checks what can be checked before anything is sent, and builds the
    /// request header.
    fn prepare(
        &self,
        kind: CallKind,
        method: &str,
        (metadata, schema): (Metadata, Option<u64>),
        timeout: Option<Duration>,
        body: &RequestBody,
    ) -> Result<RequestHeader, RpcError> {
        if let Some(size) = body.message_len() {
            if size > self.inner.max_message_size {
                return Err(RpcError::MessageTooLarge {
                    size,
                    limit: self.inner.max_message_size,
                });
            }
        }
        let header = RequestHeader {
            request_id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            kind,
            deadline_ms: timeout.map_or(0, |t| t.as_millis().clamp(1, u32::MAX as u128) as u32),
            method: method.to_owned(),
            metadata,
            schema,
        };
        header.validate(self.inner.max_header_size)?;
        Ok(header)
    }

    /// Opens the call's stream and sends `body`: the unbounded core of
    /// [`invoke`](Self::invoke).
    async fn start(
        &self,
        header: RequestHeader,
        body: RequestBody,
    ) -> Result<ResponseStream, RpcError> {
        let (busy, stream_id, reader, tx) = self.open().await?;
        ResponseStream::send(
            busy,
            stream_id,
            header,
            reader,
            tx,
            body,
            self.inner.max_message_size,
        )
        .await
    }

    /// Opens a bidirectional call stream on the current connection
    /// (reconnecting if it has closed); returns its QUIC stream id too.
    ///
    /// A connection found closed only when the stream cannot be opened is
    /// replaced once: nothing of the call reached the server, so trying
    /// again on a new connection is safe.
    async fn open(&self) -> Result<(Busy, u64, FrameReader, SendHalf), RpcError> {
        let mut retried = false;
        loop {
            let busy = self.conn().await?.busy();
            match busy.conn().open().await {
                Ok(stream) => {
                    let id = stream.id();
                    let (rx, tx) = stream.split();
                    return Ok((
                        busy,
                        id,
                        FrameReader::new(rx, self.inner.decoder),
                        SendHalf::new(tx),
                    ));
                }
                Err(e) => {
                    busy.conn().mark_closed();
                    if retried {
                        return Err(e);
                    }
                    retried = true;
                }
            }
        }
    }

    /// Bidirectional streaming: sends `requests` while yielding responses.
    /// Upload and download run independently. Dropping the returned stream
    /// cancels the call on the server. The call has no deadline; waiting
    /// for a connection and a stream slot is bounded by the default timeout.
    /// With metadata or a deadline:
    /// [`call_streaming_with_options`](Self::call_streaming_with_options).
    ///
    /// # Errors
    ///
    /// As [`invoke`](Self::invoke); errors after the start arrive in the stream.
    pub async fn call_streaming<S>(
        &self,
        method: &str,
        requests: S,
    ) -> Result<ResponseStream, RpcError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        self.call_streaming_with_options(method, requests, &CallOptions::new())
            .await
    }

    /// Server streaming: one request, a stream of responses. The call has
    /// no deadline; waiting for a connection and a stream slot is bounded
    /// by the default timeout. With metadata or a deadline:
    /// [`call_server_streaming_with_options`](Self::call_server_streaming_with_options).
    ///
    /// # Errors
    ///
    /// As [`invoke`](Self::invoke); errors after the start arrive in the stream.
    pub async fn call_server_streaming(
        &self,
        method: &str,
        request: Vec<u8>,
    ) -> Result<ResponseStream, RpcError> {
        self.call_server_streaming_with_options(method, request, &CallOptions::new())
            .await
    }

    /// Client streaming: uploads `requests`, then returns the single
    /// response. Bounded by the default timeout, which the server is told
    /// as the deadline. With metadata or another timeout:
    /// [`call_client_streaming_with_options`](Self::call_client_streaming_with_options).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call); a request over the message size limit
    /// ends the call with [`RpcError::MessageTooLarge`].
    pub async fn call_client_streaming<S>(
        &self,
        method: &str,
        requests: S,
    ) -> Result<Vec<u8>, RpcError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        self.call_client_streaming_with_options(method, requests, &CallOptions::new())
            .await
    }
}
