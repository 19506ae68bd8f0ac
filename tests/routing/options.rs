//! What a caller sets, with real nodes on loopback: call options in every
//! routed call mode (metadata and timeout reach the worker).

use std::time::Duration;

use futures::StreamExt;
use rpcnet::cluster::{LoadBalancingStrategy, WorkerStream};
use rpcnet::{CallOptions, RpcError};
use tokio::time::Instant;

use super::{in_flight, setup, PATIENCE};

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
