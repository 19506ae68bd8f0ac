//! Worker processes that stall or crash over and over, under load: what
//! ejection, panic routing, slow start and the memory of crashes give the
//! caller.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpcnet::cluster::{ClusterClient, ClusterConfig, LoadBalancingStrategy, WorkerRegistry};
use rpcnet::CallOptions;

use super::process::Proc;
use super::{client_rpc, director_with, worker, workers_available, Load, Record};

/// Three worker processes ("a", "b", "c") joined through a director with
/// membership settings `config`, and a least-connections client, once all
/// three are available.
async fn three_workers(
    config: ClusterConfig,
) -> (
    std::net::SocketAddr,
    Vec<Proc>,
    Arc<WorkerRegistry>,
    Arc<ClusterClient>,
) {
    let (cluster, seed) = director_with(config).await;
    let mut procs = Vec::new();
    for label in ["a", "b", "c"] {
        procs.push(worker("127.0.0.1:0", seed, label).await);
    }
    let registry = Arc::new(WorkerRegistry::new(
        cluster,
        LoadBalancingStrategy::LeastConnections,
    ));
    registry.start().await;
    workers_available(&registry, &["a", "b", "c"]).await;
    let client = Arc::new(ClusterClient::new(registry.clone(), client_rpc()));
    (seed, procs, registry, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_of_every_worker_ends_with_the_first_call_after_it() {
    // Default membership settings everywhere: a 1.5 s stall is below
    // every verdict, so membership keeps the workers.
    let (_seed, procs, registry, client) = three_workers(ClusterConfig::default()).await;
    let load = Load::start(&client, 8, 20, true);
    tokio::time::sleep(Duration::from_millis(700)).await;
    for p in &procs {
        p.signal("-STOP");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for p in &procs {
        p.signal("-CONT");
    }
    let resumed = Instant::now();
    let first = client
        .call_worker_with(
            "sleep",
            b"20".to_vec(),
            Some("role=worker"),
            CallOptions::new()
                .idempotent(true)
                .with_timeout(Duration::from_secs(5)),
        )
        .await;
    let first_took = resumed.elapsed();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let records = load.stop_records().await;
    let after: Vec<&Record> = records.iter().filter(|r| r.started >= resumed).collect();
    let failed_after: Vec<&String> = after
        .iter()
        .filter_map(|r| r.result.as_ref().err())
        .collect();
    let failed_before = records.iter().filter(|r| r.result.is_err()).count() - failed_after.len();
    eprintln!(
        "stall of every worker: first call after it {:?} in {first_took:?}; calls started after it: {} of {} failed ({:?}); during the stall {failed_before} failed; pool {:?}",
        first.as_ref().map(|l| String::from_utf8_lossy(l).into_owned()),
        failed_after.len(),
        after.len(),
        failed_after.first(),
        registry.workers().iter().map(|w| (w.label.clone(), w.state)).collect::<Vec<_>>(),
    );
    assert!(first.is_ok(), "the first call after the stall: {first:?}");
    assert!(
        failed_after.is_empty() && after.len() > 100,
        "{} of {} calls started after the stall failed: {:?}",
        failed_after.len(),
        after.len(),
        &failed_after[..failed_after.len().min(3)]
    );
}

/// The share of each worker among the calls answered in `[from, to)`,
/// and the number of calls answered there.
fn shares(records: &[Record], from: Instant, to: Instant) -> (HashMap<String, f64>, usize) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut answered = 0;
    for r in records {
        if let (true, Ok(label)) = (r.started >= from && r.started < to, &r.result) {
            *counts.entry(label.clone()).or_insert(0) += 1;
            answered += 1;
        }
    }
    let shares = counts
        .into_iter()
        .map(|(l, n)| (l, n as f64 / answered.max(1) as f64))
        .collect();
    (shares, answered)
}

/// docs/CLUSTER.md's bound: from its fourth life on, a worker that crashed
/// three times within the crash memory gets at most this share of the
/// calls of a pool of three (its fair share is a third).
const CRASH_LOOP_SHARE: f64 = 0.15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_worker_gets_a_bounded_share_after_its_third_life() {
    let (seed, mut procs, _registry, client) = three_workers(super::fast()).await;
    let mut c = procs.pop().unwrap();
    let c_addr = c.addr;
    // Not idempotent: a call in flight on a worker that dies fails.
    let load = Load::start(&client, 8, 20, false);
    // (life, start, end) of c's lives; the first began before the load.
    let mut lives = Vec::new();
    let mut start = Instant::now();
    for life in 1..=6 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        c.kill().await;
        let end = Instant::now();
        lives.push((life, start, end));
        c = worker(&c_addr.to_string(), seed, "c").await;
        start = Instant::now();
    }
    let records = load.stop_records().await;
    drop(c);
    let mut late = Vec::new();
    for &(life, from, to) in &lives {
        let (share, answered) = shares(&records, from, to);
        // Calls lost to the crash: started during the life, failed.
        let lost = records
            .iter()
            .filter(|r| r.started >= from && r.started < to && r.result.is_err())
            .count();
        let get = |l: &str| share.get(l).copied().unwrap_or(0.0);
        eprintln!(
            "life {life} of c: {answered} calls answered, a {:.3} b {:.3} c {:.3}; {lost} lost",
            get("a"),
            get("b"),
            get("c")
        );
        if life > 3 {
            late.push((life, get("a"), get("b"), get("c"), lost));
        }
    }
    for (life, a, b, c, _) in late {
        assert!(
            c <= CRASH_LOOP_SHARE,
            "life {life}: the crash-looping worker got {c:.3} of the calls"
        );
        assert!(
            a >= 1.0 / 3.0 && b >= 1.0 / 3.0,
            "life {life}: healthy workers got a {a:.3}, b {b:.3}"
        );
    }
}
