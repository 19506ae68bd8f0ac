//! What a handler can learn about the call it is serving.

use std::sync::Arc;

use crate::wire::{CallKind, Metadata, RequestHeader};

tokio::task_local! {
    static CURRENT: Arc<CallInfo>;
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
}

impl CallInfo {
    /// The call being handled by the current task, if any.
    pub fn current() -> Option<Arc<CallInfo>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// The first metadata value under `key`.
    pub fn metadata_value(&self, key: &str) -> Option<&[u8]> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Runs `f` with `info` as the current call.
    pub(crate) fn scope<F: std::future::Future>(
        info: Arc<CallInfo>,
        f: F,
    ) -> impl std::future::Future<Output = F::Output> {
        CURRENT.scope(info, f)
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
