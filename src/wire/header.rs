use bytes::{BufMut, BytesMut};

use super::{FrameError, FrameType};

/// Longest method name accepted, in bytes.
pub const MAX_METHOD_LEN: usize = 1024;

/// Key/value request metadata (trace context, auth tokens, ...). Keys are
/// UTF-8; values are opaque bytes. The whole header is bounded by
/// `max_header_size`.
pub type Metadata = Vec<(String, Vec<u8>)>;

/// What the client intends to send and expects back; it decides how the
/// server reads the request side of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CallKind {
    /// One request message, one response message.
    Unary = 0,
    /// One request message, a stream of responses.
    ServerStreaming = 1,
    /// A stream of requests ended by `End`, one response.
    ClientStreaming = 2,
    /// A stream of requests ended by `End`, a stream of responses.
    Bidirectional = 3,
}

impl CallKind {
    /// Whether the client sends exactly one request message (no `End` frame).
    pub fn single_request(self) -> bool {
        matches!(self, CallKind::Unary | CallKind::ServerStreaming)
    }
}

/// The first frame of every call stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// Client-assigned id (the client's `next_id`), for tracing.
    pub request_id: u64,
    /// Call mode.
    pub kind: CallKind,
    /// Remaining time the client will wait, in milliseconds; 0 means none.
    pub deadline_ms: u32,
    /// Method name, 1..=[`MAX_METHOD_LEN`] bytes of UTF-8.
    pub method: String,
    /// Optional metadata.
    pub metadata: Metadata,
    /// The schema hash of a typed call (`#[rpcnet::service]`): the server
    /// refuses the call when its own method's hash differs. Sent as 8
    /// bytes after `deadline_ms`, announced by `SCHEMA_FLAG` (0x80) in the
    /// call-kind byte; `None` for raw calls, which are not checked.
    pub schema: Option<u64>,
}

/// The call-kind byte's flag for a schema hash in the header.
pub const SCHEMA_FLAG: u8 = 0x80;

const FIXED_LEN: usize = 8 + 1 + 4 + 2 + 2;

fn malformed(reason: &'static str) -> FrameError {
    FrameError::Malformed {
        kind: FrameType::Header,
        reason,
    }
}

/// A bounds-checked cursor over a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn string16(&mut self) -> Result<String, FrameError> {
        let len = self.u16()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("text is not UTF-8"))
    }
}

impl RequestHeader {
    /// Encoded payload length (without the frame header).
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN - 2
            + self.schema.map_or(0, |_| 8)
            + self.method.len()
            + metadata_len(&self.metadata)
    }

    /// Appends the whole frame (frame header and payload).
    pub fn encode_frame(&self, dst: &mut BytesMut) {
        let len = self.encoded_len();
        dst.reserve(super::FRAME_HEADER_LEN + len);
        super::encode_frame_header(FrameType::Header, len, dst);
        self.encode(dst);
    }

    /// Appends the payload. Callers validate lengths with [`RequestHeader::validate`].
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u64(self.request_id);
        let flag = if self.schema.is_some() {
            SCHEMA_FLAG
        } else {
            0
        };
        dst.put_u8(self.kind as u8 | flag);
        dst.put_u32(self.deadline_ms);
        if let Some(schema) = self.schema {
            dst.put_u64(schema);
        }
        dst.put_u16(self.method.len() as u16);
        dst.extend_from_slice(self.method.as_bytes());
        encode_metadata(&self.metadata, dst);
    }

    /// Checks that the header can be encoded and will be accepted by a
    /// peer whose `max_header_size` is `max_header_size`.
    ///
    /// # Errors
    ///
    /// [`FrameError::Malformed`] for a method name that is empty or longer
    /// than [`MAX_METHOD_LEN`], or a metadata key or value longer than
    /// 65,535 bytes (or more than 65,535 entries);
    /// [`FrameError::HeaderTooLarge`] when the encoded header exceeds
    /// `max_header_size`.
    pub fn validate(&self, max_header_size: usize) -> Result<(), FrameError> {
        if self.method.is_empty() || self.method.len() > MAX_METHOD_LEN {
            return Err(malformed("method name must be 1..=1024 bytes"));
        }
        if !metadata_fits(&self.metadata) {
            return Err(malformed("metadata entry too long"));
        }
        let size = self.encoded_len();
        if size > max_header_size {
            return Err(FrameError::HeaderTooLarge {
                size,
                limit: max_header_size,
            });
        }
        Ok(())
    }

    /// Parses a complete header payload; trailing bytes are an error.
    ///
    /// # Errors
    ///
    /// [`FrameError::Malformed`] (kind `Header`) when the payload is
    /// truncated, names an unknown call kind, has a method name that is
    /// empty, longer than [`MAX_METHOD_LEN`] or not UTF-8, a metadata key
    /// that is not UTF-8, or trailing bytes.
    pub fn decode(payload: &[u8]) -> Result<Self, FrameError> {
        let mut r = Reader(payload);
        let request_id = r.u64()?;
        let kind_byte = r.u8()?;
        let kind = match kind_byte & !SCHEMA_FLAG {
            0 => CallKind::Unary,
            1 => CallKind::ServerStreaming,
            2 => CallKind::ClientStreaming,
            3 => CallKind::Bidirectional,
            _ => return Err(malformed("unknown call kind")),
        };
        let deadline_ms = r.u32()?;
        let schema = if kind_byte & SCHEMA_FLAG != 0 {
            Some(r.u64()?)
        } else {
            None
        };
        let method = r.string16()?;
        if method.is_empty() || method.len() > MAX_METHOD_LEN {
            return Err(malformed("method name must be 1..=1024 bytes"));
        }
        let metadata = decode_metadata(&mut r)?;
        if !r.0.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        Ok(Self {
            request_id,
            kind,
            deadline_ms,
            method,
            metadata,
            schema,
        })
    }
}

/// Encoded length of `metadata`: a `u16` count, then per entry a `u16`
/// key length, the key, a `u16` value length, the value.
pub(crate) fn metadata_len(metadata: &Metadata) -> usize {
    2 + metadata
        .iter()
        .map(|(k, v)| 4 + k.len() + v.len())
        .sum::<usize>()
}

/// Whether `metadata` can be encoded (counts and lengths fit `u16`).
pub(crate) fn metadata_fits(metadata: &Metadata) -> bool {
    metadata.len() <= u16::MAX as usize
        && metadata
            .iter()
            .all(|(k, v)| k.len() <= u16::MAX as usize && v.len() <= u16::MAX as usize)
}

/// Appends `metadata` (see [`metadata_len`]); callers check [`metadata_fits`].
pub(crate) fn encode_metadata(metadata: &Metadata, dst: &mut BytesMut) {
    dst.put_u16(metadata.len() as u16);
    for (k, v) in metadata {
        dst.put_u16(k.len() as u16);
        dst.extend_from_slice(k.as_bytes());
        dst.put_u16(v.len() as u16);
        dst.extend_from_slice(v);
    }
}

fn decode_metadata(r: &mut Reader<'_>) -> Result<Metadata, FrameError> {
    let count = r.u16()? as usize;
    // Each entry needs at least 4 bytes, so `count` is bounded by the payload.
    if count * 4 > r.0.len() {
        return Err(malformed("truncated"));
    }
    let mut metadata = Vec::with_capacity(count);
    for _ in 0..count {
        let key = r.string16()?;
        let len = r.u16()? as usize;
        metadata.push((key, r.take(len)?.to_vec()));
    }
    Ok(metadata)
}

/// Parses a complete trailers payload (metadata; trailing bytes are an
/// error).
pub(crate) fn decode_trailers(payload: &[u8]) -> Result<Metadata, FrameError> {
    let mut r = Reader(payload);
    let metadata = decode_metadata(&mut r).map_err(|_| FrameError::Malformed {
        kind: FrameType::Trailers,
        reason: "malformed trailers",
    })?;
    if !r.0.is_empty() {
        return Err(FrameError::Malformed {
            kind: FrameType::Trailers,
            reason: "trailing bytes",
        });
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RequestHeader {
        RequestHeader {
            request_id: u64::MAX,
            kind: CallKind::ServerStreaming,
            deadline_ms: 30_000,
            method: "list_items".into(),
            metadata: vec![("a".into(), vec![]), ("auth".into(), b"token".to_vec())],
            schema: None,
        }
    }

    fn typed_header() -> RequestHeader {
        RequestHeader {
            schema: Some(0x0123_4567_89ab_cdef),
            ..header()
        }
    }

    #[test]
    fn round_trips_and_reports_its_length() {
        for h in [header(), typed_header()] {
            let mut buf = BytesMut::new();
            h.encode(&mut buf);
            assert_eq!(buf.len(), h.encoded_len());
            assert_eq!(RequestHeader::decode(&buf).unwrap(), h);
        }
    }

    #[test]
    fn a_schema_hash_is_flagged_in_the_kind_byte_and_follows_the_deadline() {
        let mut buf = BytesMut::new();
        typed_header().encode(&mut buf);
        assert_eq!(buf[8], SCHEMA_FLAG | CallKind::ServerStreaming as u8);
        assert_eq!(buf[13..21], 0x0123_4567_89ab_cdef_u64.to_be_bytes());
        // Any other high bit is not a call kind.
        buf[8] = 0x40 | CallKind::ServerStreaming as u8;
        assert!(RequestHeader::decode(&buf).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for h in [header(), typed_header()] {
            let mut buf = BytesMut::new();
            h.encode(&mut buf);
            for cut in 0..buf.len() {
                assert!(RequestHeader::decode(&buf[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn rejects_empty_method_bad_kind_and_trailing_bytes() {
        let mut h = header();
        h.method.clear();
        let mut buf = BytesMut::new();
        h.encode(&mut buf);
        assert!(RequestHeader::decode(&buf).is_err());
        assert!(h.validate(4096).is_err());

        let mut buf = BytesMut::new();
        header().encode(&mut buf);
        buf[8] = 9;
        assert!(RequestHeader::decode(&buf).is_err());

        let mut buf = BytesMut::new();
        header().encode(&mut buf);
        buf.put_u8(0);
        assert!(RequestHeader::decode(&buf).is_err());
    }

    #[test]
    fn validate_enforces_the_header_limit() {
        let mut h = header();
        h.metadata.push(("big".into(), vec![0; 5000]));
        assert!(matches!(
            h.validate(4096),
            Err(FrameError::HeaderTooLarge { .. })
        ));
        assert!(h.validate(16 * 1024).is_ok());
    }
}
