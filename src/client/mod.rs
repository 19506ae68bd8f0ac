//! [`RpcClient`]: one QUIC connection, one stream per call.
//!
//! The connection handle is cloned per call (an `Arc` clone), so opening a
//! stream takes no lock and any number of calls run concurrently, up to the
//! server's stream limit (further calls wait for a slot).

mod connection;
mod endpoint;
mod service;
mod streaming;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use s2n_quic::client::Connect;

pub use service::UnaryRequest;
pub use streaming::ResponseStream;

/// Unary payloads smaller than this are copied into the request buffer;
/// larger ones are sent as their own buffer.
const INLINE_PAYLOAD: usize = 4096;

use crate::io::{FrameReader, SendHalf};
use crate::wire::{
    encode_frame_header, CallKind, Frame, FrameDecoder, FrameType, Metadata, RequestHeader,
};
use crate::{RpcConfig, RpcError};
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
    pub fn call(
        &self,
        method: &str,
        params: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        self.call_with_timeout(method, params, self.inner.default_timeout)
    }

    /// Calls a unary method with its own timeout. The server is told the
    /// deadline and cancels the handler when it passes.
    pub fn call_with_timeout(
        &self,
        method: &str,
        params: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        self.call_with_metadata(method, params, Metadata::new(), timeout)
    }

    /// Calls a unary method with request metadata (trace context, tokens, ...).
    pub fn call_with_metadata(
        &self,
        method: &str,
        params: Vec<u8>,
        metadata: Metadata,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        let prepared = self
            .check_size(&params)
            .and_then(|()| self.header(method, CallKind::Unary, metadata, Some(timeout)));
        let this = self.clone();
        async move {
            let header = prepared?;
            // Boxed: the call's state machine is then built once, in place,
            // instead of being moved with every future that awaits it.
            let call = Box::pin(this.unary(header, params));
            match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(RpcError::Timeout),
            }
        }
    }

    async fn unary(&self, header: RequestHeader, params: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let (busy, stream_id, mut reader, mut tx) = self.open().await?;
        let mut head = BytesMut::with_capacity(
            3 * crate::wire::FRAME_HEADER_LEN
                + header.encoded_len()
                + if params.len() < INLINE_PAYLOAD {
                    params.len()
                } else {
                    0
                },
        );
        header.encode_frame(&mut head);
        encode_frame_header(FrameType::Message, params.len(), &mut head);
        let sent = if params.len() < INLINE_PAYLOAD {
            head.extend_from_slice(&params);
            encode_frame_header(FrameType::End, 0, &mut head);
            tx.send(head.freeze()).await
        } else {
            let mut end = BytesMut::with_capacity(crate::wire::FRAME_HEADER_LEN);
            encode_frame_header(FrameType::End, 0, &mut end);
            tx.send_vectored(&mut [head.freeze(), Bytes::from(params), end.freeze()])
                .await
        };
        // The request is complete: FIN now, so it travels with the request
        // and the server's call ends with its response. From here on a
        // dropped call is cancelled through the control stream.
        if let Err(send_error) = sent.and_then(|()| tx.finish()) {
            // The server may have answered (an unknown method, a refusal)
            // and stopped reading: its answer is the better explanation.
            // It always ends its side after answering, so this read ends.
            return match read_unary_response(&mut reader, &header.method).await {
                Err(RpcError::StreamError(_) | RpcError::ConnectionError(_)) => Err(send_error),
                answer => answer,
            };
        }
        let mut cancel = CancelOnDrop {
            stream_id,
            busy: &busy,
            armed: true,
        };
        let result = read_unary_response(&mut reader, &header.method).await;
        cancel.armed = false;
        reader.observe_fin();
        result
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

    /// [`open`](Self::open) for the streaming modes, which have no call
    /// deadline: waiting for a connection and a stream slot is bounded by
    /// the default timeout.
    async fn open_within_default_timeout(
        &self,
    ) -> Result<(Busy, u64, FrameReader, SendHalf), RpcError> {
        tokio::time::timeout(self.inner.default_timeout, self.open())
            .await
            .unwrap_or(Err(RpcError::Timeout))
    }

    fn header(
        &self,
        method: &str,
        kind: CallKind,
        metadata: Metadata,
        timeout: Option<Duration>,
    ) -> Result<RequestHeader, RpcError> {
        let header = RequestHeader {
            request_id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            kind,
            deadline_ms: timeout.map_or(0, |t| t.as_millis().clamp(1, u32::MAX as u128) as u32),
            method: method.to_owned(),
            metadata,
        };
        header.validate(self.inner.max_header_size)?;
        Ok(header)
    }

    fn check_size(&self, message: &[u8]) -> Result<(), RpcError> {
        if message.len() > self.inner.max_message_size {
            return Err(RpcError::MessageTooLarge {
                size: message.len(),
                limit: self.inner.max_message_size,
            });
        }
        Ok(())
    }

    /// Bidirectional streaming: sends `requests` while yielding responses.
    /// Upload and download run independently. Dropping the returned stream
    /// cancels the call on the server.
    pub async fn call_streaming<S>(
        &self,
        method: &str,
        requests: S,
    ) -> Result<ResponseStream, RpcError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let header = self.header(method, CallKind::Bidirectional, Metadata::new(), None)?;
        let (busy, _, reader, tx) = self.open_within_default_timeout().await?;
        Ok(ResponseStream::start(
            busy,
            header,
            reader,
            tx,
            requests,
            self.inner.max_message_size,
        ))
    }

    /// Server streaming: one request, a stream of responses.
    pub async fn call_server_streaming(
        &self,
        method: &str,
        request: Vec<u8>,
    ) -> Result<ResponseStream, RpcError> {
        self.check_size(&request)?;
        let header = self.header(method, CallKind::ServerStreaming, Metadata::new(), None)?;
        let (busy, _, reader, mut tx) = self.open_within_default_timeout().await?;
        let mut out = BytesMut::new();
        header.encode_frame(&mut out);
        Frame::Message(Bytes::from(request)).encode(&mut out);
        Frame::End.encode(&mut out);
        let sent = tx.send(out.freeze()).await;
        let responses = ResponseStream::new(busy, header.method, reader, tx);
        if let Err(send_error) = sent {
            return Err(responses.answer_after_send_error(send_error).await);
        }
        Ok(responses)
    }

    /// Client streaming: uploads `requests`, then returns the single
    /// response. Bounded by the default timeout.
    pub async fn call_client_streaming<S>(
        &self,
        method: &str,
        requests: S,
    ) -> Result<Vec<u8>, RpcError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let timeout = self.inner.default_timeout;
        let header = self.header(
            method,
            CallKind::ClientStreaming,
            Metadata::new(),
            Some(timeout),
        )?;
        let call = async {
            let (busy, _, reader, tx) = self.open().await?;
            let mut responses = ResponseStream::start(
                busy,
                header,
                reader,
                tx,
                requests,
                self.inner.max_message_size,
            );
            responses.single().await
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(RpcError::Timeout))
    }
}

/// Reads `Message, Status(Ok)` or an error status.
async fn read_unary_response(reader: &mut FrameReader, method: &str) -> Result<Vec<u8>, RpcError> {
    let mut response = None;
    loop {
        match reader.next_frame().await? {
            Some(Frame::Message(m)) if response.is_none() => response = Some(m),
            Some(Frame::Status(status)) => {
                if let Some(e) = RpcError::from_status(status, method) {
                    return Err(e);
                }
                return response.map(Vec::from).ok_or_else(|| {
                    RpcError::ProtocolError("unary call completed without a response".into())
                });
            }
            Some(Frame::Error(text)) => return Err(RpcError::RemoteError(text)),
            Some(other) => {
                return Err(RpcError::ProtocolError(format!(
                    "unexpected {other:?} in a unary response"
                )))
            }
            None => {
                return Err(RpcError::StreamError(
                    "response ended without a status".into(),
                ))
            }
        }
    }
}

/// Cancels a unary call whose request side is already finished, unless
/// disarmed: the call future was dropped (by a timeout or by its caller)
/// before the response arrived.
struct CancelOnDrop<'a> {
    stream_id: u64,
    busy: &'a Busy,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.busy.cancel(self.stream_id);
        }
    }
}
