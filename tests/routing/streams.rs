//! Streams routed as carefully as unary calls, with real nodes on
//! loopback: a stream a worker refused before running it (draining,
//! shutting down, unreachable) moves to another worker, stream failures
//! count for ejection, and a resumable stream resumes on another worker
//! from the last item received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rpcnet::cluster::{
    ClusterClient, LoadBalancingStrategy, StopReason, WorkerRegistry, WorkerState, WorkerStream,
};
use rpcnet::{CallOptions, RpcConfig, RpcError, RpcServer};

use super::{available, cert, client_rpc, node, Node};

/// Time between two items of `count`.
const TICK: Duration = Duration::from_millis(10);

/// A member whose server accepts clients without a certificate (an
/// application needs only the CA). With a label it is a worker
/// (`role=worker`, `label=<label>`) serving:
///
/// * `count` (server streaming): the request is the first and last
///   position wanted (two u64, big-endian); items are a position then the
///   worker's label, one per [`TICK`];
/// * `echo` (bidirectional): each request back, after the label and `:`;
/// * `sum` (client streaming): the label, `:`, the number of requests;
/// * `hold` (server streaming): one item, then nothing until cancelled;
/// * `label` (unary): the label.
///
/// `started` counts the `count`, `echo` and `sum` calls its handlers began.
pub(super) async fn member(
    label: Option<&'static str>,
    seed: Option<SocketAddr>,
    started: Arc<AtomicUsize>,
) -> Node {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_optional_client_ca_path(cert("ca.pem"))
        .with_drain_timeout(Duration::from_secs(10));
    let server = RpcServer::new(rpc);
    if let Some(label) = label {
        let counted = started.clone();
        server
            .register_streaming("count", move |mut requests| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    let request = requests.next().await.unwrap_or_default();
                    let position = |at: usize| {
                        request
                            .get(at..at + 8)
                            .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap()))
                    };
                    let (first, last) = (position(0), position(8));
                    futures::stream::unfold(first, move |n| async move {
                        if n > last {
                            return None;
                        }
                        tokio::time::sleep(TICK).await;
                        let mut item = n.to_be_bytes().to_vec();
                        item.extend_from_slice(label.as_bytes());
                        Some((Ok(item), n + 1))
                    })
                }
            })
            .await;
        let counted = started.clone();
        server
            .register_streaming("echo", move |requests| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    requests.map(move |r| {
                        let mut item = format!("{label}:").into_bytes();
                        item.extend_from_slice(&r);
                        Ok(item)
                    })
                }
            })
            .await;
        let counted = started.clone();
        server
            .register_streaming("sum", move |requests| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    futures::stream::once(async move {
                        let n = requests.count().await;
                        Ok(format!("{label}:{n}").into_bytes())
                    })
                }
            })
            .await;
        server
            .register(
                "label",
                move |_| async move { Ok(label.as_bytes().to_vec()) },
            )
            .await;
        server
            .register_streaming("hold", |_| async {
                futures::stream::once(async { Ok(b"held".to_vec()) })
                    .chain(futures::stream::pending())
            })
            .await;
    }
    super::start(server, label, seed).await
}

/// The `count` request for positions `first..=last`.
pub(super) fn count(first: u64, last: u64) -> Vec<u8> {
    [first.to_be_bytes(), last.to_be_bytes()].concat()
}

/// A `count` item's position and label.
pub(super) fn item(bytes: &[u8]) -> (u64, String) {
    let position = u64::from_be_bytes(bytes[..8].try_into().unwrap());
    (position, String::from_utf8_lossy(&bytes[8..]).into_owned())
}

/// A director (membership only), workers with `labels` and each one's
/// count of handler starts.
async fn cluster(labels: &[&'static str]) -> (Node, Vec<Node>, Vec<Arc<AtomicUsize>>) {
    let director = node(None, Duration::ZERO, None).await;
    let mut workers = Vec::new();
    let mut starts = Vec::new();
    for label in labels {
        let started = Arc::new(AtomicUsize::new(0));
        workers.push(member(Some(label), Some(director.addr), started.clone()).await);
        starts.push(started);
    }
    (director, workers, starts)
}

/// A started registry with its own client (its own connections and
/// ejection record) once `n` workers are available.
async fn client_of(director: &Node, n: usize) -> (Arc<WorkerRegistry>, ClusterClient) {
    let registry = Arc::new(WorkerRegistry::with_seed(
        director.cluster.clone(),
        LoadBalancingStrategy::RoundRobin,
        7,
    ));
    registry.start().await;
    available(&registry, n).await;
    let client = ClusterClient::new(registry.clone(), client_rpc());
    (registry, client)
}

fn state_of(registry: &WorkerRegistry, label: &str) -> Option<WorkerState> {
    registry
        .workers()
        .iter()
        .find(|w| w.label.as_deref() == Some(label))
        .map(|w| w.state)
}

/// The first item of a stream, as text.
async fn first_text(stream: &mut WorkerStream) -> Result<String, RpcError> {
    let first = stream.next().await.expect("an item")?;
    Ok(String::from_utf8_lossy(&first).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_draining_worker_refuses_move_to_another_worker_in_every_mode() {
    let (director, workers, starts) = cluster(&["a", "b"]).await;
    let f = Some("role=worker");
    // One client per mode, each holding a call on a, so that each has a
    // connection to a that stays open while a drains (a draining server
    // refuses new connections, which clients always took elsewhere).
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (registry, client) = client_of(&director, 2).await;
        let mut held = client
            .call_worker_server_streaming("hold", vec![], Some("label=a"))
            .await
            .unwrap();
        assert_eq!(first_text(&mut held).await.unwrap(), "held");
        clients.push((registry, client, held));
    }
    // a starts shutting down, and membership does not know yet: every
    // registry still selects it.
    workers[0].shutdown.shutdown();
    for (registry, _, _) in &clients {
        assert_eq!(state_of(registry, "a"), Some(WorkerState::Available));
    }

    // Two calls per mode: round robin sends one of them to a.
    let (registry, client, _held) = &clients[0];
    for _ in 0..2 {
        let mut stream = client
            .call_worker_server_streaming("count", count(1, 3), f)
            .await
            .unwrap();
        let first = stream.next().await.expect("an item");
        let (position, label) = item(&first.expect("data, not a refusal, as the first item"));
        assert_eq!((position, label.as_str()), (1, "b"));
    }
    assert_eq!(
        state_of(registry, "a"),
        Some(WorkerState::Ejected),
        "the refusal counted"
    );

    let (registry, client, _held) = &clients[1];
    for _ in 0..2 {
        let requests = futures::stream::iter(vec![b"x".to_vec(), b"y".to_vec()]);
        let echoed: Vec<String> = client
            .call_worker_streaming("echo", requests, f)
            .await
            .unwrap()
            .map(|r| String::from_utf8(r.expect("echoed")).unwrap())
            .collect()
            .await;
        assert_eq!(echoed, ["b:x", "b:y"], "the requests were replayed to b");
    }
    assert_eq!(state_of(registry, "a"), Some(WorkerState::Ejected));

    let (registry, client, _held) = &clients[2];
    for _ in 0..2 {
        let requests = futures::stream::iter(vec![vec![1], vec![2], vec![3]]);
        let sum = client
            .call_worker_client_streaming("sum", requests, f)
            .await
            .expect("moved to b");
        assert_eq!(sum, b"b:3");
    }
    assert_eq!(state_of(registry, "a"), Some(WorkerState::Ejected));
    assert_eq!(starts[0].load(Ordering::SeqCst), 0, "a ran none of them");
    assert_eq!(starts[1].load(Ordering::SeqCst), 6);
    drop(clients);
    drop(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_opened_after_a_workers_death_go_to_another_worker() {
    let (director, mut workers, _starts) = cluster(&["a", "b"]).await;
    let (safe_registry, safe) = client_of(&director, 2).await;
    let (_, risky) = client_of(&director, 2).await;
    // Connected to both workers, as a busy client is.
    for client in [&safe, &risky] {
        for label in ["label=a", "label=b"] {
            let mut warm = client
                .call_worker_server_streaming("count", count(1, 1), Some(label))
                .await
                .unwrap();
            first_text(&mut warm).await.unwrap();
        }
    }
    // a dies; its connections stay open on the clients' side until they
    // go silent, and membership has not noticed.
    workers.remove(0).kill();

    let idempotent = CallOptions::new().idempotent(true);
    let (safe_results, risky_results) = tokio::join!(
        async {
            let mut results = Vec::new();
            for _ in 0..6 {
                results.push(first_count(&safe, idempotent.clone()).await);
            }
            // The dead connection counted against a.
            let a = state_of(&safe_registry, "a");
            (results, a)
        },
        async {
            let mut results = Vec::new();
            for _ in 0..6 {
                results.push(first_count(&risky, CallOptions::new()).await);
            }
            results
        }
    );
    let (safe_results, a) = safe_results;
    for result in &safe_results {
        let (position, label) = result.as_ref().expect("an idempotent stream moves to b");
        assert_eq!((*position, label.as_str()), (1, "b"));
    }
    assert_ne!(a, Some(WorkerState::Available));
    let mut failed = 0;
    for result in &risky_results {
        match result {
            Ok((position, label)) => assert_eq!((*position, label.as_str()), (1, "b")),
            // Sent on a's connection before it was known dead: it may
            // have run, so it is not sent again.
            Err(RpcError::Failover { attempts, stopped }) => {
                failed += 1;
                assert!(matches!(stopped, StopReason::MayHaveRun), "{stopped:?}");
                assert_eq!(attempts.len(), 1);
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(failed <= 1, "{failed} streams failed: {risky_results:?}");
}

/// Opens a `count` stream on any worker; its first item.
async fn first_count(
    client: &ClusterClient,
    options: CallOptions,
) -> Result<(u64, String), RpcError> {
    let mut stream = client
        .call_worker_server_streaming_with("count", count(1, 2), Some("role=worker"), options)
        .await?;
    let first = stream.next().await.expect("an item")?;
    Ok(item(&first))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_stream_arrives_complete_and_in_order_across_a_worker_kill() {
    let (director, mut workers, _starts) = cluster(&["a", "b", "c"]).await;
    let (_registry, client) = client_of(&director, 3).await;
    const N: u64 = 150;
    let resume = |last: &[u8]| Ok(count(item(last).0 + 1, N));
    let mut numbers = client
        .call_worker_resumable(
            "count",
            count(1, N),
            Some("role=worker"),
            CallOptions::new(),
            resume,
        )
        .await
        .unwrap();
    let first = numbers.worker().label().unwrap().to_owned();
    // A plain stream on the same worker, for comparison.
    let mut plain = client
        .call_worker_server_streaming("count", count(1, N), Some(&format!("label={first}")))
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut labels = Vec::new();
    while let Some(next) = numbers.next().await {
        let (position, label) = item(&next.expect("no error reaches the caller"));
        received.push(position);
        if labels.last() != Some(&label) {
            labels.push(label);
        }
        if position == 30 {
            let index = workers
                .iter()
                .position(|w| w.addr == numbers.worker().addr())
                .unwrap();
            workers.remove(index).kill();
        }
    }
    assert_eq!(
        received,
        (1..=N).collect::<Vec<_>>(),
        "complete, in order, once each"
    );
    assert_eq!(
        labels.len(),
        2,
        "resumed once, on another worker: {labels:?}"
    );
    assert_eq!(labels[0], first);

    // The plain stream, read only now, broke at the kill (its worker's
    // reset discarded what it had not read).
    let mut plain_items = 0;
    let end = loop {
        match plain.next().await {
            Some(Ok(_)) => plain_items += 1,
            other => break other,
        }
    };
    assert!(
        matches!(end, Some(Err(_))) && plain_items < N,
        "the plain stream: {plain_items} items, then {end:?}"
    );
    eprintln!(
        "resumable: {N} of {N} items via {labels:?}; plain: {plain_items} items, then {end:?}"
    );
}
