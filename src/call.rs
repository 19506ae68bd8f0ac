//! [`CallOptions`]: what describes a call besides its method and payload.

use std::time::Duration;

use crate::wire::Metadata;

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
    idempotent: bool,
}

impl CallOptions {
    /// No metadata, the client's default timeout, not idempotent.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole call's time limit, retries included; the server is told
    /// the deadline. Default: the client's `RpcConfig::with_default_timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
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

    /// The metadata entries.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The timeout, if one was set.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether the call may run more than once.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}
