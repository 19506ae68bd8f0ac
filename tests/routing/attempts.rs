//! Per-attempt timeouts, with real nodes on loopback: a worker whose QUIC
//! stack answers (so its connection stays up) while its handler never
//! does.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rpcnet::cluster::{
    ClusterClient, EjectionPolicy, LoadBalancingStrategy, StopReason, WorkerRegistry, WorkerState,
};
use rpcnet::{CallOptions, RpcError};
use tokio::time::Instant;

use super::{available, client_rpc, setup};

/// A handler delay that never ends within a test.
const NEVER: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_leave_a_worker_whose_handler_never_answers_well_inside_their_deadline() {
    let s = setup(
        LoadBalancingStrategy::RoundRobin,
        &[
            ("a", Duration::ZERO),
            ("b", Duration::ZERO),
            ("hung", NEVER),
        ],
    )
    .await;
    let deadline = Duration::from_secs(2);
    let options = CallOptions::new().idempotent(true).with_timeout(deadline);
    let client = &s.client;
    let started = Instant::now();
    let calls: Vec<(Result<Vec<u8>, RpcError>, Duration)> = futures::stream::iter(0..200)
        .map(|_| {
            let options = options.clone();
            async move {
                let start = Instant::now();
                let answer = client
                    .call_worker_with("work", vec![], Some("role=worker"), options)
                    .await;
                (answer, start.elapsed())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut took: Vec<Duration> = calls.iter().map(|(_, t)| *t).collect();
    took.sort();
    let p50 = took[took.len() / 2];
    let p99 = took[took.len() * 99 / 100 - 1];
    let max = took[took.len() - 1];
    let failed: Vec<&RpcError> = calls.iter().filter_map(|(r, _)| r.as_ref().err()).collect();
    eprintln!(
        "200 idempotent calls, one worker of 3 hung: {} failed; p50 {p50:?}, p99 {p99:?}, max {max:?}; run {:?}",
        failed.len(),
        started.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    for (answer, _) in &calls {
        let label = answer.as_deref().unwrap();
        assert!(
            label == b"a" || label == b"b",
            "{:?}",
            String::from_utf8_lossy(label)
        );
    }
    assert!(
        p99 < deadline / 2,
        "p99 {p99:?}: the hung worker held calls to their deadline"
    );

    // An abandoned attempt counts as a timeout for the worker's ejection
    // (here one timeout ejects, for a minute).
    let registry = Arc::new(
        WorkerRegistry::with_seed(
            s.director.cluster.clone(),
            LoadBalancingStrategy::RoundRobin,
            7,
        )
        .with_ejection_policy(EjectionPolicy {
            consecutive_failures: 1,
            base_ejection: Duration::from_secs(60),
            ..EjectionPolicy::default()
        }),
    );
    registry.start().await;
    available(&registry, 3).await;
    let strict = ClusterClient::new(registry.clone(), client_rpc());
    let options = options.with_attempt_timeout(Duration::from_millis(200));
    let answer = strict
        .call_worker_with("work", vec![], Some("label=hung"), options)
        .await;
    assert!(
        matches!(&answer, Err(RpcError::Failover { attempts, .. }) if matches!(attempts[0].error, RpcError::Timeout)),
        "{answer:?}"
    );
    let hung = registry
        .workers()
        .into_iter()
        .find(|w| w.label.as_deref() == Some("hung"))
        .expect("still a member");
    assert_eq!(hung.state, WorkerState::Ejected, "{hung:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_is_not_idempotent_stays_on_its_one_worker_until_its_deadline() {
    let s = setup(
        LoadBalancingStrategy::RoundRobin,
        &[("a", Duration::ZERO), ("hung", NEVER)],
    )
    .await;
    let deadline = Duration::from_millis(800);
    // Even with a per-attempt timeout asked for: it applies to idempotent calls only.
    let options = CallOptions::new()
        .with_timeout(deadline)
        .with_attempt_timeout(Duration::from_millis(50));
    let mut answered = 0;
    for _ in 0..4 {
        let start = Instant::now();
        match s
            .client
            .call_worker_with("work", vec![], Some("role=worker"), options.clone())
            .await
        {
            Ok(answer) => {
                assert_eq!(answer, b"a");
                answered += 1;
            }
            Err(RpcError::Failover { attempts, stopped }) => {
                let took = start.elapsed();
                assert_eq!(attempts.len(), 1, "sent to one worker only: {attempts:?}");
                assert!(
                    matches!(attempts[0].error, RpcError::Timeout),
                    "{attempts:?}"
                );
                assert!(matches!(stopped, StopReason::MayHaveRun), "{stopped:?}");
                assert!(took >= deadline, "cut short after {took:?}");
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(
        answered, 2,
        "round robin: two of four calls on the hung worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_from_the_last_worker_left_is_waited_for_not_failed() {
    // Every worker answers in 300 ms, past the 100 ms per-attempt timeout,
    // well inside the 3 s deadline.
    let slow = Duration::from_millis(300);
    let options = CallOptions::new()
        .idempotent(true)
        .with_timeout(Duration::from_secs(3))
        .with_attempt_timeout(Duration::from_millis(100));
    for labels in [&["only"][..], &["a", "b"][..]] {
        let delays: Vec<_> = labels.iter().map(|l| (*l, slow)).collect();
        let s = setup(LoadBalancingStrategy::RoundRobin, &delays).await;
        let started = Instant::now();
        let answer = s
            .client
            .call_worker_with("work", vec![], Some("role=worker"), options.clone())
            .await;
        let took = started.elapsed();
        eprintln!("{labels:?}: {answer:?} after {took:?}");
        // One worker: its answer. Two: the first is left at 100 ms, the
        // second (the last left) answers.
        assert!(answer.is_ok(), "{labels:?}: {answer:?} after {took:?}");
        let bound = slow * labels.len() as u32;
        assert!(
            took < bound + Duration::from_millis(500),
            "{labels:?}: {took:?}"
        );
    }
}
