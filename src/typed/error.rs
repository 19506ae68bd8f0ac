//! [`CallError`]: a typed call's outcome when it is not its value.

use std::fmt;

use crate::RpcError;

/// Why a typed call did not return its value: the service's own error,
/// as the handler returned it, or a failure of the call itself.
///
/// `?` turns an [`RpcError`] into `CallError::Rpc`, so a handler declared
/// `-> Result<T, CallError<E>>` can use `?` on rpcnet calls, and can answer
/// `Err(CallError::Rpc(RpcError::Unavailable(..)))` to refuse a call it did
/// not run (the client, and a `ClusterClient`, see
/// [`RpcError::Unavailable`]; a `ClusterClient` then tries another worker).
#[derive(Debug)]
#[non_exhaustive]
pub enum CallError<E> {
    /// The handler returned `Err(e)`: `e`, decoded.
    Service(E),
    /// The call failed (connection, timeout, unknown method, a message the
    /// codec could not decode, a handler that panicked, ...).
    Rpc(RpcError),
    /// The server's declaration of the method differs from the client's
    /// (argument or result types as written, service `version`, codec):
    /// the server refused the call without running it.
    SchemaMismatch {
        /// The method's wire name, `Service.method`.
        method: String,
        /// The client's signature, codec and schema hash.
        client: String,
        /// The server's.
        server: String,
    },
}

impl<E> CallError<E> {
    /// The service error, if this is one.
    pub fn service(&self) -> Option<&E> {
        match self {
            Self::Service(e) => Some(e),
            _ => None,
        }
    }

    /// The rpcnet error, if this is one.
    pub fn rpc(&self) -> Option<&RpcError> {
        match self {
            Self::Rpc(e) => Some(e),
            _ => None,
        }
    }

    /// Maps the service error.
    pub fn map_service<F, E2>(self, f: F) -> CallError<E2>
    where
        F: FnOnce(E) -> E2,
    {
        match self {
            Self::Service(e) => CallError::Service(f(e)),
            Self::Rpc(e) => CallError::Rpc(e),
            Self::SchemaMismatch {
                method,
                client,
                server,
            } => CallError::SchemaMismatch {
                method,
                client,
                server,
            },
        }
    }
}

impl<E> From<RpcError> for CallError<E> {
    fn from(e: RpcError) -> Self {
        Self::Rpc(e)
    }
}

/// The text of [`CallError::SchemaMismatch`].
pub(crate) fn mismatch_text(method: &str, client: &str, server: &str) -> String {
    format!("service schema mismatch for {method}: client {client}, server {server}")
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(e) => write!(f, "service error: {e}"),
            Self::Rpc(e) => e.fmt(f),
            Self::SchemaMismatch {
                method,
                client,
                server,
            } => f.write_str(&mismatch_text(method, client, server)),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rpc(e) => Some(e),
            _ => None,
        }
    }
}
