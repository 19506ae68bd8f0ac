//! [`RpcError`]: every failure a caller can branch on.

use crate::wire::{reset, FrameError, Status, StatusCode};

/// Errors returned by rpcnet's client and server APIs.
///
/// Variants name the condition, not the layer that noticed it, so callers
/// can `match` instead of parsing strings. Remote outcomes (the server's
/// terminal status) map onto the same variants: an unknown method is
/// [`RpcError::UnknownMethod`], a handler's `Err` is
/// [`RpcError::RemoteError`] with the handler's message (a handler's
/// `Err(ResourceExhausted)` stays [`RpcError::ResourceExhausted`]), a
/// panicking handler is [`RpcError::Internal`], a passed deadline is
/// [`RpcError::Timeout`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The QUIC connection failed or was closed (also: idle timeout, peer gone).
    #[error("connection error: {0}")]
    ConnectionError(String),
    /// A stream was reset or ended before the call completed.
    #[error("stream error: {0}")]
    StreamError(String),
    /// The TLS handshake failed: untrusted certificate, wrong server name,
    /// missing or rejected client certificate.
    #[error("TLS error: {0}")]
    TlsError(String),
    /// The configuration is unusable (unreadable certificate, bad address, missing key).
    #[error("configuration error: {0}")]
    ConfigError(String),
    /// An IO error from the operating system.
    #[error("IO error: {0}")]
    IoError(#[from] std::io::Error),
    /// Payload (de)serialization failed (bincode, as in the guide; feature
    /// `bincode`). The typed layer reports [`RpcError::Codec`] instead.
    #[cfg(feature = "bincode")]
    #[error("serialization error: {0}")]
    SerializationError(#[from] bincode::Error),
    /// The call did not complete within its timeout (client side), or its
    /// deadline passed on the server.
    #[error("the call timed out")]
    Timeout,
    /// The server has no handler for this method name.
    #[error("unknown method: {0}")]
    UnknownMethod(String),
    /// The remote handler returned an error; the text is the handler's message.
    #[error("remote handler error: {0}")]
    RemoteError(String),
    /// The remote handler panicked, or the server failed internally while
    /// serving the call (wire status `INTERNAL`). The server's fault, not
    /// the request's: a `ClusterClient` counts it against the worker
    /// toward ejection, and does not retry it.
    #[error("remote internal error: {0}")]
    Internal(String),
    /// The server lacked the resources to serve the call (a full queue,
    /// memory, a local quota) and did nothing (wire status
    /// `RESOURCE_EXHAUSTED`). A handler answers it with
    /// `Err(RpcError::ResourceExhausted(reason))`, and only before the call
    /// had any effect: a `ClusterClient` retries the call on another
    /// worker as one that never ran, and counts it against the worker
    /// toward ejection.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// A message exceeded `max_message_size` (see `RpcConfig::with_max_message_size`).
    #[error("message of {size} bytes exceeds the limit of {limit} bytes (max_message_size)")]
    MessageTooLarge {
        /// Size of the offending message.
        size: usize,
        /// The limit that was hit.
        limit: usize,
    },
    /// The peer broke the wire protocol (malformed or unexpected frame).
    #[error("protocol error: {0}")]
    ProtocolError(String),
    /// The server is shutting down or over a limit and did not take the call.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The server refused the call: the caller may not make it (a server
    /// layer's authentication or authorisation). The call did not run.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A worker filter is malformed (`WorkerRegistry::select_worker`).
    #[error("invalid worker filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The filter (its first 64 characters).
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No selectable worker matches the filter (`WorkerRegistry::select_worker`).
    #[error("no worker matches filter {filter:?}: {members} members seen, {unavailable} matching but draining, suspect or ejected, {avoided} already tried")]
    NoWorkers {
        /// The filter as given (empty for none).
        filter: String,
        /// Members in the membership view, any status.
        members: usize,
        /// Members that match but are not selectable now (draining,
        /// suspect, or ejected by a client's health check).
        unavailable: usize,
        /// Workers excluded because this call already tried them.
        avoided: usize,
    },
    /// A `ClusterClient` call failed on every worker it tried.
    #[error("call failed on {} worker(s): {}; stopped: {stopped}", attempts.len(), crate::cluster::format_attempts(attempts))]
    Failover {
        /// Each worker tried, in order, and why it failed there.
        attempts: Vec<crate::cluster::FailedAttempt>,
        /// Why no further worker was tried (a final answer, not
        /// idempotent, a stream already sent, attempts used up, timeout,
        /// budget exhausted, no other worker).
        stopped: crate::cluster::StopReason,
    },
    /// A typed call's message could not be encoded or decoded: the codec,
    /// what it was doing, the method, and the codec's own message.
    #[error("codec error: {0}")]
    Codec(String),
}

impl RpcError {
    pub(crate) fn from_status(status: Status, method: &str) -> Option<Self> {
        let Status { code, message } = status;
        Some(match code {
            StatusCode::Ok => return None,
            StatusCode::UnknownMethod => RpcError::UnknownMethod(method.to_owned()),
            StatusCode::HandlerError => RpcError::RemoteError(message),
            StatusCode::Internal => RpcError::Internal(message),
            StatusCode::ResourceExhausted => RpcError::ResourceExhausted(message),
            StatusCode::DeadlineExceeded => RpcError::Timeout,
            StatusCode::MessageTooLarge | StatusCode::ProtocolError => {
                RpcError::ProtocolError(format!("rejected by server: {message}"))
            }
            StatusCode::Unavailable => RpcError::Unavailable(message),
            StatusCode::PermissionDenied => RpcError::PermissionDenied(message),
            StatusCode::Other(code) => RpcError::RemoteError(format!("status {code}: {message}")),
        })
    }
}

impl From<FrameError> for RpcError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::MessageTooLarge { size, limit } => {
                RpcError::MessageTooLarge { size, limit }
            }
            other => RpcError::ProtocolError(other.to_string()),
        }
    }
}

/// QUIC's transport error `CONNECTION_REFUSED` (RFC 9000 §20.1).
const CONNECTION_REFUSED: u64 = 0x2;

/// The reason in [`RpcError::Unavailable`] for a connection the server
/// refused because it was at its connection limit.
const CONNECTION_LIMIT_REASON: &str =
    "server refused the connection: it is at its connection limit (max_connections)";

/// The reason in [`RpcError::Unavailable`] for a connection refused before
/// its handshake: the server is at its connection limit or shutting down
/// (QUIC's `CONNECTION_REFUSED` does not say which).
const CONNECTION_REFUSED_REASON: &str =
    "server refused the connection: it is at its connection limit (max_connections) or shutting down";

/// The reason in [`RpcError::Unavailable`] for a server that is shutting down.
const SHUTTING_DOWN: &str = "server is shutting down";

impl From<s2n_quic::connection::Error> for RpcError {
    fn from(e: s2n_quic::connection::Error) -> Self {
        use s2n_quic::connection::Error as E;
        match e {
            E::Transport { code, .. } if (0x100..=0x1ff).contains(&code.as_u64()) => {
                RpcError::TlsError(format!("handshake failed: {e}"))
            }
            // Closed before a call was sent on it: nothing ran.
            E::Application { error, .. }
                if u64::from(error) == u64::from(reset::SHUTDOWN)
                    || u64::from(error) == u64::from(reset::DRAINING) =>
            {
                RpcError::Unavailable(SHUTTING_DOWN.into())
            }
            E::Application { error, .. }
                if u64::from(error) == u64::from(reset::CONNECTION_LIMIT) =>
            {
                RpcError::Unavailable(CONNECTION_LIMIT_REASON.into())
            }
            // Sent by the server's endpoint to connections over its limit,
            // before their handshake (RFC 9000 §5.2.2).
            E::Transport { code, .. } if code.as_u64() == CONNECTION_REFUSED => {
                RpcError::Unavailable(CONNECTION_REFUSED_REASON.into())
            }
            E::MaxHandshakeDurationExceeded { .. } => {
                RpcError::ConnectionError("handshake timed out (max_handshake_duration)".into())
            }
            E::IdleTimerExpired { .. } => {
                RpcError::ConnectionError("connection idle timeout expired (idle_timeout)".into())
            }
            other => RpcError::ConnectionError(other.to_string()),
        }
    }
}

impl From<s2n_quic::stream::Error> for RpcError {
    fn from(e: s2n_quic::stream::Error) -> Self {
        use s2n_quic::stream::Error as E;
        match e {
            // The server finished its shutdown with this call open: it
            // may have run (the server waited for the calls it had taken,
            // up to its drain timeout), so it is not `Unavailable`, which
            // tells routers the call never ran.
            E::ConnectionError {
                error: s2n_quic::connection::Error::Application { error, .. },
                ..
            } if u64::from(error) == u64::from(reset::SHUTDOWN) => RpcError::ConnectionError(
                "the server shut down with the call open: it may have run".into(),
            ),
            E::ConnectionError { error, .. } => error.into(),
            E::StreamReset { error, .. } => match u64::from(error) {
                c if c == u64::from(reset::SHUTDOWN) => RpcError::Unavailable(SHUTTING_DOWN.into()),
                c if c == u64::from(reset::CANCELLED) => {
                    RpcError::StreamError("call cancelled by peer".into())
                }
                c if c == u64::from(reset::PROTOCOL) => {
                    RpcError::ProtocolError("peer reset the stream for a protocol violation".into())
                }
                c => RpcError::StreamError(format!("stream reset by peer (code {c})")),
            },
            other => RpcError::StreamError(other.to_string()),
        }
    }
}
