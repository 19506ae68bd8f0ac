//! What describes a call: [`CallOptions`] (metadata, timeout, idempotence)
//! besides its method, and [`Body`], the requests it sends.
//!
//! Every call mode of [`RpcClient`](crate::RpcClient) is one
//! [`invoke`](crate::RpcClient::invoke) of a method with options and a body,
//! followed by reading its [`ResponseStream`](crate::ResponseStream):
//!
//! | mode | body | responses |
//! |---|---|---|
//! | unary (`call`) | [`Body::Message`] | [`single`](crate::ResponseStream::single) |
//! | server streaming | [`Body::Message`] | the stream |
//! | client streaming | [`Body::Stream`] | [`single`](crate::ResponseStream::single) |
//! | bidirectional | [`Body::Stream`] | the stream |

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

use crate::wire::{CallKind, Metadata};

/// The requests of a call: one message, or a stream of them.
pub enum Body {
    /// Exactly one request message, sent with the header in one write
    /// (unary and server-streaming calls).
    Message(Vec<u8>),
    /// Request messages uploaded as the stream yields them, independently
    /// of the responses (client-streaming and bidirectional calls).
    Stream(Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>),
}

impl Body {
    /// A body of the messages `requests` yields.
    pub fn stream(requests: impl Stream<Item = Vec<u8>> + Send + 'static) -> Self {
        Self::Stream(Box::pin(requests))
    }
}

/// A [`Body`] as the client sends it. A small message is copied into the
/// frame that carries the header, a large one sent as its own buffer.
pub(crate) enum RequestBody {
    /// One message, the caller's.
    Message(Vec<u8>),
    /// One message shared with the other attempts of a routed call: a
    /// retry clones a reference count, not the payload.
    Shared(Bytes),
    /// The request stream.
    Stream(Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>),
}

impl RequestBody {
    /// The call kind the request header announces for this body when the
    /// caller reads the responses as a stream: `ServerStreaming` for one
    /// message, `Bidirectional` for a stream.
    pub(crate) fn streaming_kind(&self) -> CallKind {
        match self {
            Self::Message(_) | Self::Shared(_) => CallKind::ServerStreaming,
            Self::Stream(_) => CallKind::Bidirectional,
        }
    }

    /// The single message's length; `None` for a stream.
    pub(crate) fn message_len(&self) -> Option<usize> {
        match self {
            Self::Message(message) => Some(message.len()),
            Self::Shared(message) => Some(message.len()),
            Self::Stream(_) => None,
        }
    }
}

impl From<Body> for RequestBody {
    fn from(body: Body) -> Self {
        match body {
            Body::Message(message) => Self::Message(message),
            Body::Stream(requests) => Self::Stream(requests),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(message: Vec<u8>) -> Self {
        Self::Message(message)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message(m) => write!(f, "Body::Message({} bytes)", m.len()),
            Self::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

/// How to make one call: request metadata, how long it may take, and
/// whether it is safe to run more than once.
///
/// ```
/// use std::time::Duration;
/// use rpcnet::CallOptions;
///
/// let options = CallOptions::new()
///     .with_timeout(Duration::from_secs(2))
///     .with_metadata("trace-id", b"abc".to_vec())
///     .idempotent(true);
/// assert!(options.is_idempotent());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    metadata: Metadata,
    timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    idempotent: bool,
    /// A typed call's schema hash (set by the typed layer).
    schema: Option<u64>,
}

impl CallOptions {
    /// No metadata, the client's default timeout, not idempotent.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole call's time limit, retries included; the server is told
    /// the deadline and cancels the handler when it passes.
    ///
    /// Default: for unary and client-streaming calls the client's
    /// `RpcConfig::with_default_timeout`; a streaming call read as a
    /// stream ([`RpcClient::invoke`](crate::RpcClient::invoke)) then has no
    /// deadline, and only waiting for a connection and a stream slot is
    /// bounded by the default timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long one attempt of the call may take when a `ClusterClient`
    /// routes it, before the attempt is abandoned (cancelled on the
    /// worker) and the call moves to another worker: Envoy's
    /// `per_try_timeout`. It applies to idempotent unary calls only (any
    /// other call cannot be sent again after it may have run, so cutting
    /// its one attempt short would only turn a late answer into a
    /// failure), never beyond the call's own timeout, and not to the last
    /// attempt the client allows, which has what is left of the call's
    /// timeout. An attempt past it is abandoned only when another worker
    /// could take the call; otherwise it goes on until the call's
    /// timeout. Default: the client's
    /// [`AttemptTimeout`](crate::cluster::AttemptTimeout) policy.
    /// `RpcClient` ignores it.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Adds one metadata entry (sent in the request header).
    pub fn with_metadata(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Declares the call safe to run more than once (gRFC A6's
    /// "retryable"): a `ClusterClient` may then repeat it on another worker
    /// after failures where the first worker may have run it (a timeout, a
    /// connection lost mid-call). Calls that provably never ran are retried
    /// either way. Default `false`.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Sends `hash` as the call's schema hash in the request header: the
    /// typed layer's check that both sides declare the same method.
    pub(crate) fn with_schema(mut self, hash: u64) -> Self {
        self.schema = Some(hash);
        self
    }

    /// The schema hash the request header carries, if any.
    pub(crate) fn schema(&self) -> Option<u64> {
        self.schema
    }

    /// The metadata entries.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The timeout, if one was set.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The per-attempt timeout, if one was set (see
    /// [`with_attempt_timeout`](Self::with_attempt_timeout)).
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// Whether the call may run more than once.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}
