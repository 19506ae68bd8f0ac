//! Feeds arbitrary bytes to the frame decoder, split at an arbitrary point,
//! and checks its contract: no panic, progress on every frame, nothing
//! reserved beyond the limits, and re-encoding a decoded frame yields the
//! same bytes it was decoded from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rpcnet::wire::{FrameDecoder, FRAME_HEADER_LEN};

const MAX_MESSAGE: usize = 1 << 16;
const MAX_HEADER: usize = 1 << 12;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else { return };
    let split = (split as usize).min(data.len());
    let decoder = FrameDecoder::new(MAX_MESSAGE, MAX_HEADER);
    let mut buf = BytesMut::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let consumed = before.len() - buf.len();
                    assert!(consumed >= FRAME_HEADER_LEN);
                    let mut again = BytesMut::new();
                    frame.encode(&mut again);
                    assert_eq!(&again[..], &before[..consumed]);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.capacity() <= data.len() + FRAME_HEADER_LEN + MAX_MESSAGE.max(64 * 1024) + 64);
    }
});
