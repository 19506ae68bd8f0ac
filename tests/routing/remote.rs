//! Routing for an application that is not a member, with real nodes on
//! loopback: it holds only the cluster CA, follows a member's view over
//! RPC, routes and fails over as a member's client would, and cannot
//! change membership.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rpcnet::cluster::{
    ClusterClient, LoadBalancingStrategy, MemberAddr, RemoteView, WorkerRegistry, GOSSIP_METHOD,
};
use rpcnet::{CallOptions, RpcClient, RpcConfig, RpcError};

use super::streams::member;
use super::{available, cert, PATIENCE};

/// Calls `label` `n` times; how many each worker answered.
async fn tally(client: &ClusterClient, n: usize, options: &CallOptions) -> HashMap<String, usize> {
    let answers: Vec<Result<Vec<u8>, RpcError>> = futures::stream::iter(0..n)
        .map(|_| client.call_worker_with("label", vec![], Some("role=worker"), options.clone()))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut counts = HashMap::new();
    for answer in answers {
        let label = String::from_utf8(answer.expect("the call succeeds")).unwrap();
        *counts.entry(label).or_insert(0) += 1;
    }
    counts
}

/// Waits until `registry`'s pool no longer lists the worker `label`.
async fn dropped(registry: &WorkerRegistry, label: &str) {
    let mut changes = registry.changes();
    let listed = || {
        registry
            .workers()
            .iter()
            .any(|w| w.label.as_deref() == Some(label))
    };
    tokio::time::timeout(PATIENCE, async {
        while listed() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{label} left the pool: {:?}", registry.workers()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_holding_only_the_ca_routes_fails_over_and_cannot_gossip() {
    let starts = Arc::new(AtomicUsize::new(0));
    let director = member(None, None, starts.clone()).await;
    let mut workers = Vec::new();
    for label in ["a", "b", "c"] {
        workers.push(member(Some(label), Some(director.addr), starts.clone()).await);
    }
    // The application's credentials: the cluster CA, no certificate.
    let app = RpcConfig::new(cert("ca.pem"), "127.0.0.1:0");
    let view = RemoteView::connect(vec![director.addr], app.clone())
        .await
        .expect("the director serves its view");
    assert_eq!(view.followed(), Some(director.addr.into()));
    // Given by name (a Kubernetes service, say), resolved here and
    // verified as the server name the director's certificate carries.
    let by_name: MemberAddr = format!("localhost:{}", director.addr.port())
        .parse()
        .unwrap();
    let named = RemoteView::connect([by_name], app.clone())
        .await
        .expect("the director serves its view to a client that dialed its name");
    assert_eq!(named.followed(), Some(by_name));
    drop(named);
    let registry = Arc::new(WorkerRegistry::following(
        view.clone(),
        LoadBalancingStrategy::RoundRobin,
    ));
    registry.start().await;
    assert!(registry.cluster().is_none(), "not a member");
    available(&registry, 3).await;
    let client = ClusterClient::new(registry.clone(), app.clone());

    // Round robin across the three workers.
    let plain = CallOptions::new();
    let counts = tally(&client, 30, &plain).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| (9..=11).contains(n)), "{counts:?}");

    // b dies: idempotent calls fail over at once, before the view says so ...
    let idempotent = CallOptions::new()
        .idempotent(true)
        .with_timeout(Duration::from_secs(5));
    workers.remove(1).kill();
    let counts = tally(&client, 30, &idempotent).await;
    assert!(!counts.contains_key("b"), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 30);
    // ... and b leaves the application's pool when the director's view does.
    dropped(&registry, "b").await;

    // The credentials that follow the view cannot change membership.
    let caller = RpcClient::connect(director.addr, app.clone())
        .await
        .unwrap();
    let refused = caller.call(GOSSIP_METHOD, vec![1, 2, 3]).await.unwrap_err();
    assert!(
        matches!(&refused, RpcError::RemoteError(m) if m.contains("member certificate")),
        "{refused:?}"
    );

    // The followed member goes: the view is followed from another member,
    // and still tracks the cluster.
    let director_addr = director.addr;
    director.kill();
    let mut followed = view.watch();
    tokio::time::timeout(PATIENCE, async {
        while view.followed().is_none_or(|m| m == director_addr) {
            followed.changed().await.unwrap();
        }
    })
    .await
    .expect("another member followed");
    let by = view.followed().unwrap();
    assert!(workers.iter().any(|w| w.addr == by), "{by}");
    workers.remove(1).kill(); // c
    dropped(&registry, "c").await;
    let counts = tally(&client, 10, &plain).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_follows_a_member_and_routes() {
    let starts = Arc::new(AtomicUsize::new(0));
    let director = member(None, None, starts.clone()).await;
    let _a = member(Some("a"), Some(director.addr), starts.clone()).await;
    let app = RpcConfig::new(cert("ca.pem"), "127.0.0.1:0");
    let client = ClusterClient::following(
        vec![director.addr],
        app,
        LoadBalancingStrategy::LeastConnections,
    )
    .await
    .unwrap();
    available(client.registry(), 1).await;
    let answer = client
        .call_worker("label", vec![], Some("role=worker"))
        .await
        .unwrap();
    assert_eq!(answer, b"a");
    // No member answers at the address given: nothing to follow.
    let unreachable: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let no_view = RemoteView::connect(
        vec![unreachable],
        RpcConfig::new(cert("ca.pem"), "127.0.0.1:0")
            .with_handshake_timeout(Duration::from_millis(300)),
    )
    .await;
    assert!(no_view.is_err(), "{no_view:?}");
}

/// Members listed before a live one that no longer answer (died since
/// the view that listed them: a handshake with them can only time out,
/// after 10 s by default) do not hold up following the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_no_longer_answer_do_not_hold_up_following_a_live_one() {
    let director = member(None, None, Arc::new(AtomicUsize::new(0))).await;
    // Sockets that take every packet and never answer.
    let silent: Vec<std::net::UdpSocket> = (0..3)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut members: Vec<std::net::SocketAddr> =
        silent.iter().map(|s| s.local_addr().unwrap()).collect();
    members.push(director.addr);
    let app = RpcConfig::new(cert("ca.pem"), "127.0.0.1:0");
    let handshake_timeout = Duration::from_secs(10);
    let view = tokio::time::timeout(handshake_timeout, RemoteView::connect(members, app))
        .await
        .expect("following began before one handshake timeout passed")
        .expect("the director serves its view");
    assert_eq!(view.followed(), Some(director.addr.into()));
}
