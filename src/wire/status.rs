use bytes::{BufMut, BytesMut};

use super::frame::{decode_text, encode_frame_header, truncate_utf8, MAX_STATUS_LEN};
use super::{FrameError, FrameType};

/// Outcome of a call, carried by the terminal `Status` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// The call completed; every response message was delivered before this frame.
    Ok,
    /// No handler is registered under the method name.
    UnknownMethod,
    /// The handler returned `Err`; the message is its text.
    HandlerError,
    /// The call's deadline passed on the server; the handler was cancelled.
    DeadlineExceeded,
    /// The handler panicked or the server failed internally.
    Internal,
    /// A message exceeded the server's `max_message_size`.
    MessageTooLarge,
    /// The client broke the framing rules.
    ProtocolError,
    /// The server is shutting down or over a limit; retry elsewhere.
    Unavailable,
    /// The server refused the call: the caller is not allowed to make it
    /// (a layer's authentication or authorisation).
    PermissionDenied,
    /// The handler lacked the resources to serve the call and did nothing
    /// (new in 0.2: an older client reads it as `Other(8)`).
    ResourceExhausted,
    /// A code this version does not know (forward compatibility).
    Other(u8),
}

impl StatusCode {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            StatusCode::Ok => 0,
            StatusCode::UnknownMethod => 1,
            StatusCode::HandlerError => 2,
            StatusCode::DeadlineExceeded => 3,
            StatusCode::Internal => 4,
            StatusCode::MessageTooLarge => 5,
            StatusCode::ProtocolError => 6,
            StatusCode::Unavailable => 7,
            StatusCode::PermissionDenied => 9,
            StatusCode::ResourceExhausted => 8,
            StatusCode::Other(b) => b,
        }
    }

    /// The code for a wire byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => StatusCode::Ok,
            1 => StatusCode::UnknownMethod,
            2 => StatusCode::HandlerError,
            3 => StatusCode::DeadlineExceeded,
            4 => StatusCode::Internal,
            5 => StatusCode::MessageTooLarge,
            6 => StatusCode::ProtocolError,
            7 => StatusCode::Unavailable,
            9 => StatusCode::PermissionDenied,
            8 => StatusCode::ResourceExhausted,
            b => StatusCode::Other(b),
        }
    }
}

/// Terminal status: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Outcome.
    pub code: StatusCode,
    /// Detail text (empty for `Ok`).
    pub message: String,
}

impl Status {
    /// Success.
    pub fn ok() -> Self {
        Self {
            code: StatusCode::Ok,
            message: String::new(),
        }
    }

    /// A status with a message.
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Appends the whole frame (header included).
    pub fn encode(&self, dst: &mut BytesMut) {
        let text = truncate_utf8(&self.message, MAX_STATUS_LEN - 1);
        encode_frame_header(FrameType::Status, 1 + text.len(), dst);
        dst.put_u8(self.code.to_byte());
        dst.extend_from_slice(text.as_bytes());
    }

    /// Parses a status payload.
    ///
    /// # Errors
    ///
    /// [`FrameError::Malformed`] (kind `Status`) for an empty payload or a
    /// message that is not UTF-8. Unknown code bytes are not an error (see
    /// [`StatusCode::from_byte`]).
    pub fn decode(payload: &[u8]) -> Result<Self, FrameError> {
        let (&code, text) = payload.split_first().ok_or(FrameError::Malformed {
            kind: FrameType::Status,
            reason: "empty status",
        })?;
        Ok(Self {
            code: StatusCode::from_byte(code),
            message: decode_text(FrameType::Status, text)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_bytes() {
        for b in 0..=u8::MAX {
            assert_eq!(StatusCode::from_byte(b).to_byte(), b);
        }
    }

    #[test]
    fn empty_status_payload_is_malformed() {
        assert!(Status::decode(&[]).is_err());
        assert!(Status::decode(&[2, 0xff]).is_err());
    }
}
