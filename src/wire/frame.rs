use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{RequestHeader, Status};

/// Bytes before every frame payload: one type byte and a big-endian `u32` length.
pub const FRAME_HEADER_LEN: usize = 5;

/// The largest status or item-error payload accepted (the text is truncated to fit when encoding).
pub(crate) const MAX_STATUS_LEN: usize = 64 * 1024;

/// Payload length of a `Cancel` frame: one big-endian `u64` stream id.
const CANCEL_LEN: usize = 8;

/// What a frame carries. The type byte is the first byte of every frame,
/// so the receiver never guesses a payload's meaning by trying decoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// Request header: first frame of every call stream (client → server).
    Header = 0x01,
    /// One application message; an empty payload is a valid, empty message.
    Message = 0x02,
    /// End of the client's request messages (client → server, streaming calls).
    End = 0x03,
    /// An error item inside a response stream; the call continues (server → client).
    Error = 0x04,
    /// Terminal status of the call (server → client); nothing follows it.
    Status = 0x05,
    /// Cancels a call (client → server, on the connection's control stream
    /// only): the payload is the call's QUIC stream id, a big-endian `u64`.
    Cancel = 0x06,
    /// Response metadata the handler set (server → client), just before
    /// the status; encoded as the header's metadata.
    Trailers = 0x07,
}

impl FrameType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::Header,
            0x02 => Self::Message,
            0x03 => Self::End,
            0x04 => Self::Error,
            0x05 => Self::Status,
            0x06 => Self::Cancel,
            0x07 => Self::Trailers,
            _ => return None,
        })
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// See [`FrameType::Header`].
    Header(RequestHeader),
    /// See [`FrameType::Message`].
    Message(Bytes),
    /// See [`FrameType::End`].
    End,
    /// See [`FrameType::Error`].
    Error(String),
    /// See [`FrameType::Status`].
    Status(Status),
    /// See [`FrameType::Cancel`]: the QUIC stream id of the call to cancel.
    Cancel(u64),
    /// See [`FrameType::Trailers`].
    Trailers(super::Metadata),
}

/// Why a byte sequence is not a valid frame. Decoding errors leave the
/// decoder's buffer untouched; the stream they came from must be abandoned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The type byte is not one of [`FrameType`].
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// A message frame is longer than `max_message_size` (see `RpcConfig::with_max_message_size`).
    #[error("message of {size} bytes exceeds the limit of {limit} bytes (max_message_size)")]
    MessageTooLarge {
        /// Declared length.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A header frame is longer than `max_header_size` (see `RpcConfig::with_max_header_size`).
    #[error("request header of {size} bytes exceeds the limit of {limit} bytes (max_header_size)")]
    HeaderTooLarge {
        /// Declared length.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A status or error frame is longer than 64 KiB.
    #[error("status frame of {size} bytes exceeds the limit of {limit} bytes")]
    StatusTooLarge {
        /// Declared length.
        size: usize,
        /// Fixed limit.
        limit: usize,
    },
    /// A frame that must be empty (`End`) has a payload, or a fixed-size
    /// frame (`Cancel`, 8 bytes) has another length.
    #[error("{0:?} frame has the wrong payload length")]
    UnexpectedPayload(FrameType),
    /// The payload does not parse as its frame type says.
    #[error("malformed {kind:?} frame: {reason}")]
    Malformed {
        /// Frame type being parsed.
        kind: FrameType,
        /// What was wrong.
        reason: &'static str,
    },
}

/// The least room [`FrameDecoder::decode`] makes for an incomplete frame.
pub const GROWTH_STEP: usize = 64 * 1024;

/// Stateless-per-frame decoder with the limits that protect memory.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    /// Largest accepted `Message` payload.
    pub max_message_size: usize,
    /// Largest accepted `Header` payload.
    pub max_header_size: usize,
}

impl FrameDecoder {
    /// A decoder with the given limits.
    pub fn new(max_message_size: usize, max_header_size: usize) -> Self {
        Self {
            max_message_size,
            max_header_size,
        }
    }

    /// Decodes one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed, `Ok(Some(frame))`
    /// after consuming exactly one frame, or an error when the bytes can
    /// never become a valid frame. The length is checked before any allocation.
    ///
    /// Memory follows the bytes that arrived, not the length a peer
    /// announced: while a frame is incomplete, `buf` is grown to at most
    /// twice what it holds (at least [`GROWTH_STEP`] more), never to the
    /// announced size at once, so a peer announcing a large message and
    /// then stalling costs what it sent. A frame of `n` bytes still takes
    /// only `O(log n)` reallocations.
    ///
    /// # Errors
    ///
    /// [`FrameError`] for an unknown type, a length over the limits, or a
    /// payload that does not parse.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let type_byte = buf[0];
        let kind = FrameType::from_byte(type_byte).ok_or(FrameError::UnknownType(type_byte))?;
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        self.check_len(kind, len)?;
        let total = FRAME_HEADER_LEN + len;
        if buf.len() < total {
            let missing = total - buf.len();
            buf.reserve(missing.min(buf.len().max(GROWTH_STEP)));
            return Ok(None);
        }
        let payload = &buf[FRAME_HEADER_LEN..total];
        let frame = match kind {
            FrameType::Header => Frame::Header(RequestHeader::decode(payload)?),
            FrameType::Status => Frame::Status(Status::decode(payload)?),
            FrameType::Error => Frame::Error(decode_text(FrameType::Error, payload)?),
            FrameType::End => Frame::End,
            FrameType::Trailers => Frame::Trailers(super::header::decode_trailers(payload)?),
            FrameType::Cancel => Frame::Cancel(
                payload
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| FrameError::UnexpectedPayload(kind))?,
            ),
            FrameType::Message => {
                buf.advance(FRAME_HEADER_LEN);
                return Ok(Some(Frame::Message(buf.split_to(len).freeze())));
            }
        };
        buf.advance(total);
        Ok(Some(frame))
    }

    fn check_len(&self, kind: FrameType, size: usize) -> Result<(), FrameError> {
        match kind {
            FrameType::Message if size > self.max_message_size => {
                Err(FrameError::MessageTooLarge {
                    size,
                    limit: self.max_message_size,
                })
            }
            FrameType::Header | FrameType::Trailers if size > self.max_header_size => {
                Err(FrameError::HeaderTooLarge {
                    size,
                    limit: self.max_header_size,
                })
            }
            FrameType::End if size != 0 => Err(FrameError::UnexpectedPayload(kind)),
            FrameType::Cancel if size != CANCEL_LEN => Err(FrameError::UnexpectedPayload(kind)),
            FrameType::Status | FrameType::Error if size > MAX_STATUS_LEN => {
                Err(FrameError::StatusTooLarge {
                    size,
                    limit: MAX_STATUS_LEN,
                })
            }
            _ => Ok(()),
        }
    }
}

pub(crate) fn decode_text(kind: FrameType, payload: &[u8]) -> Result<String, FrameError> {
    String::from_utf8(payload.to_vec()).map_err(|_| FrameError::Malformed {
        kind,
        reason: "text is not UTF-8",
    })
}

/// Writes the five-byte frame header: the type byte, then `len` as a
/// big-endian `u32`.
///
/// # Panics
///
/// In debug builds, if `len` exceeds `u32::MAX` (release builds write
/// `len` truncated to 32 bits). Every length rpcnet writes is bounded by
/// `max_message_size` or a smaller fixed limit first.
pub fn encode_frame_header(kind: FrameType, len: usize, dst: &mut impl BufMut) {
    debug_assert!(len <= u32::MAX as usize);
    dst.put_u8(kind as u8);
    dst.put_u32(len as u32);
}

impl Frame {
    /// Appends the encoded frame to `dst`.
    ///
    /// # Panics
    ///
    /// As [`encode_frame_header`]: in debug builds, for a message longer
    /// than `u32::MAX` bytes. A header is written as given; check it with
    /// [`RequestHeader::validate`] first.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Frame::Header(h) => h.encode_frame(dst),
            Frame::Message(m) => {
                dst.reserve(FRAME_HEADER_LEN + m.len());
                encode_frame_header(FrameType::Message, m.len(), dst);
                dst.extend_from_slice(m);
            }
            Frame::End => encode_frame_header(FrameType::End, 0, dst),
            Frame::Error(text) => {
                let text = truncate_utf8(text, MAX_STATUS_LEN);
                encode_frame_header(FrameType::Error, text.len(), dst);
                dst.extend_from_slice(text.as_bytes());
            }
            Frame::Status(s) => s.encode(dst),
            Frame::Cancel(stream_id) => {
                encode_frame_header(FrameType::Cancel, CANCEL_LEN, dst);
                dst.put_u64(*stream_id);
            }
            Frame::Trailers(metadata) => {
                let len = super::header::metadata_len(metadata);
                dst.reserve(FRAME_HEADER_LEN + len);
                encode_frame_header(FrameType::Trailers, len, dst);
                super::header::encode_metadata(metadata, dst);
            }
        }
    }
}

/// The longest prefix of `text` that fits `max` bytes on a char boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{CallKind, StatusCode};

    fn decoder() -> FrameDecoder {
        FrameDecoder::new(1024, 256)
    }

    #[test]
    fn empty_message_is_a_message_not_end_of_stream() {
        let mut buf = BytesMut::new();
        Frame::Message(Bytes::new()).encode(&mut buf);
        Frame::End.encode(&mut buf);
        assert_eq!(
            decoder().decode(&mut buf).unwrap(),
            Some(Frame::Message(Bytes::new()))
        );
        assert_eq!(decoder().decode(&mut buf).unwrap(), Some(Frame::End));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frame_needs_more_bytes_and_leaves_buffer_intact() {
        let mut full = BytesMut::new();
        Frame::Message(Bytes::from_static(b"hello")).encode(&mut full);
        let mut part = BytesMut::from(&full[..7]);
        assert_eq!(decoder().decode(&mut part).unwrap(), None);
        assert_eq!(&part[..], &full[..7]);
        part.extend_from_slice(&full[7..]);
        assert_eq!(
            decoder().decode(&mut part).unwrap(),
            Some(Frame::Message(Bytes::from_static(b"hello")))
        );
    }

    #[test]
    fn an_announced_length_is_not_reserved_before_its_bytes_arrive() {
        let decoder = FrameDecoder::new(16 << 20, 1024);
        let announced = (16 << 20) - 1;
        let mut buf = BytesMut::new();
        encode_frame_header(FrameType::Message, announced, &mut buf);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= 2 * GROWTH_STEP, "{}", buf.capacity());

        // Growth follows arrival, and the whole message still decodes.
        let mut sent = 0;
        while sent < announced {
            let chunk = (announced - sent).min(100_000);
            buf.extend_from_slice(&vec![7u8; chunk]);
            sent += chunk;
            if sent < announced {
                assert_eq!(decoder.decode(&mut buf).unwrap(), None);
                assert!(
                    buf.capacity() <= 4 * (buf.len() + GROWTH_STEP),
                    "{} bytes buffered, capacity {}",
                    buf.len(),
                    buf.capacity()
                );
            }
        }
        match decoder.decode(&mut buf).unwrap() {
            Some(Frame::Message(m)) => assert_eq!(m.len(), announced),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_allocating() {
        let mut buf = BytesMut::with_capacity(8);
        buf.extend_from_slice(&[0x02, 0xff, 0xff, 0xff, 0xff]);
        let cap = buf.capacity();
        assert_eq!(
            decoder().decode(&mut buf),
            Err(FrameError::MessageTooLarge {
                size: u32::MAX as usize,
                limit: 1024
            })
        );
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn oversized_header_and_status_are_rejected() {
        let mut buf = BytesMut::from(&[0x01, 0, 0, 1, 1][..]);
        assert!(matches!(
            decoder().decode(&mut buf),
            Err(FrameError::HeaderTooLarge { size: 257, .. })
        ));
        let mut buf = BytesMut::from(&[0x05, 0, 2, 0, 0][..]);
        assert!(matches!(
            decoder().decode(&mut buf),
            Err(FrameError::StatusTooLarge { .. })
        ));
    }

    #[test]
    fn unknown_type_and_non_empty_end_are_errors() {
        let mut buf = BytesMut::from(&[0x7f, 0, 0, 0, 0][..]);
        assert_eq!(
            decoder().decode(&mut buf),
            Err(FrameError::UnknownType(0x7f))
        );
        let mut buf = BytesMut::from(&[0x03, 0, 0, 0, 1, 9][..]);
        assert_eq!(
            decoder().decode(&mut buf),
            Err(FrameError::UnexpectedPayload(FrameType::End))
        );
    }

    #[test]
    fn cancel_carries_exactly_one_stream_id() {
        let mut buf = BytesMut::new();
        Frame::Cancel(0x0102_0304_0506_0708).encode(&mut buf);
        assert_eq!(&buf[..], &[6, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            decoder().decode(&mut buf),
            Ok(Some(Frame::Cancel(0x0102_0304_0506_0708)))
        );
        for len in [0u8, 7, 9] {
            let mut buf = BytesMut::from(&[0x06, 0, 0, 0, len][..]);
            assert_eq!(
                decoder().decode(&mut buf),
                Err(FrameError::UnexpectedPayload(FrameType::Cancel))
            );
        }
    }

    #[test]
    fn header_status_and_error_round_trip() {
        let header = RequestHeader {
            request_id: 7,
            kind: CallKind::Bidirectional,
            deadline_ms: 1500,
            method: "chat".into(),
            metadata: vec![("traceparent".into(), b"00-abc".to_vec())],
            schema: None,
        };
        let frames = [
            Frame::Header(header),
            Frame::Error("bad item".into()),
            Frame::Status(Status::new(StatusCode::HandlerError, "boom")),
            Frame::Status(Status::ok()),
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            f.encode(&mut buf);
        }
        for f in frames {
            assert_eq!(decoder().decode(&mut buf).unwrap(), Some(f));
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn long_error_text_is_truncated_on_a_char_boundary() {
        let text = "é".repeat(MAX_STATUS_LEN);
        let mut buf = BytesMut::new();
        Frame::Error(text).encode(&mut buf);
        match decoder().decode(&mut buf).unwrap() {
            Some(Frame::Error(t)) => {
                assert!(t.len() <= MAX_STATUS_LEN && t.len() >= MAX_STATUS_LEN - 1)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
