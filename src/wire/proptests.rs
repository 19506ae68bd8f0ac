//! Property tests of the codec: round trips under any chunking, and
//! arbitrary input never panics nor reserves beyond the limits.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

const MAX_MESSAGE: usize = 4096;
const MAX_HEADER: usize = 2048;

fn decoder() -> FrameDecoder {
    FrameDecoder::new(MAX_MESSAGE, MAX_HEADER)
}

fn kind() -> impl Strategy<Value = CallKind> {
    prop_oneof![
        Just(CallKind::Unary),
        Just(CallKind::ServerStreaming),
        Just(CallKind::ClientStreaming),
        Just(CallKind::Bidirectional)
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u64>(),
            kind(),
            any::<u32>(),
            "[a-z_.]{1,40}",
            prop::collection::vec(
                ("[a-z-]{0,12}", prop::collection::vec(any::<u8>(), 0..64)),
                0..4
            ),
            any::<Option<u64>>(),
        )
            .prop_map(
                |(request_id, kind, deadline_ms, method, metadata, schema)| {
                    Frame::Header(RequestHeader {
                        request_id,
                        kind,
                        deadline_ms,
                        method,
                        metadata,
                        schema,
                    })
                }
            ),
        prop::collection::vec(any::<u8>(), 0..MAX_MESSAGE)
            .prop_map(|m| Frame::Message(Bytes::from(m))),
        Just(Frame::End),
        any::<u64>().prop_map(Frame::Cancel),
        ".{0,100}".prop_map(Frame::Error),
        (0u8..=255, ".{0,100}")
            .prop_map(|(c, m)| Frame::Status(Status::new(StatusCode::from_byte(c), m))),
        prop::collection::vec(
            ("[a-z-]{0,12}", prop::collection::vec(any::<u8>(), 0..64)),
            0..4
        )
        .prop_map(Frame::Trailers),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip_under_any_chunking(frames in prop::collection::vec(frame(), 1..12), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let wire = wire.freeze();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut at = 0;
        for p in points {
            buf.extend_from_slice(&wire[at..p]);
            at = p;
            while let Some(f) = decoder().decode(&mut buf).unwrap() {
                decoded.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overreserve(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&bytes[..]);
        loop {
            let before = buf.len();
            match decoder().decode(&mut buf) {
                Ok(Some(_)) => prop_assert!(buf.len() < before),
                Ok(None) | Err(_) => break,
            }
        }
        prop_assert!(buf.capacity() <= 512 + FRAME_HEADER_LEN + MAX_MESSAGE.max(MAX_HEADER).max(64 * 1024));
    }
}
