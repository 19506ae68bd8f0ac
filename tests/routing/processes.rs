//! Worker processes (`rpcnet-worker`, default membership settings) killed
//! with SIGKILL or stopped with SIGTERM under steady load from a
//! `ClusterClient` in this process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpcnet::cluster::{
    ClusterClient, ClusterConfig, ClusterMembership, LoadBalancingStrategy, WorkerRegistry,
    WorkerState,
};
use rpcnet::{CallOptions, RpcConfig, RpcServer};

use super::{cert, client_rpc, fast, PATIENCE};

mod blips;
#[path = "../support/process.rs"]
mod process;

use process::{ready_first, Proc};

/// docs/CLUSTER.md's bound for a restarted worker to receive calls again.
const RESTART_BOUND: Duration = Duration::from_secs(10);

/// A worker process labelled `label`, listening on `listen`, joined
/// through `seed`, once it is ready; killed on drop, whatever happens.
async fn worker(listen: &str, seed: SocketAddr, label: &str) -> Proc {
    let mut command = process::command(env!("CARGO_BIN_EXE_rpcnet-worker"));
    command.args([
        "--listen",
        listen,
        "--seed",
        &seed.to_string(),
        "--label",
        label,
    ]);
    Proc::start(&mut command, PATIENCE, ready_first).await
}

/// The director: membership only, in this process.
async fn director() -> (ClusterMembership, SocketAddr) {
    director_with(fast()).await
}

/// A director with membership settings `config`.
async fn director_with(config: ClusterConfig) -> (ClusterMembership, SocketAddr) {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_client_ca_path(cert("ca.pem"));
    let mut server = RpcServer::new(rpc);
    let quic = server.bind().unwrap();
    let handle = server.handle();
    let addr = handle.socket_addr().unwrap();
    tokio::spawn(async move { server.start(quic).await });
    let cluster = ClusterMembership::new(config.with_server(handle))
        .await
        .unwrap();
    (cluster, addr)
}

async fn workers_available(registry: &WorkerRegistry, labels: &[&str]) {
    let mut changes = registry.changes();
    let ready = || {
        labels.iter().all(|l| {
            registry
                .workers()
                .iter()
                .any(|w| w.label.as_deref() == Some(*l) && w.state == WorkerState::Available)
        })
    };
    tokio::time::timeout(PATIENCE, async {
        while !ready() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{labels:?} available: {:?}", registry.workers()));
}

/// A director, worker processes "a" and "b" joined through it, and a
/// client routing to them, once both are available.
struct TwoWorkers {
    seed: SocketAddr,
    a: Proc,
    b: Proc,
    registry: Arc<WorkerRegistry>,
    client: Arc<ClusterClient>,
}

async fn two_workers() -> TwoWorkers {
    let (cluster, seed) = director().await;
    let a = worker("127.0.0.1:0", seed, "a").await;
    let b = worker("127.0.0.1:0", seed, "b").await;
    let registry = Arc::new(WorkerRegistry::new(
        cluster,
        LoadBalancingStrategy::LeastConnections,
    ));
    registry.start().await;
    workers_available(&registry, &["a", "b"]).await;
    let client = Arc::new(ClusterClient::new(registry.clone(), client_rpc()));
    TwoWorkers {
        seed,
        a,
        b,
        registry,
        client,
    }
}

/// One call of a [`Load`]: when it started, and the label of the worker
/// that answered or the error.
struct Record {
    started: Instant,
    result: Result<String, String>,
}

/// Steady load: `concurrency` loops calling `sleep` with `ms` until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// (when, label) of every success.
    ok: Arc<Mutex<Vec<(Instant, String)>>>,
    failed: Arc<Mutex<Vec<String>>>,
    calls: Arc<AtomicUsize>,
    records: Arc<Mutex<Vec<Record>>>,
}

impl Load {
    fn start(client: &Arc<ClusterClient>, concurrency: usize, ms: u64, idempotent: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let records = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..concurrency)
            .map(|_| {
                let (client, stop, ok, failed, calls, records) = (
                    client.clone(),
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    calls.clone(),
                    records.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        calls.fetch_add(1, Ordering::Relaxed);
                        let started = Instant::now();
                        let options = CallOptions::new()
                            .idempotent(idempotent)
                            .with_timeout(Duration::from_secs(10));
                        let result = client
                            .call_worker_with(
                                "sleep",
                                ms.to_string().into_bytes(),
                                Some("role=worker"),
                                options,
                            )
                            .await
                            .map(|label| String::from_utf8(label).unwrap())
                            .map_err(|e| e.to_string());
                        match &result {
                            Ok(label) => ok.lock().unwrap().push((Instant::now(), label.clone())),
                            Err(e) => failed.lock().unwrap().push(e.clone()),
                        }
                        records.lock().unwrap().push(Record { started, result });
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            ok,
            failed,
            calls,
            records,
        }
    }

    /// Stops the load; every call, in order of completion.
    async fn stop_records(self) -> Vec<Record> {
        let records = self.records.clone();
        self.stop().await;
        let records = std::mem::take(&mut *records.lock().unwrap());
        records
    }

    async fn stop(self) -> (Vec<(Instant, String)>, Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let ok = std::mem::take(&mut *self.ok.lock().unwrap());
        let failed = std::mem::take(&mut *self.failed.lock().unwrap());
        (ok, failed, self.calls.load(Ordering::Relaxed))
    }
}

/// Asserts that no call of `calls` failed, showing the first failures.
fn assert_none_failed(failed: &[String], calls: usize) {
    assert!(
        failed.is_empty(),
        "{} of {calls} calls failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_idempotent_load_fails_no_call_and_a_restart_gets_calls_again() {
    let TwoWorkers {
        seed,
        mut a,
        b: _b,
        registry,
        client,
    } = two_workers().await;

    let load = Load::start(&client, 8, 20, true);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let a_addr = a.addr;
    a.child.start_kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    let _ = a.child.wait().await;
    // The client notices by itself (ejection) or membership does (removal).
    let mut changes = registry.changes();
    let noticed = tokio::time::timeout(PATIENCE, async {
        loop {
            let a_active = registry
                .workers()
                .iter()
                .any(|w| w.addr() == a_addr && w.state == WorkerState::Available);
            if !a_active {
                return killed.elapsed();
            }
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the dead worker leaves the rotation");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed, calls) = load.stop().await;
    assert_none_failed(&failed, calls);
    assert!(
        ok.iter().any(|(t, l)| *t > killed && l == "b"),
        "calls went on after the kill"
    );
    eprintln!("kill -9: {calls} calls, none failed; out of rotation after {noticed:?}");
    assert!(
        noticed < Duration::from_secs(3),
        "noticed after {noticed:?}"
    );

    // Restart at the same address: a new generation that gets calls again.
    let restarted_at = Instant::now();
    let _a2 = worker(&a_addr.to_string(), seed, "a").await;
    let reached = tokio::time::timeout(RESTART_BOUND, async {
        loop {
            if let Ok(label) = client
                .call_worker_with(
                    "whoami",
                    vec![],
                    Some("role=worker,label=a"),
                    CallOptions::new().idempotent(true),
                )
                .await
            {
                assert_eq!(label, b"a");
                return restarted_at.elapsed();
            }
            registry.changes().changed().await.ok();
        }
    })
    .await
    .expect("the restarted worker receives calls within RESTART_BOUND");
    eprintln!("restarted worker received a call {reached:?} after its start");
    // Spread again: both workers get calls.
    let load = Load::start(&client, 4, 5, true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed, _) = load.stop().await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok.iter().any(|(_, l)| l == "a") && ok.iter().any(|(_, l)| l == "b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_under_load_without_failing_a_call() {
    let TwoWorkers {
        mut a,
        b: _b,
        client,
        ..
    } = two_workers().await;

    // Not idempotent: only calls that never ran may move.
    let load = Load::start(&client, 8, 150, false);
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.signal("-TERM");
    let draining = a.wait_new_line(PATIENCE, |l| l.starts_with("DRAINING"));
    assert!(draining.await.is_some());
    let served = a
        .wait_new_line(PATIENCE, |l| l.starts_with("SERVED "))
        .await
        .expect("the worker reports its calls");
    let served: usize = served["SERVED ".len()..].parse().unwrap();
    let left = a.wait_new_line(PATIENCE, |l| l.starts_with("LEFT"));
    assert!(left.await.is_some(), "the worker left");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed, calls) = load.stop().await;
    assert_none_failed(&failed, calls);
    let answered_by_a = ok.iter().filter(|(_, l)| l == "a").count();
    assert_eq!(
        answered_by_a, served,
        "every call a ran was answered to the client"
    );
    assert!(served > 0);
    let status = tokio::time::timeout(PATIENCE, a.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
