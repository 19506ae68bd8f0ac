//! The buffers frames are gathered in before a write ([`SendHalf::send_all`](super::SendHalf::send_all)),
//! reused from batch to batch.
//!
//! A batch is handed to s2n-quic, which keeps it until the peer
//! acknowledges it, so a fresh batch was allocated (about 64 KiB) while
//! earlier ones were still in flight, and freed a round trip later. With
//! glibc's allocator that pattern grows and trims a thread's heap over and
//! over, so every batch was written into freshly faulted pages: in a
//! client-streaming run, the sender's page faults were almost all there,
//! and a run with trimming turned off (`MALLOC_TRIM_THRESHOLD_`) moved
//! 1.3–1.4 M messages/s instead of 0.9–1.0 M. A batch s2n-quic releases
//! goes back to a small free list instead, and the next batch takes it.
//! A stream takes a batch buffer once its items come in a run (an item
//! it waited for is gathered in a buffer of its own size), and only a
//! batch at least 32 KiB full (half a full batch) is handed over; a
//! smaller write is copied out to a buffer of its size, so what a stream
//! holds in flight stays close to what it sent.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// Bytes a batch buffer holds without growing: a full batch, the largest
/// message copied into it, and its frame header.
pub(super) const CAPACITY: usize = super::WRITE_BATCH + super::ZERO_COPY_THRESHOLD + 64;

/// Gathered bytes worth handing a batch buffer to s2n-quic for: a smaller
/// write is copied out to a buffer of its own size and the batch buffer
/// kept, so a stream sending one small item at a time holds what it sent
/// until the peer acknowledges it, not a batch buffer per item (a sealed
/// buffer is at least this full: about 2.5 × its bytes in flight at most).
const SEAL_MIN: usize = 32 * 1024;

/// Released buffers kept for reuse, at most: about 2.5 MiB stays allocated
/// for them once streams have used that many at once.
const MAX_FREE: usize = 32;

/// Whether `buffer` is one of the batch buffers (not grown past them: a
/// buffer `reserve` enlarged is left to the allocator).
fn is_batch(buffer: &BytesMut) -> bool {
    (CAPACITY..=CAPACITY + 4096).contains(&buffer.capacity())
}

/// Released batch buffers.
pub(super) struct Batches {
    free: Mutex<Vec<BytesMut>>,
}

/// The process's batches, shared by every stream (a batch is released on
/// whichever thread processes the peer's acknowledgement).
pub(super) static BATCHES: Batches = Batches::new();

impl Batches {
    const fn new() -> Self {
        Self {
            free: Mutex::new(Vec::new()),
        }
    }

    /// An empty buffer for a batch: a released one when there is one.
    fn buffer(&self) -> BytesMut {
        crate::sync::lock(&self.free)
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(CAPACITY))
    }

    /// Moves what `out` holds into a batch buffer, which `out` becomes.
    pub(super) fn refill(&self, out: &mut BytesMut) {
        let mut buffer = self.buffer();
        buffer.extend_from_slice(out);
        *out = buffer;
    }

    /// The frames gathered in `out`, as the bytes of one write; `out` is
    /// left empty, without a buffer. A batch buffer at least `SEAL_MIN`
    /// full is handed over as it is and comes back to the free list once
    /// every copy of its bytes is dropped; a less full one is copied out
    /// and goes back at once; any other buffer is frozen.
    pub(super) fn take(&'static self, out: &mut BytesMut) -> Bytes {
        let full = std::mem::take(out);
        if !is_batch(&full) {
            return full.freeze();
        }
        if full.len() >= SEAL_MIN {
            return Bytes::from_owner(Sealed(full, self));
        }
        let bytes = Bytes::copy_from_slice(&full);
        self.give_back(full);
        bytes
    }

    /// Keeps `batch` for a later batch, unless `MAX_FREE` are kept.
    fn give_back(&self, mut batch: BytesMut) {
        if !is_batch(&batch) {
            return;
        }
        batch.clear();
        let mut free = crate::sync::lock(&self.free);
        if free.len() < MAX_FREE {
            free.push(batch);
        }
    }
}

/// A batch handed to the transport, and where its buffer goes back.
struct Sealed(BytesMut, &'static Batches);

impl AsRef<[u8]> for Sealed {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Sealed {
    fn drop(&mut self) {
        self.1.give_back(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches() -> &'static Batches {
        Box::leak(Box::new(Batches::new()))
    }

    fn kept(batches: &Batches) -> usize {
        crate::sync::lock(&batches.free).len()
    }

    #[test]
    fn a_full_batch_is_reused_once_every_copy_is_dropped() {
        let batches = batches();
        let mut out = BytesMut::new();
        batches.refill(&mut out);
        out.extend_from_slice(&[7; SEAL_MIN]);
        let at = out.as_ptr();
        let sealed = batches.take(&mut out);
        assert_eq!(
            (sealed.len(), sealed.as_ptr()),
            (SEAL_MIN, at),
            "not copied"
        );
        assert_eq!(out.capacity(), 0, "the stream keeps no buffer");
        let copy = sealed.slice(1..3);
        drop(sealed);
        assert_eq!(kept(batches), 0, "back while a copy was held");
        drop(copy);
        let next = batches.buffer();
        assert_eq!(next.as_ptr(), at);
        assert!(next.is_empty() && next.capacity() >= CAPACITY);
    }

    #[test]
    fn a_small_write_holds_only_its_bytes() {
        let batches = batches();
        let mut out = BytesMut::from(&b"header"[..]);
        batches.refill(&mut out);
        out.extend_from_slice(b" and one small frame");
        let written = batches.take(&mut out);
        assert_eq!(&written[..], b"header and one small frame");
        assert_eq!(out.capacity(), 0);
        assert_eq!(kept(batches), 1, "the batch buffer is back at once");
    }

    #[test]
    fn a_buffer_that_grew_is_not_kept() {
        let batches = batches();
        let mut out = BytesMut::new();
        batches.refill(&mut out);
        out.extend_from_slice(&vec![0; 3 * CAPACITY]);
        drop(batches.take(&mut out));
        assert_eq!(kept(batches), 0);
    }
}
