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

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// Bytes a batch buffer holds without growing: a full batch, the largest
/// message copied into it, and its frame header.
pub(super) const CAPACITY: usize = super::WRITE_BATCH + super::ZERO_COPY_THRESHOLD + 64;

/// Released buffers kept for reuse, at most: about 2.6 MiB stays allocated
/// for them once streams have used that many at once.
const MAX_FREE: usize = 32;

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

    /// The frames gathered in `full`, as the bytes of one write; the
    /// buffer goes back to the free list once every copy of them is
    /// dropped.
    pub(super) fn seal(&'static self, full: BytesMut) -> Bytes {
        Bytes::from_owner(Sealed(full, self))
    }

    /// Keeps `buffer` for a later batch if it is one of the batch
    /// buffers and fewer than `MAX_FREE` are kept (it is dropped
    /// otherwise).
    pub(super) fn give_back(&self, mut buffer: BytesMut) {
        // Only the buffers `buffer` hands out (one that grew past them is
        // left to the allocator).
        if !(CAPACITY..=2 * CAPACITY).contains(&buffer.capacity()) {
            return;
        }
        buffer.clear();
        let mut free = crate::sync::lock(&self.free);
        if free.len() < MAX_FREE {
            free.push(buffer);
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

    #[test]
    fn a_batch_is_reused_once_every_copy_is_dropped() {
        let batches: &'static Batches = Box::leak(Box::new(Batches::new()));
        let mut full = batches.buffer();
        full.extend_from_slice(b"frames");
        let at = full.as_ptr();
        let sealed = batches.seal(full);
        assert_eq!(&sealed[..], b"frames");
        let copy = sealed.slice(1..3);
        drop(sealed);
        let other = batches.buffer();
        assert_ne!(other.as_ptr(), at, "reused while a copy was held");
        drop(copy);
        let next = batches.buffer();
        assert_eq!(next.as_ptr(), at);
        assert!(next.is_empty() && next.capacity() >= CAPACITY);
        // One that outgrew the size is not kept.
        let mut grown = next;
        grown.extend_from_slice(&vec![0; 3 * CAPACITY]);
        drop(batches.seal(grown));
        assert!(crate::sync::lock(&batches.free).is_empty());
    }
}
