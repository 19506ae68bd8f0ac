//! The response side of streaming calls, and the request uploader.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use tokio::task::{AbortHandle, JoinHandle};

use super::connection::Busy;
use crate::io::{FrameReader, SendHalf};
use crate::wire::{encode_frame_header, Frame, FrameType, RequestHeader};
use crate::RpcError;

/// Request frames are gathered up to this many bytes before one write.
const WRITE_BATCH: usize = 64 * 1024;
/// Requests at least this large are sent as their own buffer instead of being copied.
const ZERO_COPY_THRESHOLD: usize = 16 * 1024;

/// The responses of a streaming call, in order. Yields `Ok(message)` for
/// each response (empty messages included), `Err(RpcError::RemoteError)`
/// for an error item the handler yielded, and ends after the server's
/// final status (an error status is yielded as a last `Err`).
///
/// Dropping it before the end cancels the call: the server's handler is
/// dropped and the upload stops.
pub struct ResponseStream {
    method: String,
    reader: FrameReader,
    /// Our send half, held open until the call completes (single-request calls).
    tx: Option<SendHalf>,
    /// The task uploading a request stream; it hands the send half back when done.
    uploader: Option<(JoinHandle<Result<SendHalf, RpcError>>, AbortHandle)>,
    done: bool,
    /// Keeps the connection open (and alive) while the call runs.
    _busy: Busy,
}

impl ResponseStream {
    /// A call whose requests were already sent.
    pub(crate) fn new(busy: Busy, method: String, reader: FrameReader, tx: SendHalf) -> Self {
        Self {
            method,
            reader,
            tx: Some(tx),
            uploader: None,
            done: false,
            _busy: busy,
        }
    }

    /// The error to report when sending the request failed: the server's
    /// answer if it gave one (a refusal it sent before it stopped
    /// reading), otherwise `send_error`.
    pub(crate) async fn answer_after_send_error(mut self, send_error: RpcError) -> RpcError {
        match self.next().await {
            Some(Err(
                answer @ (RpcError::UnknownMethod(_)
                | RpcError::RemoteError(_)
                | RpcError::Unavailable(_)
                | RpcError::Timeout
                | RpcError::ProtocolError(_)),
            )) => answer,
            _ => send_error,
        }
    }

    /// A call whose requests are uploaded by a task of their own, so upload
    /// and download progress independently.
    pub(crate) fn start<S>(
        busy: Busy,
        header: RequestHeader,
        reader: FrameReader,
        tx: SendHalf,
        requests: S,
        max_message_size: usize,
    ) -> Self
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let method = header.method.clone();
        let task = tokio::spawn(upload(header, tx, requests, max_message_size));
        let abort = task.abort_handle();
        Self {
            method,
            reader,
            tx: None,
            uploader: Some((task, abort)),
            done: false,
            _busy: busy,
        }
    }

    /// Reads exactly one response (client-streaming calls).
    pub(crate) async fn single(&mut self) -> Result<Vec<u8>, RpcError> {
        let first = match self.next().await {
            Some(item) => item?,
            None => {
                return Err(RpcError::ProtocolError(
                    "call completed without a response".into(),
                ))
            }
        };
        match self.next().await {
            None => Ok(first),
            Some(Err(e)) => Err(e),
            Some(Ok(_)) => Err(RpcError::ProtocolError(
                "client-streaming call answered with more than one response".into(),
            )),
        }
    }

    /// The call is over: close our side cleanly.
    fn complete(&mut self) {
        self.done = true;
        if let Some(mut tx) = self.tx.take() {
            let _ = tx.finish();
        }
        if let Some((task, abort)) = self.uploader.take() {
            match task.now_or_never() {
                Some(Ok(Ok(mut tx))) => {
                    let _ = tx.finish();
                }
                // Still uploading although the server has answered: stop it.
                None => abort.abort(),
                Some(_) => {}
            }
        }
        self.reader.observe_fin();
    }

    /// If the upload failed on our side (say, an oversized request), that
    /// is the better explanation for a broken call than the reset it caused.
    fn upload_error(&mut self) -> Option<RpcError> {
        let (task, _) = self.uploader.as_mut()?;
        match task.now_or_never() {
            Some(Ok(Err(e @ RpcError::MessageTooLarge { .. }))) => Some(e),
            _ => None,
        }
    }
}

impl Stream for ResponseStream {
    type Item = Result<Vec<u8>, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let item = match std::task::ready!(this.reader.poll_frame(cx)) {
            Ok(Some(Frame::Message(m))) => return Poll::Ready(Some(Ok(Vec::from(m)))),
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
        if let Some((_, abort)) = &self.uploader {
            abort.abort();
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
async fn upload<S>(
    header: RequestHeader,
    mut tx: SendHalf,
    requests: S,
    max_message_size: usize,
) -> Result<SendHalf, RpcError>
where
    S: Stream<Item = Vec<u8>> + Send + 'static,
{
    let mut requests = std::pin::pin!(requests);
    let mut out = BytesMut::new();
    header.encode_frame(&mut out);
    tx.send(out.split().freeze()).await?;
    let mut ended = false;
    while !ended {
        let Some(mut next) = requests.next().await else {
            break;
        };
        loop {
            if next.len() > max_message_size {
                return Err(RpcError::MessageTooLarge {
                    size: next.len(),
                    limit: max_message_size,
                });
            }
            encode_frame_header(FrameType::Message, next.len(), &mut out);
            if next.len() >= ZERO_COPY_THRESHOLD {
                let head = out.split().freeze();
                tx.send_vectored(&mut [head, Bytes::from(next)]).await?;
            } else {
                out.extend_from_slice(&next);
            }
            if out.len() >= WRITE_BATCH {
                break;
            }
            match requests.next().now_or_never() {
                Some(Some(more)) => next = more,
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        if !out.is_empty() && !ended {
            tx.send(out.split().freeze()).await?;
        }
    }
    encode_frame_header(FrameType::End, 0, &mut out);
    tx.send(out.freeze()).await?;
    Ok(tx)
}
