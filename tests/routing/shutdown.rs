//! Workers shut down under load never cost a non-idempotent call a second
//! execution: what a worker ran is answered or reported as may-have-run,
//! and only calls it refused move to another worker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpcnet::cluster::{ClusterClient, LoadBalancingStrategy, WorkerRegistry};
use rpcnet::{RpcConfig, RpcServer};

use super::{available, cert, client_rpc, node, Node};

/// Executions per call id, across every worker.
type Ledger = Arc<Mutex<HashMap<u64, usize>>>;

/// A worker whose `op` handler records each execution of the call id in
/// its payload, then answers after 0-2 ms.
async fn worker(label: String, seed: SocketAddr, ledger: Ledger) -> Node {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_client_ca_path(cert("ca.pem"))
        .with_drain_timeout(Duration::from_secs(5));
    let server = RpcServer::new(rpc);
    server
        .register("op", move |payload| {
            let ledger = ledger.clone();
            async move {
                let id = u64::from_le_bytes(payload[..8].try_into().unwrap());
                *ledger.lock().unwrap().entry(id).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(id % 3)).await;
                Ok(payload)
            }
        })
        .await;
    super::start(server, Some(&label), Some(seed)).await
}

/// Twenty rounds: one of three workers is shut down (`ShutdownHandle`)
/// while 32 callers keep non-idempotent calls in flight through a
/// `ClusterClient`, and a new worker takes its place. No call runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdowns_under_load_never_run_a_non_idempotent_call_twice() {
    let director = node(None, Duration::ZERO, None).await;
    let ledger = Ledger::default();
    let mut workers = Vec::new();
    for n in 0..3 {
        workers.push(worker(format!("w{n}"), director.addr, ledger.clone()).await);
    }
    let registry = Arc::new(WorkerRegistry::new(
        director.cluster.clone(),
        LoadBalancingStrategy::RoundRobin,
    ));
    registry.start().await;
    available(&registry, 3).await;
    let client = Arc::new(ClusterClient::new(registry.clone(), client_rpc()));

    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for _ in 0..32 {
        let (client, stop, next_id) = (client.clone(), stop.clone(), next_id.clone());
        callers.push(tokio::spawn(async move {
            let (mut answered, mut failed) = (0usize, 0usize);
            // Bounded: the test stops the callers after the last round.
            for _ in 0..1_000_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let payload = id.to_le_bytes().to_vec();
                match client.call_worker("op", payload, Some("role=worker")).await {
                    Ok(_) => answered += 1,
                    Err(_) => failed += 1,
                }
            }
            (answered, failed)
        }));
    }

    for round in 0..20 {
        // Let load build up on every worker, then shut the oldest down.
        let before = next_id.load(Ordering::Relaxed);
        while next_id.load(Ordering::Relaxed) < before + 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let leaving = workers.remove(0);
        leaving.shutdown.shutdown();
        tokio::time::timeout(Duration::from_secs(10), leaving.server)
            .await
            .expect("the worker drained")
            .unwrap()
            .unwrap();
        drop(leaving.cluster);
        workers.push(worker(format!("r{round}"), director.addr, ledger.clone()).await);
    }
    stop.store(true, Ordering::SeqCst);
    let (mut answered, mut failed) = (0, 0);
    for caller in callers {
        let (a, f) = tokio::time::timeout(Duration::from_secs(30), caller)
            .await
            .expect("callers stop")
            .unwrap();
        answered += a;
        failed += f;
    }
    let twice: Vec<(u64, usize)> = ledger
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, &runs)| runs > 1)
        .map(|(&id, &runs)| (id, runs))
        .collect();
    assert!(
        twice.is_empty(),
        "{} calls ran more than once ({answered} answered, {failed} failed): {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert!(answered > 4_000, "{answered} answered, {failed} failed");
}
