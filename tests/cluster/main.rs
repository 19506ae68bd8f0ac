//! Cluster membership between real nodes over QUIC on loopback, in one
//! process: each node has its own RPC server (a member certificate from the
//! test CA; client certificates optional, verified against that CA)
//! carrying its gossip.

mod advertise;
mod processes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rpcnet::cluster::{
    ClusterConfig, ClusterEvent, ClusterMembership, NodeRegistry, NodeStatus, GOSSIP_METHOD,
};
use rpcnet::{RpcClient, RpcConfig, RpcError, RpcServer};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

fn cert(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// Faster than the defaults so tests finish quickly; same mechanisms.
fn fast() -> ClusterConfig {
    ClusterConfig::default()
        .with_gossip_interval(Duration::from_millis(50))
        .with_probe(Duration::from_millis(200), Duration::from_millis(100))
        .with_health_check_interval(Duration::from_millis(200))
        .with_expected_cluster_size(8)
}

const PATIENCE: Duration = Duration::from_secs(20);

struct Node {
    cluster: ClusterMembership,
    addr: SocketAddr,
    server: JoinHandle<Result<(), RpcError>>,
}

impl Node {
    fn kill(self) {
        self.server.abort();
        drop(self.cluster);
    }
}

async fn node_with(
    cert_name: &str,
    key_name: &str,
    ca_name: &str,
    config: ClusterConfig,
) -> Result<Node, RpcError> {
    node_at("127.0.0.1:0", cert_name, key_name, ca_name, config).await
}

async fn node_at(
    bind: &str,
    cert_name: &str,
    key_name: &str,
    ca_name: &str,
    config: ClusterConfig,
) -> Result<Node, RpcError> {
    advertise::node_bound(
        bind,
        &cert(cert_name),
        &cert(key_name),
        &cert(ca_name),
        config,
    )
    .await
}

async fn node(config: ClusterConfig) -> Node {
    node_with("test_cert.pem", "test_key.pem", "ca.pem", config)
        .await
        .expect("node starts")
}

/// Waits until `cluster` sees every address in `addrs` alive.
async fn sees_alive(cluster: &ClusterMembership, addrs: &[SocketAddr]) {
    let mut watch = cluster.watch();
    let wanted: Vec<SocketAddr> = addrs.to_vec();
    tokio::time::timeout(
        PATIENCE,
        watch.wait_for(|v| {
            wanted.iter().all(|a| {
                v.local.as_ref().is_some_and(|l| l.addr() == *a)
                    || v.members
                        .iter()
                        .any(|m| m.addr() == *a && m.status == NodeStatus::Alive)
            })
        }),
    )
    .await
    .expect("membership converged in time")
    .expect("membership running");
}

/// Waits for an event matching `pred`.
async fn event(
    rx: &mut tokio::sync::broadcast::Receiver<ClusterEvent>,
    pred: impl Fn(&ClusterEvent) -> bool,
) -> ClusterEvent {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("event channel closed"),
            }
        }
    })
    .await
    .expect("event arrived in time")
}

async fn cluster_of(n: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(node(fast()).await);
    }
    let seed = nodes[0].addr;
    for n in &nodes[1..] {
        n.cluster
            .join(vec![seed])
            .await
            .expect("join through the seed");
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    for n in &nodes {
        sees_alive(&n.cluster, &addrs).await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_a_cluster_through_one_seed_and_tags_spread() {
    let nodes = cluster_of(5).await;
    nodes[3].cluster.set_tag("role", "worker");
    nodes[3].cluster.set_tag("label", "worker-a");
    let registry = NodeRegistry::new(nodes[0].cluster.clone());
    let mut watch = nodes[0].cluster.watch();
    tokio::time::timeout(
        PATIENCE,
        watch.wait_for(|v| {
            v.members
                .iter()
                .any(|m| m.addr() == nodes[3].addr && m.has_tag("label=worker-a"))
        }),
    )
    .await
    .expect("tags spread")
    .unwrap();
    let workers = registry.nodes_with_tag("role=worker").await;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].addr(), nodes[3].addr);
    assert_eq!(registry.nodes_with_tag("role").await.len(), 1);
    assert!(registry.nodes_with_tag("gpu").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_reported_failed_by_every_other_node() {
    let mut nodes = cluster_of(4).await;
    let mut subscriptions: Vec<_> = nodes[..3].iter().map(|n| n.cluster.subscribe()).collect();
    let victim = nodes.pop().unwrap();
    let victim_addr = victim.addr;
    let started = std::time::Instant::now();
    victim.kill();
    for rx in &mut subscriptions {
        event(
            rx,
            |e| matches!(e, ClusterEvent::NodeFailed(id) if id.addr == victim_addr),
        )
        .await;
    }
    eprintln!("detected by all in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_leave_is_reported_as_left() {
    let mut nodes = cluster_of(3).await;
    let mut subscriptions: Vec<_> = nodes[..2].iter().map(|n| n.cluster.subscribe()).collect();
    let leaver = nodes.pop().unwrap();
    let addr = leaver.addr;
    leaver.cluster.leave().await.unwrap();
    for rx in &mut subscriptions {
        let e = event(rx, |e| matches!(e, ClusterEvent::NodeLeft(id) | ClusterEvent::NodeFailed(id) if id.addr == addr)).await;
        assert!(matches!(e, ClusterEvent::NodeLeft(_)), "got {e:?}");
    }
    leaver.kill();
}

/// Every event received so far.
fn received(rx: &mut tokio::sync::broadcast::Receiver<ClusterEvent>) -> Vec<ClusterEvent> {
    let mut events = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => events.push(e),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => return events,
        }
    }
}

/// A worker whose drain (a call in flight) outlasts SWIM's suspicion
/// timeout, φ's verdict time and the partition grace. A server that shuts
/// down refuses every new call, the gossip method's included, so the
/// draining node hears nobody from then on: it must have announced its
/// departure before that, or the others judge its silence (and it judges
/// theirs) while it drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_longer_than_failure_detection_is_reported_as_a_leave() {
    let config = fast().with_partition_grace(Duration::from_secs(2));
    let drain = Duration::from_secs(5);
    // φ passes 8 about half a second after an acceptable pause of silence.
    let phi_verdict = config.phi.acceptable_pause + Duration::from_millis(500);
    assert!(
        drain > 2 * config.suspicion_timeout()
            && drain > 2 * phi_verdict
            && drain > 2 * config.partition_grace,
        "the drain must outlast failure detection"
    );
    let a = node(config.clone()).await;
    let b = node(config.clone()).await;

    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_optional_client_ca_path(cert("ca.pem"))
        .with_drain_timeout(Duration::from_secs(30));
    let mut server = RpcServer::new(rpc);
    let (started_tx, started) = tokio::sync::mpsc::unbounded_channel::<()>();
    server
        .register("slow", move |_| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(());
                tokio::time::sleep(drain).await;
                Ok(b"done".to_vec())
            }
        })
        .await;
    let quic = server.bind().unwrap();
    let handle = server.handle();
    let shutdown = server.shutdown_handle();
    let addr = handle.socket_addr().unwrap();
    let serving = tokio::spawn(async move { server.start(quic).await });
    let worker = ClusterMembership::new(config.with_server(handle))
        .await
        .unwrap();
    for n in [&b.cluster, &worker] {
        n.join(vec![a.addr]).await.unwrap();
    }
    let all = [a.addr, b.addr, addr];
    for n in [&a.cluster, &b.cluster, &worker] {
        sees_alive(n, &all).await;
    }
    let mut others: Vec<_> = [&a.cluster, &b.cluster]
        .iter()
        .map(|c| c.subscribe())
        .collect();
    let mut own = worker.subscribe();

    // A call in flight keeps the drain going for `drain`.
    let client = RpcClient::connect(addr, RpcConfig::new(cert("ca.pem"), "127.0.0.1:0"))
        .await
        .unwrap();
    let call = tokio::spawn(async move { client.call("slow", Vec::new()).await });
    let mut started = started;
    started.recv().await.expect("the call is running");
    let began = std::time::Instant::now();
    let drained =
        rpcnet::cluster::drain_and_leave(&worker, &shutdown, serving, Duration::from_secs(30))
            .await;
    let took = began.elapsed();
    drained.expect("drained within the timeout");
    assert_eq!(call.await.unwrap().unwrap(), b"done");
    assert!(
        took >= drain - Duration::from_millis(500),
        "drained in {took:?}"
    );

    for rx in &mut others {
        let e = event(rx, |e| {
            matches!(e, ClusterEvent::NodeLeft(id) | ClusterEvent::NodeFailed(id) if id.addr == addr)
        })
        .await;
        assert!(matches!(e, ClusterEvent::NodeLeft(_)), "got {e:?}");
    }
    let [a_rx, b_rx] = &mut others[..] else {
        unreachable!()
    };
    for (who, rx) in [("a", a_rx), ("b", b_rx), ("the worker", &mut own)] {
        let failed: Vec<_> = received(rx)
            .into_iter()
            .filter(|e| matches!(e, ClusterEvent::NodeFailed(_)))
            .collect();
        assert!(failed.is_empty(), "{who} reported {failed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_certificate_from_another_ca_is_refused() {
    let member = node(fast()).await;
    // An outsider with a member certificate from its own CA: it trusts
    // nobody in the cluster and nobody trusts it.
    let outsider = node_with(
        "other-member.pem",
        "other-member-key.pem",
        "other-member-ca.pem",
        fast().with_join_timeout(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    let err = outsider.cluster.join(vec![member.addr]).await.unwrap_err();
    assert!(matches!(err, RpcError::ConnectionError(_)), "{err:?}");
    // An application client without any certificate connects (it only
    // trusts the CA) but the gossip endpoint refuses it.
    let anonymous = RpcClient::connect(member.addr, RpcConfig::new(cert("ca.pem"), "127.0.0.1:0"))
        .await
        .expect("application clients need no certificate");
    let refused = anonymous
        .call(GOSSIP_METHOD, vec![0, 1, 2])
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RpcError::RemoteError(m) if m.contains("member certificate")),
        "{refused:?}"
    );
    // A certificate from the other CA is refused too, even trusting the member's CA.
    let stranger = RpcConfig::new(cert("ca.pem"), "127.0.0.1:0")
        .with_client_identity(cert("other_cert.pem"), cert("other_key.pem"));
    let refused = match RpcClient::connect(member.addr, stranger).await {
        Err(e) => e,
        Ok(c) => c.call(GOSSIP_METHOD, vec![0, 1, 2]).await.unwrap_err(),
    };
    assert!(matches!(refused, RpcError::TlsError(_)), "{refused:?}");
    assert!(
        member.cluster.members().is_empty(),
        "the outsider got in: {:?}",
        member.cluster.members()
    );
}

#[tokio::test]
async fn membership_requires_a_server_that_verifies_client_certificates() {
    let mut server = RpcServer::new(
        RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0").with_key_path(cert("test_key.pem")),
    );
    let _quic = server.bind().unwrap();
    let err = ClusterMembership::new(fast().with_server(server.handle()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::ConfigError(m) if m.contains("client_ca_path")),
        "{err:?}"
    );
    let err = ClusterMembership::new(fast()).await.unwrap_err();
    assert!(matches!(err, RpcError::ConfigError(_)));
}

#[tokio::test]
async fn membership_requires_a_member_certificate() {
    // A certificate without the member role (any CA: the check is on the role).
    let mut server = RpcServer::new(
        RpcConfig::new(cert("other_cert.pem"), "127.0.0.1:0")
            .with_key_path(cert("other_key.pem"))
            .with_optional_client_ca_path(cert("ca.pem")),
    );
    let _quic = server.bind().unwrap();
    let err = ClusterMembership::new(fast().with_server(server.handle()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::ConfigError(m) if m.contains("member certificate")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_learns_how_many_events_it_missed() {
    let mut config = fast();
    config.event_capacity = 16;
    let a = node(config).await;
    let b = node(fast()).await;
    let mut slow = a.cluster.subscribe();
    b.cluster.join(vec![a.addr]).await.unwrap();
    for i in 0..60 {
        b.cluster.set_tag("counter", i.to_string());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut watch = a.cluster.watch();
    tokio::time::timeout(
        PATIENCE,
        watch.wait_for(|v| v.members.iter().any(|m| m.has_tag("counter=59"))),
    )
    .await
    .expect("last tag arrived")
    .unwrap();
    match slow.recv().await {
        Err(RecvError::Lagged(missed)) => assert!(missed > 0),
        other => panic!("expected a lag report, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checker_reports_phi_that_rises_when_a_member_goes_silent() {
    use rpcnet::cluster::HealthChecker;
    let mut nodes = cluster_of(2).await;
    let health = HealthChecker::new(nodes[0].cluster.clone(), fast());
    health.start().await;
    let other = nodes[1].addr;
    // Wait for a few heartbeats, then φ of a live member is low.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = health.phi(other).expect("known member");
    assert!(live < 8.0, "phi of a live member: {live}");
    assert_eq!(health.healthy().len(), 1);
    nodes.pop().unwrap().kill();
    // While the silent member is still considered alive, each health tick
    // publishes a fresh φ: it must be seen rising before the verdict.
    let mut watch = nodes[0].cluster.watch();
    let mut rising = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            watch.changed().await.unwrap();
            let view = watch.borrow_and_update().clone();
            let m = view.members.iter().find(|m| m.addr() == other).unwrap();
            if m.status != NodeStatus::Alive {
                break;
            }
            rising.push(m.phi);
        }
    })
    .await
    .expect("the silent member was marked failed");
    assert!(
        rising.len() >= 2,
        "φ snapshots before the verdict: {rising:?}"
    );
    assert!(
        rising.windows(2).all(|w| w[1] >= w[0]),
        "φ did not rise: {rising:?}"
    );
    assert!(
        rising.last().unwrap() > rising.first().unwrap(),
        "φ did not rise: {rising:?}"
    );
    assert!(health.healthy().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_given_by_name_is_resolved_again_while_the_node_is_alone() {
    // A port nobody serves yet.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = fast()
        .with_rejoin_interval(Duration::from_millis(300))
        .with_join_timeout(Duration::from_millis(500));
    let joiner = node(config).await;
    let seed_name = format!("localhost:{port}");
    let early = joiner.cluster.join_named([seed_name.as_str()]).await;
    assert!(
        matches!(early, Err(RpcError::ConnectionError(_))),
        "{early:?}"
    );
    // The seed starts later, on the name's address: the lone node
    // resolves the name again and joins, without being told.
    let seed = node_at(
        &format!("127.0.0.1:{port}"),
        "test_cert.pem",
        "test_key.pem",
        "ca.pem",
        fast(),
    )
    .await
    .expect("seed starts on the named port");
    sees_alive(&joiner.cluster, &[seed.addr]).await;
    sees_alive(&seed.cluster, &[joiner.addr]).await;
    // Names that are not host:port are configuration errors.
    for bad in ["", "localhost", ":7000", "localhost:http"] {
        let err = joiner.cluster.join_named([bad]).await.unwrap_err();
        assert!(matches!(err, RpcError::ConfigError(_)), "{bad:?}: {err:?}");
    }
}

/// Gossip traffic is counted on both sides once metrics are enabled (read
/// back from a recorder installed here; only this test installs one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_traffic_is_counted_in_the_membership_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("no other recorder");
    rpcnet::telemetry::enable();
    let _nodes = cluster_of(3).await;
    // A snapshot takes what the counters gathered since the last one:
    // keep the totals.
    let mut totals = std::collections::HashMap::<String, u64>::new();
    let take = |totals: &mut std::collections::HashMap<String, u64>| {
        for (key, .., value) in snapshotter.snapshot().into_vec() {
            if let DebugValue::Counter(n) = value {
                *totals.entry(key.key().name().to_owned()).or_default() += n;
            }
        }
    };
    let count = |totals: &std::collections::HashMap<String, u64>, name: &str| {
        totals.get(name).copied().unwrap_or(0)
    };
    // Counters are added on every health-check tick.
    tokio::time::timeout(Duration::from_secs(10), async {
        while count(&totals, "rpcnet.membership.gossip.received.packets") == 0
            || count(&totals, "rpcnet.membership.gossip.sent.packets") == 0
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            take(&mut totals);
        }
    })
    .await
    .expect("gossip counted");
    assert!(
        count(&totals, "rpcnet.membership.gossip.sent.bytes")
            > count(&totals, "rpcnet.membership.gossip.sent.packets")
    );
    assert!(count(&totals, "rpcnet.membership.gossip.received.bytes") > 0);
}
