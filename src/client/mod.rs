//! [`RpcClient`]: one QUIC connection, one stream per call.
//!
//! The connection handle is cloned per call (an `Arc` clone), so opening a
//! stream takes no lock and any number of calls run concurrently, up to the
//! server's stream limit (further calls wait for a slot).

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
use s2n_quic::connection::Handle;
use tokio::sync::mpsc;

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

/// A client connected to one server. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    handle: Handle,
    next_id: AtomicU64,
    decoder: FrameDecoder,
    default_timeout: Duration,
    max_message_size: usize,
    max_header_size: usize,
    remote: SocketAddr,
    /// Stream ids of dropped unary calls, for the control task.
    control: mpsc::Sender<u64>,
    // Kept alive for the connection's lifetime: incoming streams are refused
    // while it exists, and the endpoint task runs while the client exists.
    _acceptor: s2n_quic::connection::StreamAcceptor,
    _endpoint: Arc<endpoint::Endpoint>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("remote", &self.inner.remote)
            .finish_non_exhaustive()
    }
}

impl RpcClient {
    /// Connects to `addr`, verifying the server's certificate against the
    /// configured CA and server name.
    pub async fn connect(addr: SocketAddr, config: RpcConfig) -> Result<Self, RpcError> {
        let endpoint = endpoint::endpoint_for(&config)?;
        let connect = Connect::new(addr).with_server_name(config.server_name());
        let mut connection = endpoint.quic().connect(connect).await?;
        if config.keep_alive_interval().is_some() {
            connection.keep_alive(true)?;
        }
        let (handle, acceptor) = connection.split();
        let (control, cancels) = mpsc::channel(CANCEL_QUEUE);
        tokio::spawn(run_control(handle.clone(), cancels));
        Ok(Self {
            inner: Arc::new(Inner {
                control,
                handle,
                next_id: AtomicU64::new(1),
                decoder: FrameDecoder::new(config.max_message_size(), config.max_header_size()),
                default_timeout: config.default_timeout(),
                max_message_size: config.max_message_size(),
                max_header_size: config.max_header_size(),
                remote: addr,
                _acceptor: acceptor,
                _endpoint: endpoint,
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
    pub fn local_addr(&self) -> Result<SocketAddr, RpcError> {
        Ok(self.inner.handle.local_addr()?)
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
        let (stream_id, mut reader, mut tx) = self.open().await?;
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
        if params.len() < INLINE_PAYLOAD {
            head.extend_from_slice(&params);
            encode_frame_header(FrameType::End, 0, &mut head);
            tx.send(head.freeze()).await?;
        } else {
            let mut end = BytesMut::with_capacity(crate::wire::FRAME_HEADER_LEN);
            encode_frame_header(FrameType::End, 0, &mut end);
            tx.send_vectored(&mut [head.freeze(), Bytes::from(params), end.freeze()])
                .await?;
        }
        // The request is complete: FIN now, so it travels with the request
        // and the server's call ends with its response. From here on a
        // dropped call is cancelled through the control stream.
        tx.finish()?;
        let mut cancel = CancelOnDrop {
            stream_id,
            control: &self.inner.control,
            armed: true,
        };
        let result = read_unary_response(&mut reader, &header.method).await;
        cancel.armed = false;
        reader.observe_fin();
        result
    }

    /// Opens a bidirectional call stream; returns its QUIC stream id too.
    async fn open(&self) -> Result<(u64, FrameReader, SendHalf), RpcError> {
        let stream = self
            .inner
            .handle
            .clone()
            .open_bidirectional_stream()
            .await?;
        let id = stream.id();
        let (rx, tx) = stream.split();
        Ok((
            id,
            FrameReader::new(rx, self.inner.decoder),
            SendHalf::new(tx),
        ))
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
        let (_, reader, tx) = self.open().await?;
        Ok(ResponseStream::start(
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
        let (_, reader, mut tx) = self.open().await?;
        let mut out = BytesMut::new();
        header.encode_frame(&mut out);
        Frame::Message(Bytes::from(request)).encode(&mut out);
        Frame::End.encode(&mut out);
        tx.send(out.freeze()).await?;
        Ok(ResponseStream::new(header.method, reader, tx))
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
            let (_, reader, tx) = self.open().await?;
            let mut responses =
                ResponseStream::start(header, reader, tx, requests, self.inner.max_message_size);
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
    control: &'a mpsc::Sender<u64>,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            // A full queue means the connection is not draining its control
            // stream; the server's deadline still ends the handler.
            let _ = self.control.try_send(self.stream_id);
        }
    }
}

/// Cancels queued before the control task sends them.
const CANCEL_QUEUE: usize = 1024;

/// Sends `CANCEL` frames for dropped calls on the connection's one
/// unidirectional control stream, opened on first use. Ends when the client
/// is dropped (the queue closes) or the connection fails.
async fn run_control(mut handle: Handle, mut cancels: mpsc::Receiver<u64>) {
    let mut stream: Option<s2n_quic::stream::SendStream> = None;
    let mut buf = BytesMut::new();
    while let Some(id) = cancels.recv().await {
        Frame::Cancel(id).encode(&mut buf);
        while let Ok(id) = cancels.try_recv() {
            Frame::Cancel(id).encode(&mut buf);
        }
        let tx = match &mut stream {
            Some(tx) => tx,
            None => match handle.open_send_stream().await {
                Ok(tx) => stream.insert(tx),
                Err(_) => return,
            },
        };
        if tx.send(buf.split().freeze()).await.is_err() {
            return;
        }
    }
    if let Some(mut tx) = stream {
        let _ = tx.finish();
    }
}
