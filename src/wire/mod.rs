//! The rpcnet wire format: pure encode/decode, no IO.
//!
//! Every call is one QUIC bidirectional stream. Each direction carries a
//! sequence of frames, `[type: u8][length: u32 big-endian][payload]`.
//! `docs/PROTOCOL.md` is the normative description; this module is its
//! implementation and is fuzzed (`fuzz/`) and property-tested.
//!
//! The decoder checks a frame's declared length against the limits before
//! anything else, and grows its buffer with the bytes that arrived, never
//! to the declared length at once, so a peer cannot make us reserve memory
//! by announcing a huge length.

mod frame;
pub(crate) mod header;
#[cfg(test)]
mod proptests;
mod status;

pub use frame::{
    encode_frame_header, Frame, FrameDecoder, FrameError, FrameType, FRAME_HEADER_LEN, GROWTH_STEP,
};
pub use header::{CallKind, Metadata, RequestHeader, MAX_METHOD_LEN};
pub use status::{Status, StatusCode};

/// The ALPN protocol identifier; the version is negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"rpcnet/1";

/// QUIC application error codes used to reset streams and close connections.
pub mod reset {
    /// Connection close: the client is done with the connection (its last
    /// handle was dropped).
    pub const NO_ERROR: u32 = 0x0;
    /// The call was abandoned by its sender (client dropped the call, or the
    /// server cancelled a handler because its deadline passed).
    pub const CANCELLED: u32 = 0x1;
    /// The peer violated the framing rules.
    pub const PROTOCOL: u32 = 0x2;
    /// Connection close: the server finished shutting down. Calls still
    /// open on the connection may have run. (As a stream reset: the
    /// server is shutting down and did not take the call.)
    pub const SHUTDOWN: u32 = 0x3;
    /// An internal failure (for example a handler panic while streaming).
    pub const INTERNAL: u32 = 0x4;
    /// Connection close: the server is at its connection limit
    /// (`RpcConfig::with_max_connections`) and refused this connection.
    pub const CONNECTION_LIMIT: u32 = 0x5;
    /// Connection close: the server is shutting down and served nothing
    /// on this connection (its handshake completed as the drain began).
    pub const DRAINING: u32 = 0x6;
}
