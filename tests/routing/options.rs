//! What a caller sets, with real nodes on loopback: call options in every
//! routed call mode (metadata and timeout reach the worker), and the
//! registry's ejection policy.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rpcnet::cluster::{
    ClusterClient, EjectionPolicy, LoadBalancingStrategy, WorkerRegistry, WorkerState, WorkerStream,
};
use rpcnet::{CallOptions, RpcError};
use tokio::time::Instant;

use super::{available, client_rpc, in_flight, setup, PATIENCE};

/// The responses of a routed stream, as text.
async fn texts(stream: WorkerStream) -> Vec<String> {
    stream
        .map(|r| String::from_utf8(r.expect("a response")).unwrap())
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_routed_streaming_mode_brings_its_options_to_the_handler() {
    let s = setup(LoadBalancingStrategy::RoundRobin, &[("a", Duration::ZERO)]).await;
    let f = Some("role=worker");
    let options = CallOptions::new()
        .with_metadata("trace-id", b"t-7".to_vec())
        .with_timeout(Duration::from_secs(10));
    let requests = || futures::stream::iter(vec![vec![1], vec![2]]);
    let c = &s.client;

    let server_streaming = c
        .call_worker_server_streaming_with("whoami", vec![1], f, options.clone())
        .await
        .unwrap();
    assert_eq!(
        texts(server_streaming).await,
        ["ServerStreaming true t-7 1"]
    );
    let bidirectional = c
        .call_worker_streaming_with("whoami", requests(), f, options.clone())
        .await
        .unwrap();
    assert_eq!(texts(bidirectional).await, ["Bidirectional true t-7 2"]);
    let client_streaming = c
        .call_worker_client_streaming_with("whoami", requests(), f, options.clone())
        .await
        .unwrap();
    assert_eq!(client_streaming, b"ClientStreaming true t-7 2");

    // Default options: no metadata; a stream has no deadline, a
    // client-streaming call the default timeout.
    let plain = c
        .call_worker_server_streaming("whoami", vec![1], f)
        .await
        .unwrap();
    assert_eq!(texts(plain).await, ["ServerStreaming false  1"]);
    let plain = c
        .call_worker_streaming("whoami", requests(), f)
        .await
        .unwrap();
    assert_eq!(texts(plain).await, ["Bidirectional false  2"]);
    let plain = c
        .call_worker_client_streaming("whoami", requests(), f)
        .await
        .unwrap();
    assert_eq!(plain, b"ClientStreaming true  2");
    assert_eq!(in_flight(&s.registry), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_stream_ends_at_the_timeout_of_its_options_and_not_without_one() {
    let s = setup(LoadBalancingStrategy::RoundRobin, &[("a", Duration::ZERO)]).await;
    let f = Some("role=worker");
    let timeout = Duration::from_millis(300);
    let options = CallOptions::new().with_timeout(timeout);
    for bidirectional in [false, true] {
        let started = Instant::now();
        let mut ticks = if bidirectional {
            let requests = futures::stream::pending();
            s.client
                .call_worker_streaming_with("ticks", requests, f, options.clone())
                .await
        } else {
            s.client
                .call_worker_server_streaming_with("ticks", vec![], f, options.clone())
                .await
        }
        .unwrap();
        let mut received = 0;
        let end = loop {
            match ticks.next().await {
                Some(Ok(_)) => received += 1,
                end => break end,
            }
        };
        let elapsed = started.elapsed();
        assert!(matches!(end, Some(Err(RpcError::Timeout))), "{end:?}");
        assert!(received > 0, "ticks before the deadline");
        assert!(
            elapsed >= timeout && elapsed < PATIENCE,
            "ended after {elapsed:?}"
        );
    }
    let mut ticks = s
        .client
        .call_worker_server_streaming("ticks", vec![], f)
        .await
        .unwrap();
    let until = Instant::now() + 3 * timeout;
    while Instant::now() < until {
        assert!(ticks.next().await.unwrap().is_ok(), "no deadline");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registrys_ejection_policy_decides_when_and_for_how_long_a_worker_is_out() {
    let s = setup(LoadBalancingStrategy::RoundRobin, &[("a", Duration::ZERO)]).await;
    let f = Some("role=worker");
    let base = Duration::from_secs(4);
    // No limit on ejections: with its only worker ejected, the registry
    // has nothing to route to (by default it would route to it anyway).
    let policy = EjectionPolicy {
        consecutive_failures: 1,
        base_ejection: base,
        max_ejection_percent: 100,
        ..EjectionPolicy::default()
    };
    let registry = Arc::new(
        WorkerRegistry::with_seed(
            s.director.cluster.clone(),
            LoadBalancingStrategy::RoundRobin,
            7,
        )
        .with_ejection_policy(policy),
    );
    assert_eq!(registry.ejection_policy(), policy);
    assert_eq!(s.registry.ejection_policy(), EjectionPolicy::default());
    registry.start().await;
    available(&registry, 1).await;
    let client = ClusterClient::new(registry.clone(), client_rpc());
    let state = |r: &WorkerRegistry| r.workers()[0].state;
    // Connected first, so that the next call times out on the worker.
    assert_eq!(client.call_worker("work", vec![], f).await.unwrap(), b"a");

    // One timeout ejects (the default policy waits for 5 in a row) ...
    let timed_out = client
        .call_worker_with(
            "slow",
            b"3000".to_vec(),
            f,
            CallOptions::new().with_timeout(Duration::from_millis(200)),
        )
        .await;
    let ejected = Instant::now();
    assert!(
        matches!(&timed_out, Err(RpcError::Failover { attempts, .. }) if matches!(attempts[0].error, RpcError::Timeout)),
        "{timed_out:?}"
    );
    assert_eq!(state(&registry), WorkerState::Ejected);
    assert_eq!(
        state(&s.registry),
        WorkerState::Available,
        "ejection is each registry's own record"
    );
    // ... and lasts the policy's base, past the default's 1 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(ejected.elapsed() < base, "the test ran too slowly to tell");
    assert_eq!(state(&registry), WorkerState::Ejected);
    assert!(matches!(
        client.call_worker("work", vec![], f).await,
        Err(RpcError::NoWorkers { unavailable: 1, .. })
    ));
    tokio::time::timeout(PATIENCE, async {
        while state(&registry) == WorkerState::Ejected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the ejection ends");
    assert!(ejected.elapsed() >= base - Duration::from_millis(100));
    // The probe call succeeds and the worker is back for good.
    assert_eq!(client.call_worker("work", vec![], f).await.unwrap(), b"a");
    assert_eq!(state(&registry), WorkerState::Available);
}
