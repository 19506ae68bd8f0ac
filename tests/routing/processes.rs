//! Worker processes (`rpcnet-worker`, default membership settings) killed
//! with SIGKILL or stopped with SIGTERM under steady load from a
//! `ClusterClient` in this process.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpcnet::cluster::{
    ClusterClient, ClusterMembership, LoadBalancingStrategy, WorkerRegistry, WorkerState,
};
use rpcnet::{CallOptions, RpcConfig, RpcServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{cert, client_rpc, fast, PATIENCE};

/// docs/CLUSTER.md's bound for a restarted worker to receive calls again.
const RESTART_BOUND: Duration = Duration::from_secs(10);

/// A worker process; killed on drop (`kill_on_drop`), whatever happens.
struct Proc {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Proc {
    async fn spawn(listen: &str, seed: SocketAddr, label: &str) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rpcnet-worker"))
            .args(["--listen", listen, "--seed", &seed.to_string(), "--label", label])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rpcnet-worker");
        let stdout = child.stdout.take().unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = tokio::time::timeout(PATIENCE, lines.recv())
            .await
            .expect("worker started")
            .expect("READY line");
        let addr = ready.strip_prefix("READY ").expect("READY first").parse().unwrap();
        Proc { child, addr, lines }
    }

    /// The first line starting with `prefix`, within `within`.
    async fn line(&mut self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.starts_with(prefix) => return Some(line),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The director: membership only, in this process.
async fn director() -> (ClusterMembership, SocketAddr) {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_client_ca_path(cert("ca.pem"));
    let mut server = RpcServer::new(rpc);
    let quic = server.bind().unwrap();
    let handle = server.handle();
    let addr = handle.socket_addr().unwrap();
    tokio::spawn(async move { server.start(quic).await });
    let cluster = ClusterMembership::new(fast().with_server(handle)).await.unwrap();
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

/// Steady load: `concurrency` loops calling `sleep` with `ms` until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// (when, label) of every success.
    ok: Arc<Mutex<Vec<(Instant, String)>>>,
    failed: Arc<Mutex<Vec<String>>>,
    calls: Arc<AtomicUsize>,
}

impl Load {
    fn start(client: &Arc<ClusterClient>, concurrency: usize, ms: u64, idempotent: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks = (0..concurrency)
            .map(|_| {
                let (client, stop, ok, failed, calls) =
                    (client.clone(), stop.clone(), ok.clone(), failed.clone(), calls.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        calls.fetch_add(1, Ordering::Relaxed);
                        let options = CallOptions::new()
                            .idempotent(idempotent)
                            .with_timeout(Duration::from_secs(10));
                        match client
                            .call_worker_with("sleep", ms.to_string().into_bytes(), Some("role=worker"), options)
                            .await
                        {
                            Ok(label) => ok
                                .lock()
                                .unwrap()
                                .push((Instant::now(), String::from_utf8(label).unwrap())),
                            Err(e) => failed.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load { stop, tasks, ok, failed, calls }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_idempotent_load_fails_no_call_and_a_restart_gets_calls_again() {
    let (cluster, seed) = director().await;
    let mut a = Proc::spawn("127.0.0.1:0", seed, "a").await;
    let _b = Proc::spawn("127.0.0.1:0", seed, "b").await;
    let registry = Arc::new(WorkerRegistry::new(cluster, LoadBalancingStrategy::LeastConnections));
    registry.start().await;
    workers_available(&registry, &["a", "b"]).await;
    let client = Arc::new(ClusterClient::new(registry.clone(), client_rpc()));

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
    assert!(failed.is_empty(), "{} of {calls} calls failed: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(ok.iter().any(|(t, l)| *t > killed && l == "b"), "calls went on after the kill");
    eprintln!("kill -9: {calls} calls, none failed; out of rotation after {noticed:?}");
    assert!(noticed < Duration::from_secs(3), "noticed after {noticed:?}");

    // Restart at the same address: a new generation that gets calls again.
    let restarted_at = Instant::now();
    let _a2 = Proc::spawn(&a_addr.to_string(), seed, "a").await;
    let reached = tokio::time::timeout(RESTART_BOUND, async {
        loop {
            if let Ok(label) = client
                .call_worker_with("whoami", vec![], Some("role=worker,label=a"), CallOptions::new().idempotent(true))
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
    let (cluster, seed) = director().await;
    let mut a = Proc::spawn("127.0.0.1:0", seed, "a").await;
    let _b = Proc::spawn("127.0.0.1:0", seed, "b").await;
    let registry = Arc::new(WorkerRegistry::new(cluster, LoadBalancingStrategy::LeastConnections));
    registry.start().await;
    workers_available(&registry, &["a", "b"]).await;
    let client = Arc::new(ClusterClient::new(registry.clone(), client_rpc()));

    // Not idempotent: only calls that never ran may move.
    let load = Load::start(&client, 8, 150, false);
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.signal("-TERM");
    assert!(a.line("DRAINING", PATIENCE).await.is_some());
    let served = a.line("SERVED ", PATIENCE).await.expect("the worker reports its calls");
    let served: usize = served["SERVED ".len()..].parse().unwrap();
    assert!(a.line("LEFT", PATIENCE).await.is_some(), "the worker left");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed, calls) = load.stop().await;
    assert!(failed.is_empty(), "{} of {calls} failed: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    let answered_by_a = ok.iter().filter(|(_, l)| l == "a").count();
    assert_eq!(answered_by_a, served, "every call a ran was answered to the client");
    assert!(served > 0);
    let status = tokio::time::timeout(PATIENCE, a.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}
