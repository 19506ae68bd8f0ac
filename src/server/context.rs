//! What a handler can learn about the call it is serving.

use std::sync::Arc;

use crate::wire::{CallKind, Metadata, RequestHeader};

tokio::task_local! {
    static CURRENT: Arc<CallInfo>;
    static TRAILERS: std::cell::RefCell<Metadata>;
}

/// A handler's future within its call's scope (see [`CallInfo::scope`]).
pub(crate) type Scoped<F> = tokio::task::futures::TaskLocalFuture<
    std::cell::RefCell<Metadata>,
    tokio::task::futures::TaskLocalFuture<Arc<CallInfo>, F>,
>;

/// The trailers a scoped handler set, once it finished.
pub(crate) fn take_trailers<F: std::future::Future>(
    scoped: std::pin::Pin<&mut Scoped<F>>,
) -> Metadata {
    scoped
        .take_value()
        .map(std::cell::RefCell::into_inner)
        .unwrap_or_default()
}

/// The request header of the call being handled: method, id, deadline and
/// the client's metadata (trace context, auth tokens, ...).
///
/// Handlers keep the guide's `Vec<u8>` signature; inside one (unary or
/// streaming, including the response stream it returns),
/// [`CallInfo::current`] returns the call's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// Method name.
    pub method: String,
    /// The client's request id.
    pub request_id: u64,
    /// Call mode.
    pub kind: CallKind,
    /// Milliseconds the client said it would wait (0: no deadline).
    pub deadline_ms: u32,
    /// Key/value metadata sent with the call.
    pub metadata: Metadata,
    /// The client's certificate (DER), verified against the server's client
    /// CA in the handshake; `None` when the client presented none (see
    /// `RpcConfig::with_optional_client_ca_path`).
    pub peer_certificate: Option<Arc<[u8]>>,
    /// The schema hash a typed client (`#[rpcnet::service]`) sent with the
    /// call; `None` for a raw call.
    pub schema: Option<u64>,
}

impl CallInfo {
    /// The call being handled by the current task, if any.
    pub fn current() -> Option<Arc<CallInfo>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// The schema hash of the call being handled by the current task, read
    /// in place (no clone of the call's record).
    pub(crate) fn current_schema() -> Option<u64> {
        CURRENT.try_with(|call| call.schema).ok().flatten()
    }

    /// The first metadata value under `key`.
    pub fn metadata_value(&self, key: &str) -> Option<&[u8]> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets response metadata (a trailer) on the call being handled: it
    /// reaches the caller with the call's final status, in every call mode
    /// (`ResponseStream::trailers`). Returns `false` outside a handler.
    /// Trailers that do not fit the peer's header limit (16 KiB by
    /// default) are dropped with a warning.
    pub fn set_trailer(key: impl Into<String>, value: impl Into<Vec<u8>>) -> bool {
        TRAILERS
            .try_with(|trailers| trailers.borrow_mut().push((key.into(), value.into())))
            .is_ok()
    }

    /// Runs `f` with `info` as the current call, collecting its trailers.
    pub(crate) fn scope<F: std::future::Future>(info: Arc<CallInfo>, f: F) -> Scoped<F> {
        TRAILERS.scope(std::cell::RefCell::new(Vec::new()), CURRENT.scope(info, f))
    }
}

impl From<RequestHeader> for CallInfo {
    fn from(header: RequestHeader) -> Self {
        Self {
            method: header.method,
            request_id: header.request_id,
            kind: header.kind,
            deadline_ms: header.deadline_ms,
            metadata: header.metadata,
            peer_certificate: None,
            schema: header.schema,
        }
    }
}

/// Keeps each connection's verified client certificate (the leaf, DER) in
/// the connection's event context, where `serve_connection` reads it.
pub(crate) struct PeerCertificate;

/// The per-connection slot [`PeerCertificate`] fills.
#[derive(Default)]
pub(crate) struct PeerCertificateSlot(pub(crate) Option<Arc<[u8]>>);

impl s2n_quic::provider::event::Subscriber for PeerCertificate {
    type ConnectionContext = PeerCertificateSlot;

    fn create_connection_context(
        &mut self,
        _meta: &s2n_quic::provider::event::ConnectionMeta,
        _info: &s2n_quic::provider::event::ConnectionInfo,
    ) -> PeerCertificateSlot {
        PeerCertificateSlot::default()
    }

    fn on_tls_exporter_ready(
        &mut self,
        context: &mut PeerCertificateSlot,
        _meta: &s2n_quic::provider::event::ConnectionMeta,
        event: &s2n_quic::provider::event::events::TlsExporterReady,
    ) {
        // The chain s2n-tls verified; the first entry is the peer's own.
        context.0 = event
            .session
            .peer_cert_chain_der()
            .ok()
            .and_then(|chain| chain.into_iter().next())
            .map(Arc::from);
    }
}
