//! The async shell around the wire codec: frames in from a QUIC receive
//! stream, bytes out through a send half that resets when abandoned.

use std::future::poll_fn;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use s2n_quic::stream::{ReceiveStream, SendStream};

use crate::wire::{encode_frame_header, reset, Frame, FrameDecoder, FrameType};
use crate::RpcError;
use batch::BATCHES;

mod batch;

/// Chunks taken from the stream per receive request.
const RECEIVE_CHUNKS: usize = 8;
/// Frames are gathered up to this many bytes before one write.
const WRITE_BATCH: usize = 64 * 1024;
/// Messages at least this large are sent as their own buffer instead of
/// being copied next to their frame header.
pub(crate) const ZERO_COPY_THRESHOLD: usize = 16 * 1024;

/// Reads whole frames from a QUIC receive stream.
pub(crate) struct FrameReader {
    rx: ReceiveStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    eof: bool,
}

impl FrameReader {
    pub(crate) fn new(rx: ReceiveStream, decoder: FrameDecoder) -> Self {
        Self {
            rx,
            buf: BytesMut::new(),
            decoder,
            eof: false,
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream (FIN on a frame boundary).
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Frame>, RpcError>> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Poll::Ready(Ok(Some(frame)));
            }
            if self.eof {
                return Poll::Ready(if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(RpcError::ProtocolError(
                        "stream ended inside a frame".into(),
                    ))
                });
            }
            // Take every chunk that has arrived in one request (one lock of
            // the connection), and learn about FIN in the same one.
            let mut chunks: [Bytes; RECEIVE_CHUNKS] = Default::default();
            match std::task::ready!(self.rx.poll_receive_vectored(&mut chunks, cx)) {
                Ok((count, open)) => {
                    for chunk in &mut chunks[..count] {
                        self.push(std::mem::take(chunk));
                    }
                    self.eof = !open;
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    pub(crate) async fn next_frame(&mut self) -> Result<Option<Frame>, RpcError> {
        poll_fn(|cx| self.poll_frame(cx)).await
    }

    fn push(&mut self, chunk: Bytes) {
        if self.buf.is_empty() {
            // Take the chunk over without copying when nobody else holds it.
            self.buf = BytesMut::from(chunk);
        } else {
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// Waits for the peer to finish or reset the stream after its last frame.
    /// Any further data is a protocol violation.
    pub(crate) async fn closed(&mut self) -> Result<(), RpcError> {
        match self.next_frame().await? {
            None => Ok(()),
            Some(_) => Err(RpcError::ProtocolError(
                "data after the end of the request".into(),
            )),
        }
    }

    /// Consumes an already-arrived FIN without waiting, so dropping the
    /// stream does not send STOP_SENDING needlessly.
    pub(crate) fn observe_fin(&mut self) {
        if !self.eof {
            let waker = futures::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            if let Poll::Ready(Ok(None)) = self.rx.poll_receive(&mut cx) {
                self.eof = true;
            }
        }
    }

    /// Signals the peer that nothing more will be read, leaving the
    /// receive half in a state s2n-quic frees (see `observe_end`).
    ///
    /// Observe, stop, observe again: a reset that arrives between the first
    /// look and the stop request makes s2n-quic (0.91) return early from
    /// the stop without detaching the half, so the second look reads that
    /// reset; a reset arriving after the stop finds the half detached in
    /// its stopping state, which s2n-quic finalises by itself.
    pub(crate) fn stop(&mut self, code: u32) {
        if !self.observe_end() {
            let _ = self
                .rx
                .stop_sending(s2n_quic::application::Error::from(code));
            self.observe_end();
        }
    }

    /// Takes whatever has arrived without waiting (discarding data) and
    /// reports whether the stream has ended (FIN or reset seen).
    ///
    /// s2n-quic (0.91) frees a stream's slot only once the application has
    /// observed each half's end, or detached a half in a state that leads
    /// there. A receive half that the peer has reset, dropped or stopped
    /// before the application read that reset, is neither: the stop
    /// request returns early without detaching, and the stream (with the
    /// slot under the peer's concurrent-stream limit) is kept forever. One
    /// read that sees the reset marks it observed.
    fn observe_end(&mut self) -> bool {
        if self.eof {
            return true;
        }
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // Bounded: a peer still sending is stopped by the caller instead.
        for _ in 0..RECEIVE_CHUNKS {
            match self.rx.poll_receive(&mut cx) {
                Poll::Ready(Ok(Some(_))) => continue,
                Poll::Ready(Ok(None)) | Poll::Ready(Err(_)) => {
                    self.eof = true;
                    return true;
                }
                Poll::Pending => return false,
            }
        }
        false
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        // Not left to s2n-quic's own stop on drop, which has the race
        // `stop` closes (a slot lost in about one of 3,000 abandoned
        // bidirectional calls under load).
        self.stop(reset::CANCELLED);
    }
}

/// The frames gathered in `out`, as the bytes of one write (a batch
/// buffer of [`SendHalf::send_all`]'s is handed over or copied out as
/// [`batch`] says).
pub(crate) fn gathered(mut out: BytesMut) -> Bytes {
    BATCHES.take(&mut out)
}

/// One item for [`SendHalf::send_all`].
pub(crate) enum Outgoing {
    /// A `Message` frame.
    Message(Vec<u8>),
    /// An `Error` frame (an error item of a response stream).
    Error(String),
}

/// Encoded frames ready for one write: one buffer, or a large message's
/// own buffer between the frames before and after it, so that it is sent
/// without being copied.
pub(crate) enum Write {
    One(Bytes),
    Around([Bytes; 3]),
}

impl Write {
    /// `out` (frames already encoded), one `Message` frame carrying
    /// `message`, and the frames `tail` appends: the message is copied in
    /// when small (under [`ZERO_COPY_THRESHOLD`]) and kept as its own
    /// buffer when large.
    pub(crate) fn message(
        mut out: BytesMut,
        message: impl Into<Bytes> + AsRef<[u8]>,
        tail: impl FnOnce(&mut BytesMut),
    ) -> Self {
        let len = message.as_ref().len();
        encode_frame_header(FrameType::Message, len, &mut out);
        if len < ZERO_COPY_THRESHOLD {
            out.extend_from_slice(message.as_ref());
            tail(&mut out);
            Self::One(gathered(out))
        } else {
            let mut rest = BytesMut::new();
            tail(&mut rest);
            Self::Around([gathered(out), message.into(), rest.freeze()])
        }
    }

    fn chunks(&mut self) -> &mut [Bytes] {
        match self {
            Self::One(one) => std::slice::from_mut(one),
            // An empty last buffer is left out (nothing follows a large
            // message of a response stream until its next item).
            Self::Around(three) => {
                let used = if three[2].is_empty() { 2 } else { 3 };
                &mut three[..used]
            }
        }
    }
}

/// A send half that resets the stream when dropped before `finish`, so an
/// abandoned call can never look like a complete one to the peer (s2n-quic
/// finishes streams on drop).
pub(crate) struct SendHalf {
    tx: SendStream,
    done: bool,
}

impl SendHalf {
    pub(crate) fn new(tx: SendStream) -> Self {
        Self { tx, done: false }
    }

    /// Queues `data`, waiting for flow-control capacity (backpressure).
    pub(crate) async fn send(&mut self, mut data: Bytes) -> Result<(), RpcError> {
        // Polled here rather than through s2n-quic's `send`, whose future
        // would keep a second copy of `data` in every caller's state.
        Ok(poll_fn(|cx| self.tx.poll_send(&mut data, cx)).await?)
    }

    /// Queues a [`Write`]'s buffers, in order, waiting for flow-control
    /// capacity (backpressure).
    pub(crate) async fn write(&mut self, write: &mut Write) -> Result<(), RpcError> {
        let chunks = write.chunks();
        let mut sent = 0;
        poll_fn(|cx| {
            sent += std::task::ready!(self.tx.poll_send_vectored(&mut chunks[sent..], cx))?;
            // Fewer taken than given: s2n-quic wakes the task once it
            // has room for more.
            if sent == chunks.len() {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Sends `out` (frames already encoded), one `Message` frame carrying
    /// `message`, and the frames `tail` appends, in one write (see
    /// [`Write::message`]). The one-message path of a client's request.
    pub(crate) async fn send_message(
        &mut self,
        out: BytesMut,
        message: impl Into<Bytes> + AsRef<[u8]>,
        tail: impl FnOnce(&mut BytesMut),
    ) -> Result<(), RpcError> {
        self.write(&mut Write::message(out, message, tail)).await
    }

    /// Sends `items` as frames, in order, in as few writes as possible:
    /// frames are gathered in `out` while the source has items ready
    /// (polled without waiting), up to [`WRITE_BATCH`] bytes, and written
    /// before waiting for the next one; large messages go as their own
    /// buffer. The streaming path of both sides (a client's request upload,
    /// a server's response stream).
    ///
    /// Returns `Ok(Ok(()))` when `items` ends and `Ok(Err(stop))` at the
    /// first `Err(stop)` item (nothing further is taken). Frames not yet
    /// written are left in `out`, so the caller's last frame (`End`, a
    /// status) can share their write.
    ///
    /// # Errors
    /// The send error if a write fails (peer reset or stopped the stream,
    /// connection lost).
    pub(crate) async fn send_all<S, E>(
        &mut self,
        out: &mut BytesMut,
        items: S,
    ) -> Result<Result<(), E>, RpcError>
    where
        S: Stream<Item = Result<Outgoing, E>>,
    {
        let mut items = std::pin::pin!(items);
        loop {
            let (item, waited) = match items.next().now_or_never() {
                Some(item) => (item, false),
                None => {
                    // Nothing ready: what is gathered goes now, which
                    // leaves no batch buffer held while the source waits
                    // (an idle stream holds none).
                    if !out.is_empty() {
                        self.send_batch(out).await?;
                    }
                    (items.next().await, true)
                }
            };
            let item = match item {
                None => return Ok(Ok(())),
                Some(Err(stop)) => return Ok(Err(stop)),
                Some(Ok(item)) => item,
            };
            // A batch buffer once items come in a run; an item the
            // stream waited for is gathered in a buffer of its own size
            // (a stream whose items trickle in never takes a batch).
            if !waited && out.capacity() < batch::CAPACITY {
                BATCHES.refill(out);
            }
            match item {
                Outgoing::Error(text) => Frame::Error(text).encode(out),
                Outgoing::Message(message) => {
                    encode_frame_header(FrameType::Message, message.len(), out);
                    if message.len() >= ZERO_COPY_THRESHOLD {
                        let head = BATCHES.take(out);
                        let mut write = Write::Around([head, Bytes::from(message), Bytes::new()]);
                        self.write(&mut write).await?;
                    } else {
                        out.extend_from_slice(&message);
                    }
                }
            }
            if out.len() >= WRITE_BATCH {
                self.send_batch(out).await?;
            }
        }
    }

    /// Sends the frames gathered in `out`, leaving it empty and without
    /// a buffer (see [`batch`]).
    async fn send_batch(&mut self, out: &mut BytesMut) -> Result<(), RpcError> {
        let batch = BATCHES.take(out);
        self.send(batch).await
    }

    /// Ends the stream cleanly (FIN).
    pub(crate) fn finish(&mut self) -> Result<(), RpcError> {
        self.done = true;
        Ok(self.tx.finish()?)
    }

    /// Waits until the peer has acknowledged everything sent on a finished
    /// stream.
    pub(crate) async fn acknowledged(mut self) -> Result<(), RpcError> {
        self.done = true;
        Ok(self.tx.close().await?)
    }

    /// Whether the peer has acknowledged everything sent on this finished
    /// stream (or the stream ended otherwise: nothing more will arrive),
    /// without waiting.
    pub(crate) fn is_settled(&mut self) -> bool {
        let waker = futures::task::noop_waker();
        self.poll_settled(&mut Context::from_waker(&waker))
            .is_ready()
    }

    /// Ready once [`is_settled`](Self::is_settled) would be true; wakes
    /// `cx` then.
    pub(crate) fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.done = true;
        self.tx.poll_close(cx).map(drop)
    }

    /// Abandons the stream with an application error code.
    ///
    /// s2n-quic (0.91) frees a stream's slot only once the application
    /// has observed its send half's end. A reset asked for after the peer's
    /// STOP_SENDING already made s2n-quic reset the stream (and the peer
    /// acknowledged that) changes nothing and is not counted as observed,
    /// and the half is not detached on drop either: the stream would be
    /// kept forever. One more poll after the reset reports the reset state
    /// and marks it observed.
    pub(crate) fn reset(&mut self, code: u32) {
        self.done = true;
        let _ = self.tx.reset(s2n_quic::application::Error::from(code));
        let waker = futures::task::noop_waker();
        let _ = self.tx.poll_send_ready(&mut Context::from_waker(&waker));
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        if !self.done {
            self.reset(reset::CANCELLED);
        }
    }
}
