//! Metrics through the [`metrics`] facade, named after OpenTelemetry's RPC
//! semantic conventions where one applies.
//!
//! Nothing is recorded until [`enable`] is called (the admin endpoint
//! calls it when it installs its Prometheus recorder; a program that
//! installs its own recorder calls it too): until then every recording
//! point costs one relaxed atomic load, and no label is built.
//!
//! | metric | kind | unit | labels | what |
//! |---|---|---|---|---|
//! | `rpc.server.call.duration` | histogram | s | `rpc.method`, `rpc.status` | from a call's admission to its final status |
//! | `rpc.server.request.size` | histogram | By | `rpc.method` | a unary call's request message |
//! | `rpc.server.response.size` | histogram | By | `rpc.method` | a unary call's response message |
//! | `rpc.server.active_calls` | gauge | {call} | | calls being served |
//! | `rpc.client.call.duration` | histogram | s | `rpc.method`, `rpc.status` | a unary or client-streaming call, as its caller waited |
//! | `rpcnet.server.connections` | gauge | {connection} | | connections being served |
//! | `rpcnet.server.connections.refused` | counter | {connection} | `reason` (`limit`, `draining`) | connections refused after their handshake |
//! | `rpcnet.routing.calls` | counter | {call} | `worker` | routed calls answered |
//! | `rpcnet.routing.retries` | counter | {attempt} | `error` | failed attempts that moved to another worker |
//! | `rpcnet.routing.stops` | counter | {call} | `reason` | calls that stopped after a failed attempt (`retry_budget_exhausted`: the budget refused) |
//! | `rpcnet.routing.failovers` | counter | {call} | | calls answered by another worker than the first |
//! | `rpcnet.routing.failover.duration` | histogram | s | | from such a call's start to its answer |
//! | `rpcnet.routing.ejections`, `rpcnet.routing.returns` | counter | {worker} | `worker` | passive ejection taking a worker out of rotation, and back |
//!
//! `rpc.status` is the wire status (`ok`, `handler_error`, `unavailable`,
//! `deadline_exceeded`, ...) on the server and the outcome (`ok` or the
//! [`RpcError`] variant, in snake case) on the client.
//! Membership and routing metrics are listed in `docs/OPERATIONS.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::wire::StatusCode;
use crate::RpcError;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Starts recording rpcnet's metrics through the `metrics` facade's
/// recorder (install one first, for example `metrics-exporter-prometheus`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Describes every metric above (help text and unit) to the installed
/// recorder; exporters such as Prometheus's show the descriptions.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "rpc.server.call.duration",
        Unit::Seconds,
        "Calls served, from admission to the final status, by method and status"
    );
    describe_histogram!(
        "rpc.server.request.size",
        Unit::Bytes,
        "Request message of unary calls served, by method"
    );
    describe_histogram!(
        "rpc.server.response.size",
        Unit::Bytes,
        "Response message of unary calls served, by method"
    );
    describe_gauge!("rpc.server.active_calls", "Calls being served");
    describe_histogram!(
        "rpc.client.call.duration",
        Unit::Seconds,
        "Unary and client-streaming calls made, as their callers waited, by method and outcome"
    );
    describe_gauge!("rpcnet.server.connections", "Connections being served");
    describe_counter!("rpcnet.routing.calls", "Routed calls answered, by worker");
    describe_counter!(
        "rpcnet.routing.retries",
        "Routed attempts that failed and moved to another worker, by error"
    );
    describe_counter!("rpcnet.routing.stops", "Routed calls that stopped after a failed attempt, by reason (retry_budget_exhausted counts the budget's refusals)");
    describe_counter!(
        "rpcnet.routing.failovers",
        "Routed calls answered by a worker other than the first tried"
    );
    describe_histogram!(
        "rpcnet.routing.failover.duration",
        Unit::Seconds,
        "Time from a failed-over call's start to its answer"
    );
    describe_counter!(
        "rpcnet.routing.ejections",
        "Workers taken out of rotation by a client's passive health check, by worker"
    );
    describe_counter!(
        "rpcnet.routing.returns",
        "Workers returned to rotation, by worker"
    );
    describe_gauge!(
        "rpcnet.membership.gossip.connections",
        "Connections this node holds to peers for gossip (at most gossip_max_connections to members, as many to seeds being joined through)"
    );
    describe_counter!(
        "rpcnet.server.connections.refused",
        "Connections refused after their handshake, by reason (limit, draining)"
    );
    for (name, help) in [
        (
            "rpcnet.membership.gossip.sent.packets",
            "Gossip packets handed to the transport",
        ),
        (
            "rpcnet.membership.gossip.sent.bytes",
            "Gossip bytes handed to the transport",
        ),
        (
            "rpcnet.membership.gossip.received.packets",
            "Gossip packets received from members",
        ),
        (
            "rpcnet.membership.gossip.received.bytes",
            "Gossip bytes received from members",
        ),
        (
            "rpcnet.membership.gossip.rejected",
            "Gossip packets refused (malformed, stale, not for this node)",
        ),
        (
            "rpcnet.membership.gossip.forged",
            "Gossip packets that spoke for an address their sender's certificate does not cover",
        ),
        (
            "rpcnet.membership.renewals",
            "Times this node renewed its identity after the cluster declared it down",
        ),
        (
            "rpcnet.membership.generation_jumps",
            "Times this node moved its generation above an earlier life's",
        ),
        (
            "rpcnet.membership.own_pauses",
            "Times this node noticed it had itself been paused",
        ),
        (
            "rpcnet.membership.refutations",
            "Suspicions of this node it refuted (Lifeguard's buddy system)",
        ),
    ] {
        describe_counter!(name, help);
    }
}

/// The `rpc.status` label of a wire status.
pub(crate) fn status_label(code: StatusCode) -> &'static str {
    match code {
        StatusCode::Ok => "ok",
        StatusCode::UnknownMethod => "unknown_method",
        StatusCode::HandlerError => "handler_error",
        StatusCode::DeadlineExceeded => "deadline_exceeded",
        StatusCode::Internal => "internal",
        StatusCode::MessageTooLarge => "message_too_large",
        StatusCode::ProtocolError => "protocol_error",
        StatusCode::Unavailable => "unavailable",
        StatusCode::PermissionDenied => "permission_denied",
        StatusCode::ResourceExhausted => "resource_exhausted",
        StatusCode::Other(_) => "other",
    }
}

/// The `rpc.status` label of a client-side outcome.
pub(crate) fn outcome_label<T>(outcome: &Result<T, RpcError>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(e) => error_label(e),
    }
}

/// The label of an error: its variant, in snake case.
pub(crate) fn error_label(e: &RpcError) -> &'static str {
    {
        match e {
            RpcError::ConnectionError(_) => "connection_error",
            RpcError::StreamError(_) => "stream_error",
            RpcError::TlsError(_) => "tls_error",
            RpcError::ConfigError(_) => "config_error",
            RpcError::IoError(_) => "io_error",
            RpcError::Timeout => "timeout",
            RpcError::UnknownMethod(_) => "unknown_method",
            RpcError::RemoteError(_) => "remote_error",
            RpcError::MessageTooLarge { .. } => "message_too_large",
            RpcError::ProtocolError(_) => "protocol_error",
            RpcError::Unavailable(_) => "unavailable",
            RpcError::PermissionDenied(_) => "permission_denied",
            RpcError::ResourceExhausted(_) => "resource_exhausted",
            RpcError::Internal(_) => "internal",
            _ => "other",
        }
    }
}

/// A call served: how it ended and how long it took.
pub(crate) fn server_call(method: &str, status: &'static str, took: Duration) {
    metrics::histogram!(
        "rpc.server.call.duration",
        "rpc.method" => method.to_owned(),
        "rpc.status" => status
    )
    .record(took.as_secs_f64());
}

/// A unary call's message sizes on the server.
pub(crate) fn server_sizes(method: &str, request: usize, response: Option<usize>) {
    metrics::histogram!("rpc.server.request.size", "rpc.method" => method.to_owned())
        .record(request as f64);
    if let Some(response) = response {
        metrics::histogram!("rpc.server.response.size", "rpc.method" => method.to_owned())
            .record(response as f64);
    }
}

/// Calls being served: +1 when one is admitted, -1 when it ends.
pub(crate) fn active_calls(delta: f64) {
    metrics::gauge!("rpc.server.active_calls").increment(delta);
}

/// A connection being served, counted in `rpcnet.server.connections`
/// while it lives (also when its task is aborted).
pub(crate) struct ConnectionGauge(());

impl ConnectionGauge {
    /// Counts a connection, if metrics are enabled.
    pub(crate) fn open() -> Option<Self> {
        is_enabled().then(|| {
            metrics::gauge!("rpcnet.server.connections").increment(1.0);
            Self(())
        })
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("rpcnet.server.connections").decrement(1.0);
    }
}

/// A connection refused after its handshake.
pub(crate) fn connection_refused(reason: &'static str) {
    metrics::counter!("rpcnet.server.connections.refused", "reason" => reason).increment(1);
}

/// A routed call answered by the worker at `worker`, after `failed`
/// attempts on others (a failover when any), `started` when it began.
pub(crate) fn routed(
    worker: crate::cluster::MemberAddr,
    failed: usize,
    started: tokio::time::Instant,
) {
    metrics::counter!("rpcnet.routing.calls", "worker" => worker.to_string()).increment(1);
    if failed > 0 {
        metrics::counter!("rpcnet.routing.failovers").increment(1);
        metrics::histogram!("rpcnet.routing.failover.duration")
            .record(started.elapsed().as_secs_f64());
    }
}

/// A routed attempt failed with an error labelled `error`; `stopped` is
/// why the call ended there (`None`: it went on to another worker).
pub(crate) fn attempt_failed(error: &'static str, stopped: Option<&'static str>) {
    match stopped {
        None => metrics::counter!("rpcnet.routing.retries", "error" => error).increment(1),
        Some(reason) => metrics::counter!("rpcnet.routing.stops", "reason" => reason).increment(1),
    }
}

/// A worker was taken out of rotation (`ejected`) or returned to it.
pub(crate) fn rotation_changed(worker: crate::cluster::MemberAddr, ejected: bool) {
    let name = if ejected {
        "rpcnet.routing.ejections"
    } else {
        "rpcnet.routing.returns"
    };
    metrics::counter!(name, "worker" => worker.to_string()).increment(1);
}

/// A unary or client-streaming call made, as its caller saw it.
pub(crate) fn client_call<T>(method: &str, outcome: &Result<T, RpcError>, took: Duration) {
    metrics::histogram!(
        "rpc.client.call.duration",
        "rpc.method" => method.to_owned(),
        "rpc.status" => outcome_label(outcome)
    )
    .record(took.as_secs_f64());
}
