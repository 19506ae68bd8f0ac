//! Call and connection metrics, read back from a recorder installed here.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use rpcnet::{RpcError, RpcServer};

use crate::support::*;

/// Samples of histogram `name` whose labels include every pair in `labels`.
fn samples(
    snapshot: &[(
        CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    name: &str,
    labels: &[(&str, &str)],
) -> usize {
    snapshot
        .iter()
        .filter(|(key, ..)| key.kind() == MetricKind::Histogram && key.key().name() == name)
        .filter(|(key, ..)| {
            labels.iter().all(|(k, v)| {
                key.key()
                    .labels()
                    .any(|label| label.key() == *k && label.value() == *v)
            })
        })
        .map(|(.., value)| match value {
            DebugValue::Histogram(values) => values.len(),
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn calls_are_counted_and_timed_per_method_and_status_on_both_sides() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Only this test in this binary installs a recorder; other tests'
    // calls are recorded too, under their own method names.
    recorder.install().expect("no other recorder");
    rpcnet::telemetry::enable();

    let server = RpcServer::new(server_config());
    server
        .register("telemetry.ok", |request| async move { Ok(request) })
        .await;
    server
        .register("telemetry.fail", |_| async move {
            Err(RpcError::RemoteError("no".into()))
        })
        .await;
    let server = spawn(server);
    let client = server.client().await;
    for _ in 0..3 {
        client.call("telemetry.ok", vec![7; 100]).await.unwrap();
    }
    for _ in 0..2 {
        client.call("telemetry.fail", vec![]).await.unwrap_err();
    }
    // The server records a call once its answer is written; the client
    // has it by then, but the server's record may land a moment later.
    let snapshot = promptly("server records", async {
        loop {
            let snapshot = snapshotter.snapshot().into_vec();
            if samples(
                &snapshot,
                "rpc.server.call.duration",
                &[("rpc.method", "telemetry.fail")],
            ) == 2
            {
                return snapshot;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let ok = [("rpc.method", "telemetry.ok"), ("rpc.status", "ok")];
    let failed = [
        ("rpc.method", "telemetry.fail"),
        ("rpc.status", "handler_error"),
    ];
    assert_eq!(samples(&snapshot, "rpc.server.call.duration", &ok), 3);
    assert_eq!(samples(&snapshot, "rpc.server.call.duration", &failed), 2);
    assert_eq!(
        samples(
            &snapshot,
            "rpc.server.request.size",
            &[("rpc.method", "telemetry.ok")]
        ),
        3
    );
    assert_eq!(samples(&snapshot, "rpc.client.call.duration", &ok), 3);
    assert_eq!(
        samples(
            &snapshot,
            "rpc.client.call.duration",
            &[
                ("rpc.method", "telemetry.fail"),
                ("rpc.status", "remote_error")
            ]
        ),
        2
    );
    let connections = snapshot.iter().rev().find_map(|(key, .., value)| {
        (key.key().name() == "rpcnet.server.connections").then_some(value)
    });
    assert!(
        matches!(connections, Some(DebugValue::Gauge(open)) if open.into_inner() >= 1.0),
        "{connections:?}"
    );
}
