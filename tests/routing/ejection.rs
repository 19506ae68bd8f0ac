//! Outlier ejection and selection as a caller sees them, with real nodes on
//! loopback: how many calls a failing worker gets, which errors eject
//! nobody, where fresh registries send their first calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rpcnet::cluster::{ClusterClient, LoadBalancingStrategy, WorkerRegistry, WorkerState};
use rpcnet::{RpcConfig, RpcError, RpcServer};
use tokio::time::Instant;

use super::{available, cert, client_rpc, in_flight, Node};

/// How a test worker answers `work`.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Its label, after this long.
    Label(Duration),
    /// A handler error naming the worker (`Err(RemoteError("no from <label>"))`),
    /// at once: the same error from every worker is the request's fault.
    HandlerError,
    /// A panic naming the worker, at once: the worker's fault.
    Panic,
    /// `Err(ResourceExhausted)`, at once: the worker's fault, nothing ran.
    Shed,
}

/// A worker (`role=worker`, `label=<label>`) joined through `seed`.
async fn worker(label: &'static str, answer: Answer, seed: std::net::SocketAddr) -> Node {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_client_ca_path(cert("ca.pem"));
    let server = RpcServer::new(rpc);
    server
        .register("work", move |_| async move {
            match answer {
                Answer::Label(delay) => {
                    tokio::time::sleep(delay).await;
                    Ok(label.as_bytes().to_vec())
                }
                Answer::HandlerError => Err(RpcError::RemoteError(format!("no from {label}"))),
                Answer::Panic => panic!("no from {label}"),
                Answer::Shed => Err(RpcError::ResourceExhausted(format!("no from {label}"))),
            }
        })
        .await;
    super::start(server, Some(label), Some(seed)).await
}

/// A director and one worker per `(label, answer)`, once the director's
/// view has them all.
async fn cluster(workers: &[(&'static str, Answer)]) -> (Node, Vec<Node>) {
    let director = super::node(None, Duration::ZERO, None).await;
    let mut nodes = Vec::new();
    for (label, answer) in workers {
        nodes.push(worker(label, *answer, director.addr).await);
    }
    let registry = WorkerRegistry::new(
        director.cluster.clone(),
        LoadBalancingStrategy::LeastConnections,
    );
    registry.start().await;
    available(&registry, workers.len()).await;
    (director, nodes)
}

/// Which worker a call reached: the label it answered, or the label in
/// its handler error or panic.
fn reached(result: &Result<Vec<u8>, RpcError>) -> String {
    match result {
        Ok(label) => String::from_utf8(label.clone()).unwrap(),
        Err(RpcError::RemoteError(m) | RpcError::Internal(m)) if m.contains("no from ") => {
            m[m.find("no from ").unwrap() + "no from ".len()..].into()
        }
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

/// One routed call: when it started and which worker it reached.
struct Call {
    started: Instant,
    worker: String,
}

/// `calls` calls of `work`, `concurrency` at a time, in order of start.
async fn run(client: &ClusterClient, calls: usize, concurrency: usize) -> Vec<Call> {
    let mut calls = futures::stream::iter(0..calls)
        .map(|_| async {
            let started = Instant::now();
            let result = client
                .call_worker("work", vec![], Some("role=worker"))
                .await;
            Call {
                started,
                worker: reached(&result),
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<Call>>()
        .await;
    calls.sort_by_key(|c| c.started);
    calls
}

fn counts<'a>(calls: impl IntoIterator<Item = &'a Call>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for call in calls {
        *counts.entry(call.worker.clone()).or_insert(0) += 1;
    }
    counts
}

/// When `label` was first seen ejected in `registry`, watched from now on.
fn first_ejected(
    registry: &Arc<WorkerRegistry>,
    label: &'static str,
) -> Arc<std::sync::Mutex<Option<Instant>>> {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let (registry, out) = (registry.clone(), seen.clone());
    tokio::spawn(async move {
        let mut changes = registry.changes();
        loop {
            let ejected = registry
                .workers()
                .iter()
                .any(|w| w.label.as_deref() == Some(label) && w.state == WorkerState::Ejected);
            if ejected {
                *out.lock().unwrap() = Some(Instant::now());
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_fails_fast_gets_at_most_its_fair_share_and_none_once_ejected() {
    let work = Answer::Label(Duration::from_millis(20));
    let (director, _workers) =
        cluster(&[("a", work), ("b", work), ("bad", Answer::HandlerError)]).await;
    let registry = Arc::new(WorkerRegistry::new(
        director.cluster.clone(),
        LoadBalancingStrategy::LeastConnections,
    ));
    registry.start().await;
    let ejected = first_ejected(&registry, "bad");
    let client = ClusterClient::new(registry.clone(), client_rpc());
    let calls = run(&client, 1200, 8).await;
    let total = counts(&calls);
    let bad = total.get("bad").copied().unwrap_or(0);
    let ejected_at = *ejected.lock().unwrap();
    let after: Vec<&Call> = ejected_at
        .map(|t| calls.iter().filter(|c| c.started > t).collect())
        .unwrap_or_default();
    let bad_after = after.iter().filter(|c| c.worker == "bad").count();
    eprintln!(
        "fails fast: {total:?} of {}; ejected after {:?}; after that {bad_after} of {} to it",
        calls.len(),
        ejected_at.map(|t| t - calls[0].started),
        after.len()
    );
    assert!(
        bad * 3 <= calls.len(),
        "the failing worker got {bad} of {} calls (fair share: a third): {total:?}",
        calls.len()
    );
    assert!(ejected_at.is_some(), "the failing worker is ejected");
    assert!(
        after.len() >= 500 && bad_after * 100 <= after.len(),
        "once ejected it got {bad_after} of {} calls",
        after.len()
    );
    assert_eq!(in_flight(&registry), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_handler_error_from_every_worker_ejects_nobody() {
    let fail = Answer::HandlerError;
    let (director, _workers) = cluster(&[("a", fail), ("b", fail), ("c", fail)]).await;
    let registry = Arc::new(WorkerRegistry::new(
        director.cluster.clone(),
        LoadBalancingStrategy::LeastConnections,
    ));
    registry.start().await;
    let client = ClusterClient::new(registry.clone(), client_rpc());
    let calls = run(&client, 900, 8).await;
    let last = counts(&calls[600..]);
    eprintln!(
        "every worker fails: {:?}; last 300: {last:?}",
        counts(&calls)
    );
    for label in ["a", "b", "c"] {
        let n = last.get(label).copied().unwrap_or(0);
        assert!(n >= 50, "{label} got {n} of the last 300 calls: {last:?}");
    }
    assert!(
        registry
            .workers()
            .iter()
            .all(|w| w.state == WorkerState::Available),
        "{:?}",
        registry.workers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_registries_spread_their_first_calls() {
    let work = Answer::Label(Duration::ZERO);
    let (director, _workers) = cluster(&[("a", work), ("b", work), ("c", work)]).await;
    let mut firsts = Vec::new();
    for strategy in [
        LoadBalancingStrategy::LeastConnections,
        LoadBalancingStrategy::RoundRobin,
    ] {
        let mut first = HashMap::new();
        for _ in 0..60 {
            let registry = Arc::new(WorkerRegistry::new(director.cluster.clone(), strategy));
            assert_eq!(registry.workers().len(), 3);
            let client = ClusterClient::new(registry, client_rpc());
            let answer = client
                .call_worker("work", vec![], Some("role=worker"))
                .await
                .unwrap();
            *first
                .entry(String::from_utf8(answer).unwrap())
                .or_insert(0usize) += 1;
        }
        eprintln!("{strategy:?}: first calls of 60 fresh registries: {first:?}");
        firsts.push((strategy, first));
    }
    for (strategy, first) in firsts {
        assert!(
            first.len() == 3 && first.values().all(|&n| n <= 40),
            "{strategy:?}: {first:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failing_workers_of_three_get_a_small_share_and_no_call_finds_no_worker() {
    // The limit lets one of three be ejected; the other is held back at
    // the minimum weight instead.
    let work = Answer::Label(Duration::from_millis(20));
    let fail = Answer::HandlerError;
    let (director, _workers) = cluster(&[("a", work), ("bad1", fail), ("bad2", fail)]).await;
    let registry = Arc::new(WorkerRegistry::new(
        director.cluster.clone(),
        LoadBalancingStrategy::LeastConnections,
    ));
    registry.start().await;
    let client = ClusterClient::new(registry.clone(), client_rpc());
    let calls = run(&client, 900, 8).await;
    let total = counts(&calls);
    let last = counts(&calls[450..]);
    let failing =
        |c: &HashMap<String, usize>| c.get("bad1").unwrap_or(&0) + c.get("bad2").unwrap_or(&0);
    eprintln!(
        "two of three failing: {total:?}; last 450: {last:?}; pool {:?}",
        registry
            .workers()
            .iter()
            .map(|w| (w.label.clone(), w.state))
            .collect::<Vec<_>>()
    );
    assert!(
        failing(&total) * 5 <= calls.len(),
        "the failing workers got {} of {} calls: {total:?}",
        failing(&total),
        calls.len()
    );
    assert!(
        failing(&last) * 100 <= 450 * 15,
        "in the second half they got {} of 450: {last:?}",
        failing(&last)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_is_ejected_after_five_panics_in_a_row() {
    let work = Answer::Label(Duration::from_millis(5));
    let (director, _workers) = cluster(&[("a", work), ("b", work), ("bad", Answer::Panic)]).await;
    let registry = Arc::new(WorkerRegistry::new(
        director.cluster.clone(),
        LoadBalancingStrategy::LeastConnections,
    ));
    registry.start().await;
    let ejected = first_ejected(&registry, "bad");
    let client = ClusterClient::new(registry.clone(), client_rpc());
    let calls = run(&client, 600, 8).await;
    let total = counts(&calls);
    let bad = total.get("bad").copied().unwrap_or(0);
    eprintln!("panics: {total:?}");
    assert!(ejected.lock().unwrap().is_some(), "ejected");
    // Five panics eject it; each later ejection ends with one probe.
    assert!(
        bad <= 5 + 8 + 3,
        "{bad} calls reached the panicking worker: {total:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shedding_every_call_fails_no_call_and_is_ejected() {
    let work = Answer::Label(Duration::from_millis(5));
    let (director, _workers) = cluster(&[("a", work), ("b", work), ("bad", Answer::Shed)]).await;
    let registry = Arc::new(WorkerRegistry::new(
        director.cluster.clone(),
        LoadBalancingStrategy::LeastConnections,
    ));
    registry.start().await;
    let ejected = first_ejected(&registry, "bad");
    let client = ClusterClient::new(registry.clone(), client_rpc());
    // Not idempotent: a shed call never ran, so it moves on anyway.
    let calls = run(&client, 600, 8).await;
    let total = counts(&calls);
    eprintln!("shedding: {total:?}");
    assert_eq!(
        total.get("bad"),
        None,
        "every call answered elsewhere: {total:?}"
    );
    assert!(ejected.lock().unwrap().is_some(), "ejected");
}
