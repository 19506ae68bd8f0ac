//! The async shell around the wire codec: frames in from a QUIC receive
//! stream, bytes out through a send half that resets when abandoned.

use std::future::poll_fn;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use s2n_quic::stream::{ReceiveStream, SendStream};

use crate::wire::{reset, Frame, FrameDecoder};
use crate::RpcError;

/// Chunks taken from the stream per receive request.
const RECEIVE_CHUNKS: usize = 8;

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

    /// Signals the peer that nothing more will be read.
    pub(crate) fn stop(&mut self, code: u32) {
        if !self.observe_end() {
            let _ = self
                .rx
                .stop_sending(s2n_quic::application::Error::from(code));
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
        // See `observe_end`; s2n-quic stops the stream itself if it is
        // still open.
        self.observe_end();
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
    pub(crate) async fn send(&mut self, data: Bytes) -> Result<(), RpcError> {
        Ok(self.tx.send(data).await?)
    }

    pub(crate) async fn send_vectored(&mut self, chunks: &mut [Bytes]) -> Result<(), RpcError> {
        Ok(self.tx.send_vectored(chunks).await?)
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
