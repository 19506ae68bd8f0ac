//! Serving one call: one QUIC bidirectional stream.
//!
//! The request side is read by this task; the handler runs in it too, so a
//! cancelled call (client reset), a passed deadline or a panic all end the
//! handler by dropping its future, and the response side is reset or
//! given a terminal status accordingly.
//!
//! Every call's state machine is allocated for it, and an idle streaming
//! call keeps its state for as long as it stays open, so the steps are
//! written to keep that state small: they borrow the stream's halves, the
//! answer is settled synchronously before it is written, and the steps
//! are functions returning an `async` block (whose state keeps each
//! argument once; an `async fn` keeps its arguments and a copy of each).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt};
use s2n_quic::stream::BidirectionalStream;
use tokio::time::{sleep_until, Instant};

use super::context::CallInfo;
use super::handler::{Handler, RequestStream, ResponseItems};
use super::ConnContext;
use crate::io::{FrameReader, Outgoing, SendHalf, Write};
use crate::wire::{reset, Frame, RequestHeader, Status, StatusCode, FRAME_HEADER_LEN};
use crate::RpcError;

/// Request messages queued between the stream and a streaming handler.
///
/// The queue is `futures`' channel rather than tokio's: tokio's allocates
/// room for 32 messages with the channel, about 1.3 KB that every open
/// stream would hold, where `futures`' allocates a node per message
/// queued. Seven nodes at most are also what glibc's per-thread cache
/// keeps of one size, so they are recycled there: per message uploaded,
/// the server ran about 250 instructions fewer than with tokio's channel
/// of 16, and about 150 more with this one at 16 (callgrind, 100,000
/// messages of 1 KiB).
const REQUEST_QUEUE: usize = 7;

/// A call's finished response stream whose last bytes may not have reached
/// the client yet: closing the connection now would discard them.
pub(crate) type Answered = Option<SendHalf>;

/// Serves one call. Returns the finished response stream of a call that was
/// answered (not of one refused, reset or abandoned), so a connection that
/// is closing can wait for the client to have its answer.
pub(crate) fn serve_call(
    stream: BidirectionalStream,
    ctx: Arc<ConnContext>,
    peer: Option<Arc<[u8]>>,
    remote: Option<std::net::SocketAddr>,
    draining: bool,
) -> impl Future<Output = Answered> {
    // Split before the state machine is built, which then holds the halves
    // in place: an async block uses what it captures where it lies, where
    // an async fn's state would keep its arguments and a copy of each.
    let (rx, tx) = stream.split();
    let mut reader = FrameReader::new(rx, ctx.decoder);
    let mut tx = SendHalf::new(tx);
    async move {
        let first = reader.next_frame().await;
        let (header, handler) = match admit(first, draining, &ctx) {
            Ok(admitted) => admitted,
            Err(None) => {
                tx.reset(reset::PROTOCOL);
                return None;
            }
            // Refusals are boxed (as is streaming below) to keep the unary
            // path's state machine small: it is moved into every call's task.
            Err(Some(status)) => {
                Box::pin(reject(&mut reader, &mut tx, &status)).await;
                return None;
            }
        };
        let deadline = (header.deadline_ms > 0)
            .then(|| Instant::now() + std::time::Duration::from_millis(header.deadline_ms.into()));
        tracing::trace!(id = header.request_id, method = %header.method, kind = ?header.kind, "call");

        let single_request = header.kind.single_request();
        // One span per call (OpenTelemetry's RPC conventions name the
        // attributes); disabled spans cost a callsite check.
        let span = tracing::info_span!(
            "rpc.server",
            rpc.method = %header.method,
            rpc.request_id = header.request_id,
            rpc.kind = ?header.kind,
            net.peer = ?remote,
            rpc.status = tracing::field::Empty,
        );
        let call = Arc::new(CallInfo {
            peer_certificate: peer,
            ..header.into()
        });
        // The stream's halves stay here; the steps below borrow them, so each
        // nested state machine holds two pointers instead of its own copies
        // (the whole of this one is copied into its box for every call).
        let served = serve_admitted(
            call,
            handler,
            single_request,
            &mut reader,
            &mut tx,
            deadline,
        );
        let answered = if span.is_disabled() {
            served.await
        } else {
            tracing::Instrument::instrument(served, span).await
        };
        answered.then_some(tx)
    }
}

/// Serves an admitted call; whether its answer was written.
// An async block on purpose (see the module's notes on state size).
#[allow(clippy::manual_async_fn)]
fn serve_admitted<'a>(
    call: Arc<CallInfo>,
    handler: Handler,
    single_request: bool,
    reader: &'a mut FrameReader,
    tx: &'a mut SendHalf,
    deadline: Option<Instant>,
) -> impl Future<Output = bool> + 'a {
    async move {
        let record = CallRecord::start(&call);
        match (handler, single_request) {
            (Handler::Unary(f), true) => serve_unary(call, f, reader, tx, deadline, &record).await,
            (Handler::Streaming(f), _) => {
                Box::pin(serve_streaming(call, f, reader, tx, deadline, &record)).await
            }
            (Handler::Unary(_), false) => {
                let status = Status::new(
                    StatusCode::UnknownMethod,
                    format!(
                        "{:?} is a unary method and cannot take a request stream",
                        call.method
                    ),
                );
                Box::pin(reject(reader, tx, &status)).await;
                false
            }
        }
    }
}

/// Decides on a call from its first frame: its header and handler, or the
/// status to refuse it with (`None`: the stream ended before any frame).
fn admit(
    first: Result<Option<Frame>, RpcError>,
    draining: bool,
    ctx: &ConnContext,
) -> Result<(RequestHeader, Handler), Option<Status>> {
    let header = match first {
        Ok(Some(Frame::Header(h))) => h,
        Ok(None) => return Err(None),
        Ok(Some(other)) => {
            return Err(Some(Status::new(
                StatusCode::ProtocolError,
                format!("expected a header frame, got {other:?}"),
            )))
        }
        Err(e) => return Err(Some(error_status(&e))),
    };
    if draining {
        return Err(Some(Status::new(
            StatusCode::Unavailable,
            "server is shutting down",
        )));
    }
    match ctx.registry.get(&header.method) {
        Some(handler) => Ok((header, handler)),
        None => Err(Some(Status::new(
            StatusCode::UnknownMethod,
            format!("unknown method {:?}", header.method),
        ))),
    }
}

/// Answers with a status without running anything, and stops reading.
async fn reject(reader: &mut FrameReader, tx: &mut SendHalf, status: &Status) {
    let code =
        if status.code == StatusCode::ProtocolError || status.code == StatusCode::MessageTooLarge {
            reset::PROTOCOL
        } else {
            reset::CANCELLED
        };
    let _ = write_status(tx, status).await;
    reader.stop(code);
}

fn error_status(e: &RpcError) -> Status {
    match e {
        RpcError::MessageTooLarge { .. } => Status::new(StatusCode::MessageTooLarge, e.to_string()),
        RpcError::ProtocolError(_) => Status::new(StatusCode::ProtocolError, e.to_string()),
        _ => Status::new(StatusCode::Internal, e.to_string()),
    }
}

async fn write_status(tx: &mut SendHalf, status: &Status) -> Result<(), RpcError> {
    let mut buf = BytesMut::with_capacity(FRAME_HEADER_LEN + 1 + status.message.len());
    status.encode(&mut buf);
    tx.send(buf.freeze()).await?;
    tx.finish()
}

/// Reads the single request message of a unary or server-streaming call: `Message, End`.
async fn read_single_request(reader: &mut FrameReader) -> Result<Bytes, RpcError> {
    let msg = match reader.next_frame().await? {
        Some(Frame::Message(m)) => m,
        other => {
            return Err(RpcError::ProtocolError(format!(
                "expected one request message, got {other:?}"
            )))
        }
    };
    match reader.next_frame().await? {
        Some(Frame::End) => Ok(msg),
        other => Err(RpcError::ProtocolError(format!(
            "expected end of request, got {other:?}"
        ))),
    }
}

/// The text sent for a handler's `Err`: a `RemoteError` passes its message
/// through unchanged (so errors relayed across hops do not pile up prefixes).
fn handler_error_text(e: RpcError) -> String {
    match e {
        RpcError::RemoteError(message) => message,
        other => other.to_string(),
    }
}

/// The status for a unary handler's (or a layer's) `Err`: `Unavailable`,
/// `PermissionDenied` and `ResourceExhausted` keep their own status (the
/// handler says it did not run the call: callers and `ClusterClient` treat
/// it as never run), anything else is a handler error.
fn handler_error_status(e: RpcError) -> Status {
    match e {
        RpcError::Unavailable(reason) => Status::new(StatusCode::Unavailable, reason),
        RpcError::PermissionDenied(reason) => Status::new(StatusCode::PermissionDenied, reason),
        RpcError::ResourceExhausted(reason) => Status::new(StatusCode::ResourceExhausted, reason),
        other => Status::new(StatusCode::HandlerError, handler_error_text(other)),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    format!("handler panicked: {text}")
}

/// How a call ended before its handler finished.
enum Interrupted {
    /// The client reset its side: it no longer wants the answer.
    Cancelled,
    /// The client broke the framing rules mid-call.
    Protocol(RpcError),
    /// The deadline from the request header passed.
    Deadline,
    /// Writing the answer failed: the client stopped reading or the
    /// connection is gone.
    Aborted(RpcError),
}

/// A unary request as its handler's vector: taken over when it owns its
/// buffer, otherwise copied with one byte to spare, so that a typed
/// handler's answer written in this buffer takes its tag byte (the typed
/// response envelope) without growing it.
fn request_vec(request: Bytes) -> Vec<u8> {
    if request.is_unique() {
        return Vec::from(request);
    }
    let mut vec = Vec::with_capacity(request.len() + 1);
    vec.extend_from_slice(&request);
    vec
}

// An async block on purpose (see the module's notes on state size).
#[allow(clippy::manual_async_fn)]
fn serve_unary<'a>(
    call: Arc<CallInfo>,
    f: Arc<super::handler::UnaryFn>,
    reader: &'a mut FrameReader,
    tx: &'a mut SendHalf,
    deadline: Option<Instant>,
    record: &'a CallRecord,
) -> impl Future<Output = bool> + 'a {
    async move {
        let request = match read_single_request(reader).await {
            Ok(m) => m,
            Err(e) => {
                Box::pin(reject(reader, tx, &error_status(&e))).await;
                return false;
            }
        };
        record.request_size(request.len());
        let handler = CallInfo::scope(
            call.clone(),
            AssertUnwindSafe(f(request_vec(request))).catch_unwind(),
        );
        let mut handler = std::pin::pin!(handler);
        let mut client_open = true;
        // A handler that answers at once needs no deadline timer and no watch
        // on the request side: try it before arming either.
        let outcome = if let Poll::Ready(result) = futures::poll!(handler.as_mut()) {
            Ok(result)
        } else {
            // The waiting state (timer, request-side watch) lives in its own
            // allocation, so calls answered at once do not carry it.
            Box::pin(wait_for_handler(
                handler.as_mut(),
                reader,
                deadline,
                &mut client_open,
            ))
            .await
        };
        let trailers = super::context::take_trailers(handler);
        let outcome = match outcome {
            Ok(Ok(Ok(response))) => Ok((Some(response), Status::ok())),
            Ok(Ok(Err(e))) => Ok((None, handler_error_status(e))),
            Ok(Err(panic)) => Ok((
                None,
                Status::new(StatusCode::Internal, panic_message(&*panic)),
            )),
            Err(interrupted) => Err(interrupted),
        };
        let ending = settle(&call, BytesMut::new(), outcome, trailers, record);
        conclude(reader, tx, ending, client_open).await
    }
}

/// Waits for a unary handler that did not answer at once, watching the
/// request side (a reset cancels the call) and the deadline.
async fn wait_for_handler<H: Future>(
    mut handler: Pin<&mut H>,
    reader: &mut FrameReader,
    deadline: Option<Instant>,
    client_open: &mut bool,
) -> Result<H::Output, Interrupted> {
    loop {
        tokio::select! {
            biased;
            result = &mut handler => return Ok(result),
            closed = reader.closed(), if *client_open => match closed {
                Ok(()) => *client_open = false,
                Err(RpcError::ProtocolError(m)) => return Err(Interrupted::Protocol(RpcError::ProtocolError(m))),
                Err(_) => return Err(Interrupted::Cancelled),
            },
            _ = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => return Err(Interrupted::Deadline),
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86400 * 365)
}

/// Feeds request messages to the handler's queue; resolves when the client
/// closes its side (FIN, `Ok`) or abandons the call (reset, `Err`).
async fn pump_requests(
    reader: &mut FrameReader,
    mut queue: mpsc::Sender<Vec<u8>>,
    single: bool,
) -> Result<(), Interrupted> {
    let interrupted = |e: RpcError| match e {
        e @ (RpcError::ProtocolError(_) | RpcError::MessageTooLarge { .. }) => {
            Interrupted::Protocol(e)
        }
        _ => Interrupted::Cancelled,
    };
    if single {
        let msg = read_single_request(reader).await.map_err(interrupted)?;
        let _ = queue.send(Vec::from(msg)).await;
    } else {
        loop {
            match reader.next_frame().await.map_err(interrupted)? {
                // A handler that dropped its request stream no longer cares; keep draining.
                Some(Frame::Message(m)) => {
                    let _ = queue.send(Vec::from(m)).await;
                }
                Some(Frame::End) => break,
                None => {
                    return Err(Interrupted::Protocol(RpcError::ProtocolError(
                        "request stream ended without an end frame".into(),
                    )))
                }
                Some(other) => {
                    return Err(Interrupted::Protocol(RpcError::ProtocolError(format!(
                        "unexpected {other:?} in a request stream"
                    ))))
                }
            }
        }
    }
    drop(queue);
    reader.closed().await.map_err(interrupted)
}

/// Runs the handler and writes its items. Returns the terminal status;
/// frames not yet written are left in `out` so the status can share their write.
async fn respond(
    f: Arc<super::handler::StreamingFn>,
    requests: RequestStream,
    tx: &mut SendHalf,
    out: &mut BytesMut,
) -> Result<Status, RpcError> {
    let items: ResponseItems = match AssertUnwindSafe(f(requests)).catch_unwind().await {
        Ok(Ok(items)) => items,
        Ok(Err(refused)) => return Ok(handler_error_status(refused)),
        Err(panic) => return Ok(Status::new(StatusCode::Internal, panic_message(&*panic))),
    };
    let items = AssertUnwindSafe(items)
        .catch_unwind()
        .map(|item| match item {
            Ok(Ok(message)) => Ok(Outgoing::Message(message)),
            Ok(Err(e)) => Ok(Outgoing::Error(handler_error_text(e))),
            Err(panic) => Err(panic),
        });
    Ok(match tx.send_all(out, items).await? {
        Ok(()) => Status::ok(),
        Err(panic) => Status::new(StatusCode::Internal, panic_message(&*panic)),
    })
}

// An async block on purpose (see the module's notes on state size).
#[allow(clippy::manual_async_fn)]
fn serve_streaming<'a>(
    call: Arc<CallInfo>,
    f: Arc<super::handler::StreamingFn>,
    reader: &'a mut FrameReader,
    tx: &'a mut SendHalf,
    deadline: Option<Instant>,
    record: &'a CallRecord,
) -> impl Future<Output = bool> + 'a {
    async move {
        // Its one sender has a slot of its own on top of the buffer.
        let (queue, requests) = mpsc::channel(REQUEST_QUEUE - 1);
        let requests = RequestStream::new(requests);
        let single = call.kind.single_request();
        let mut out = BytesMut::new();
        let outcome = {
            let pump = pump_requests(reader, queue, single);
            let respond = CallInfo::scope(call.clone(), respond(f, requests, tx, &mut out));
            let mut pump = std::pin::pin!(pump);
            let mut respond = std::pin::pin!(respond);
            let mut client_open = true;
            let outcome = loop {
                tokio::select! {
                    biased;
                    status = &mut respond => break Ok((status, client_open)),
                    pumped = &mut pump, if client_open => match pumped {
                        Ok(()) => client_open = false,
                        Err(i) => break Err((i, client_open)),
                    },
                    _ = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => break Err((Interrupted::Deadline, true)),
                }
            };
            (outcome, super::context::take_trailers(respond))
        };
        let (outcome, trailers) = outcome;
        let (outcome, client_open) = match outcome {
            Ok((Ok(status), client_open)) => (Ok((None, status)), client_open),
            Ok((Err(e), client_open)) => (Err(Interrupted::Aborted(e)), client_open),
            Err((interrupted, client_open)) => (Err(interrupted), client_open),
        };
        let ending = settle(&call, out, outcome, trailers, record);
        conclude(reader, tx, ending, client_open).await
    }
}

/// How a call ends, settled once its outcome is known.
enum Ending {
    /// The response side is reset: the call was abandoned.
    Reset,
    /// The call is refused with this status, and reading stops: the
    /// client broke the framing rules.
    Refuse(Status),
    /// The final answer (`[MESSAGE] [TRAILERS] STATUS` after whatever the
    /// call had left unwritten), then FIN.
    Answer(Write),
}

/// The one settlement of every call: logs and records how it ended and
/// encodes its final answer after whatever `out` holds. Synchronous, so
/// that the call's state machine does not carry it while it writes.
fn settle(
    call: &CallInfo,
    mut out: BytesMut,
    outcome: Result<(Option<Vec<u8>>, Status), Interrupted>,
    trailers: crate::wire::Metadata,
    record: &CallRecord,
) -> Ending {
    let (response, status) = match outcome {
        Ok(answer) => answer,
        Err(Interrupted::Aborted(e)) => {
            tracing::debug!(method = %call.method, "response stream aborted: {e}");
            return Ending::Reset;
        }
        Err(Interrupted::Cancelled) => {
            tracing::debug!(method = %call.method, "call cancelled by client");
            return Ending::Reset;
        }
        Err(Interrupted::Protocol(e)) => return Ending::Refuse(error_status(&e)),
        Err(Interrupted::Deadline) => (
            None,
            Status::new(StatusCode::DeadlineExceeded, "deadline exceeded"),
        ),
    };
    if status.code == StatusCode::Internal {
        tracing::warn!(method = %call.method, "{}", status.message);
    }
    tracing::Span::current().record("rpc.status", tracing::field::debug(status.code));
    record.ended(status.code, response.as_ref().map(Vec::len));
    let fits = crate::wire::header::metadata_fits(&trailers)
        && crate::wire::header::metadata_len(&trailers) <= crate::config::DEFAULT_MAX_HEADER_SIZE;
    if !fits {
        tracing::warn!(method = %call.method, "trailers over the header limit dropped");
    }
    let trailers = (fits && !trailers.is_empty()).then_some(Frame::Trailers(trailers));
    let tail = |out: &mut BytesMut| {
        if let Some(trailers) = &trailers {
            trailers.encode(out);
        }
        status.encode(out)
    };
    Ending::Answer(match response {
        Some(response) => Write::message(out, response, tail),
        None => {
            tail(&mut out);
            Write::One(crate::io::gathered(out))
        }
    })
}

/// The one tail of every call: writes the final answer and FIN, or resets
/// or refuses an interrupted call; then waits for the client to finish
/// its side (`client_open`) so the stream is freed. Returns whether the
/// answer was written (its send half is then kept, see [`Answered`]).
async fn conclude(
    reader: &mut FrameReader,
    tx: &mut SendHalf,
    mut ending: Ending,
    client_open: bool,
) -> bool {
    // Matched by reference: the answer is written from where it lies.
    let answer = match &mut ending {
        Ending::Reset => {
            tx.reset(reset::CANCELLED);
            return false;
        }
        Ending::Refuse(status) => {
            Box::pin(reject(reader, tx, status)).await;
            return false;
        }
        Ending::Answer(answer) => answer,
    };
    if tx.write(answer).await.is_err() || tx.finish().is_err() {
        return false;
    }
    if client_open {
        let _ = reader.closed().await;
    }
    true
}

/// What the call metrics need to know of one call (see `crate::telemetry`);
/// recorded when dropped, whatever way the call ended. Inert (no clock
/// read, no labels) unless metrics are enabled.
pub(crate) struct CallRecord {
    /// The call and when it was admitted; `None` while metrics are off.
    started: Option<(Arc<CallInfo>, std::time::Instant)>,
    /// The final status's byte; `NONE` until the call is answered.
    status: std::sync::atomic::AtomicU16,
    request: std::sync::atomic::AtomicUsize,
    response: std::sync::atomic::AtomicUsize,
}

impl CallRecord {
    const NONE: u16 = u16::MAX;

    fn start(call: &Arc<CallInfo>) -> Self {
        let started =
            crate::telemetry::is_enabled().then(|| (call.clone(), std::time::Instant::now()));
        if started.is_some() {
            crate::telemetry::active_calls(1.0);
        }
        Self {
            started,
            status: std::sync::atomic::AtomicU16::new(Self::NONE),
            request: std::sync::atomic::AtomicUsize::new(usize::MAX),
            response: std::sync::atomic::AtomicUsize::new(usize::MAX),
        }
    }

    fn request_size(&self, bytes: usize) {
        if self.started.is_some() {
            self.request
                .store(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn ended(&self, code: StatusCode, response: Option<usize>) {
        if self.started.is_some() {
            use std::sync::atomic::Ordering::Relaxed;
            self.status.store(u16::from(code.to_byte()), Relaxed);
            self.response.store(response.unwrap_or(usize::MAX), Relaxed);
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some((call, started)) = &self.started else {
            return;
        };
        let method = call.method.as_str();
        crate::telemetry::active_calls(-1.0);
        let status = match self.status.load(Relaxed) {
            Self::NONE => "cancelled",
            byte => crate::telemetry::status_label(StatusCode::from_byte(byte as u8)),
        };
        crate::telemetry::server_call(method, status, started.elapsed());
        let request = self.request.load(Relaxed);
        if request != usize::MAX {
            let response = self.response.load(Relaxed);
            crate::telemetry::server_sizes(
                method,
                request,
                (response != usize::MAX).then_some(response),
            );
        }
    }
}
