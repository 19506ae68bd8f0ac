//! Routing metrics, read back from a recorder installed here (only this
//! test of the binary installs one).

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use rpcnet::cluster::LoadBalancingStrategy;

use super::setup;

/// A worker dies unnoticed by membership: calls routed to it move on,
/// and the client's metrics show the failovers, the retries with their
/// error, the ejection of the dead worker and the calls the other answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failovers_retries_and_ejections_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("no other recorder");
    rpcnet::telemetry::enable();

    let s = setup(
        LoadBalancingStrategy::RoundRobin,
        &[("a", Duration::ZERO), ("b", Duration::ZERO)],
    )
    .await;
    let mut workers = s.workers.into_iter();
    let a = workers.next().unwrap();
    let b = workers.next().unwrap();
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    a.kill();
    for _ in 0..4 {
        s.client
            .call_worker("work", vec![], Some("role=worker"))
            .await
            .expect("retried on b");
    }
    // Counters by name and `worker` label (empty when none), summed.
    let mut counters: HashMap<(String, String), u64> = HashMap::new();
    for (key, .., value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            let worker = key
                .key()
                .labels()
                .find(|l| l.key() == "worker")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            *counters
                .entry((key.key().name().to_owned(), worker))
                .or_default() += n;
        }
    }
    let count = |name: &str, worker: &str| {
        counters
            .get(&(name.to_owned(), worker.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert!(count("rpcnet.routing.failovers", "") >= 1, "{counters:?}");
    assert!(count("rpcnet.routing.retries", "") >= 1, "{counters:?}");
    assert_eq!(count("rpcnet.routing.calls", &b_addr), 4, "{counters:?}");
    assert_eq!(count("rpcnet.routing.calls", &a_addr), 0, "{counters:?}");
    assert!(
        count("rpcnet.routing.ejections", &a_addr) >= 1,
        "{counters:?}"
    );
    drop(b);
}
