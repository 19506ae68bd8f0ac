//! One call's two sides once its stream is open: sending the request
//! (one message inline, or a stream uploaded by a task of its own) and
//! [`ResponseStream`], which reads the responses.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use tokio::task::{AbortHandle, JoinHandle};

use super::connection::Busy;
use crate::call::RequestBody;
use crate::io::{FrameReader, Outgoing, SendHalf, ZERO_COPY_THRESHOLD};
use crate::wire::{encode_frame_header, Frame, FrameType, RequestHeader, FRAME_HEADER_LEN};
use crate::RpcError;

/// The responses of a call, in order. Yields `Ok(message)` for each
/// response (empty messages included), `Err(RpcError::RemoteError)` for an
/// error item the handler yielded, and ends after the server's final
/// status (an error status is yielded as a last `Err`).
///
/// Dropping it before the end cancels the call: the server's handler is
/// dropped and the upload stops.
pub struct ResponseStream {
    method: String,
    reader: FrameReader,
    request: RequestSide,
    /// The call's QUIC stream, for cancelling it through the control stream.
    stream_id: u64,
    done: bool,
    /// Keeps the connection open (and alive) while the call runs.
    busy: Busy,
    /// Response metadata the handler set (`CallInfo::set_trailer`), once
    /// the call ended.
    trailers: crate::wire::Metadata,
}

/// Where the request side of a call stands.
enum RequestSide {
    /// Sent in full and finished (FIN travelled with it): a call dropped
    /// before its end is cancelled through the connection's control stream.
    Finished,
    /// Uploaded by a task, which hands the send half back (still open, so
    /// dropping it resets the stream) once it has sent the `End` frame.
    Uploading(JoinHandle<Result<SendHalf, RpcError>>, AbortHandle),
}

impl ResponseStream {
    /// Sends `body` after `header` on a just-opened call stream and returns
    /// the call's responses.
    ///
    /// A single message travels with the header and FIN in one write
    /// (`send_one`). A stream is uploaded by a task, so upload and download
    /// progress independently.
    ///
    /// # Errors
    /// If sending a single message fails, the server's answer when it gave
    /// one (it may have refused the call and stopped reading), otherwise
    /// the send error.
    pub(crate) async fn send(
        busy: Busy,
        stream_id: u64,
        header: RequestHeader,
        reader: FrameReader,
        tx: SendHalf,
        body: RequestBody,
        max_message_size: usize,
    ) -> Result<Self, RpcError> {
        let (method, request) = match body {
            RequestBody::Message(message) => {
                return Self::send_one(busy, stream_id, header, reader, tx, message).await;
            }
            RequestBody::Shared(message) => {
                return Self::send_one(busy, stream_id, header, reader, tx, message).await;
            }
            RequestBody::Stream(requests) => {
                let method = header.method.clone();
                let task = tokio::spawn(upload(header, tx, requests, max_message_size));
                let abort = task.abort_handle();
                (method, RequestSide::Uploading(task, abort))
            }
        };
        Ok(Self::new(busy, stream_id, method, reader, request))
    }

    /// Sends `header` and the single `message` with FIN, in one write (the
    /// unary fast path).
    async fn send_one(
        busy: Busy,
        stream_id: u64,
        header: RequestHeader,
        reader: FrameReader,
        mut tx: SendHalf,
        message: impl Into<bytes::Bytes> + AsRef<[u8]>,
    ) -> Result<Self, RpcError> {
        // Room for header, message (if copied in) and `End` frames.
        let len = message.as_ref().len();
        let inline = if len < ZERO_COPY_THRESHOLD { len } else { 0 };
        let mut out = BytesMut::with_capacity(3 * FRAME_HEADER_LEN + header.encoded_len() + inline);
        header.encode_frame(&mut out);
        let end = |out: &mut BytesMut| encode_frame_header(FrameType::End, 0, out);
        let sent = tx.send_message(out, message, end).await;
        // FIN now, so it travels with the request and the server's call
        // ends with its response.
        let finished = sent.and_then(|()| tx.finish());
        let responses = Self::new(
            busy,
            stream_id,
            header.method,
            reader,
            RequestSide::Finished,
        );
        match finished {
            Ok(()) => Ok(responses),
            Err(send_error) => Err(responses.answer_after_send_error(send_error).await),
        }
    }

    fn new(
        busy: Busy,
        stream_id: u64,
        method: String,
        reader: FrameReader,
        request: RequestSide,
    ) -> Self {
        Self {
            method,
            reader,
            request,
            stream_id,
            done: false,
            busy,
            trailers: Vec::new(),
        }
    }

    /// The response metadata the handler set (`CallInfo::set_trailer`),
    /// available once the stream has ended (empty before, and when the
    /// handler set none).
    pub fn trailers(&self) -> &crate::wire::Metadata {
        &self.trailers
    }

    /// The error to report when sending the request failed: the server's
    /// answer if it gave one (a refusal it sent before it stopped
    /// reading), otherwise `send_error`. The server always ends its side
    /// after answering, so this read ends.
    async fn answer_after_send_error(mut self, send_error: RpcError) -> RpcError {
        match self.next().await {
            Some(Err(RpcError::StreamError(_) | RpcError::ConnectionError(_)))
            | Some(Ok(_))
            | None => send_error,
            Some(Err(answer)) => answer,
        }
    }

    /// Reads exactly one response: the result of a unary or
    /// client-streaming call.
    ///
    /// # Errors
    /// The call's error ([`RpcError::RemoteError`] for a handler error,
    /// [`RpcError::UnknownMethod`], [`RpcError::Timeout`] for a passed
    /// deadline, ...); [`RpcError::ProtocolError`] if the call ended with
    /// no response or answered with more than one.
    pub async fn single(&mut self) -> Result<Vec<u8>, RpcError> {
        self.single_bytes().await.map(Vec::from)
    }

    /// [`single`](Self::single) as the bytes received (no copy into a
    /// vector of its own).
    pub(crate) async fn single_bytes(&mut self) -> Result<Bytes, RpcError> {
        let first = match std::future::poll_fn(|cx| self.poll_message(cx)).await {
            Some(item) => item?,
            None => {
                return Err(RpcError::ProtocolError(
                    "call completed without a response".into(),
                ))
            }
        };
        match std::future::poll_fn(|cx| self.poll_message(cx)).await {
            None => Ok(first),
            Some(Err(e)) => Err(e),
            Some(Ok(_)) => Err(RpcError::ProtocolError(
                "call expecting one response answered with more".into(),
            )),
        }
    }

    /// The call is over: close our side cleanly.
    fn complete(&mut self) {
        self.done = true;
        if let RequestSide::Uploading(task, abort) = &mut self.request {
            match task.now_or_never() {
                Some(Ok(Ok(mut tx))) => {
                    let _ = tx.finish();
                }
                // Still uploading although the server has answered: stop it.
                None => abort.abort(),
                Some(_) => {}
            }
            self.request = RequestSide::Finished;
        }
        self.reader.observe_fin();
    }

    /// If the upload failed on our side (say, an oversized request), that
    /// is the better explanation for a broken call than the reset it caused.
    fn upload_error(&mut self) -> Option<RpcError> {
        let RequestSide::Uploading(task, _) = &mut self.request else {
            return None;
        };
        match task.now_or_never() {
            Some(Ok(Err(e @ RpcError::MessageTooLarge { .. }))) => Some(e),
            _ => None,
        }
    }
}

impl Stream for ResponseStream {
    type Item = Result<Vec<u8>, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_message(cx)
            .map(|item| item.map(|message| message.map(Vec::from)))
    }
}

impl ResponseStream {
    /// The next response as the bytes received: the stream's one reader.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, RpcError>>> {
        let this = self;
        if this.done {
            return Poll::Ready(None);
        }
        let mut frame = std::task::ready!(this.reader.poll_frame(cx));
        if let Ok(Some(Frame::Trailers(trailers))) = frame {
            this.trailers = trailers;
            frame = std::task::ready!(this.reader.poll_frame(cx));
            if !matches!(frame, Ok(Some(Frame::Status(_))) | Err(_)) {
                frame = Err(RpcError::ProtocolError(
                    "trailers not followed by the status".into(),
                ));
            }
        }
        let item = match frame {
            Ok(Some(Frame::Message(m))) => return Poll::Ready(Some(Ok(m))),
            Ok(Some(Frame::Error(text))) => {
                return Poll::Ready(Some(Err(RpcError::RemoteError(text))))
            }
            Ok(Some(Frame::Status(status))) => {
                this.complete();
                RpcError::from_status(status, &this.method).map(Err)
            }
            Ok(Some(other)) => Some(Err(RpcError::ProtocolError(format!(
                "unexpected {other:?} in a response stream"
            )))),
            Ok(None) => Some(Err(RpcError::StreamError(
                "response stream ended without a status".into(),
            ))),
            Err(e) => Some(Err(this.upload_error().unwrap_or(e))),
        };
        this.done = true;
        Poll::Ready(item)
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        match &self.request {
            // Dropping the upload's send half resets the stream.
            RequestSide::Uploading(_, abort) => abort.abort(),
            RequestSide::Finished if !self.done => self.busy.cancel(self.stream_id),
            RequestSide::Finished => {}
        }
    }
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream")
            .field("method", &self.method)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Sends the header, the requests in batches, then `End`; returns the send
/// half still open (it is finished when the call completes).
async fn upload(
    header: RequestHeader,
    mut tx: SendHalf,
    requests: Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>,
    max_message_size: usize,
) -> Result<SendHalf, RpcError> {
    let mut out = BytesMut::new();
    header.encode_frame(&mut out);
    let requests = requests.map(|message| {
        if message.len() > max_message_size {
            return Err(RpcError::MessageTooLarge {
                size: message.len(),
                limit: max_message_size,
            });
        }
        Ok(Outgoing::Message(message))
    });
    tx.send_all(&mut out, requests).await??;
    encode_frame_header(FrameType::End, 0, &mut out);
    tx.send(crate::io::gathered(out)).await?;
    Ok(tx)
}
