//! Metrics read back through an installed recorder: what the admin
//! endpoint records from a view, events and a registry, and what it
//! samples from a live in-process cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use rpcnet::admin::{metrics as admin_metrics, AdminServer, Phase};
use rpcnet::cluster::{
    ClusterConfig, ClusterEvent, ClusterMembership, ClusterView, LoadBalancingStrategy, NodeId,
    NodeInfo, NodeStatus, WorkerRegistry,
};
use rpcnet::{RpcConfig, RpcError, RpcServer};

use super::{cert, http_get};

/// The samples of a Prometheus text exposition: `name{labels}` → value.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((key.to_string(), value))
        })
        .collect()
}

fn info(port: u16, generation: u64, status: NodeStatus, phi: f64) -> NodeInfo {
    NodeInfo {
        id: NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), generation),
        status,
        tags: Default::default(),
        phi,
    }
}

#[test]
fn membership_metrics_read_back_through_an_installed_recorder() {
    let recorder = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .build_recorder();
    let handle = recorder.handle();
    let view = ClusterView {
        local: Some(info(7000, 1, NodeStatus::Alive, 0.0)),
        members: vec![
            info(7001, 1, NodeStatus::Alive, 0.5),
            info(7002, 1, NodeStatus::Suspect, 3.25),
            // A restart: the old life failed, the new one alive; φ is the new one's.
            info(7003, 1, NodeStatus::Failed, f64::INFINITY),
            info(7003, 2, NodeStatus::Alive, 1.0),
            info(7004, 1, NodeStatus::Left, 0.0),
        ],
        local_health: 3,
    };
    let id = |port| NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), 1);
    let events = [
        ClusterEvent::NodeJoined {
            node: id(7001),
            tags: Default::default(),
        },
        ClusterEvent::NodeJoined {
            node: id(7002),
            tags: Default::default(),
        },
        ClusterEvent::NodeFailed(id(7003)),
        ClusterEvent::NodeLeft(id(7004)),
        ClusterEvent::PartitionHealed,
    ];
    ::metrics::with_local_recorder(&recorder, || {
        admin_metrics::describe();
        admin_metrics::record_view(&view);
        for event in &events {
            admin_metrics::record_event(event);
        }
    });
    let text = handle.render();
    let got = samples(&text);
    let expect = [
        ("rpcnet_cluster_members{state=\"alive\"}", 3.0),
        ("rpcnet_cluster_members{state=\"suspect\"}", 1.0),
        ("rpcnet_cluster_members{state=\"failed\"}", 1.0),
        ("rpcnet_cluster_members{state=\"left\"}", 1.0),
        ("rpcnet_cluster_member_phi{peer=\"127.0.0.1:7001\"}", 0.5),
        ("rpcnet_cluster_member_phi{peer=\"127.0.0.1:7002\"}", 3.25),
        ("rpcnet_cluster_member_phi{peer=\"127.0.0.1:7003\"}", 1.0),
        ("rpcnet_cluster_member_phi{peer=\"127.0.0.1:7004\"}", 0.0),
        ("rpcnet_cluster_local_health", 3.0),
        ("rpcnet_cluster_events_total{kind=\"joined\"}", 2.0),
        ("rpcnet_cluster_events_total{kind=\"failed\"}", 1.0),
        ("rpcnet_cluster_events_total{kind=\"left\"}", 1.0),
        ("rpcnet_cluster_events_total{kind=\"healed\"}", 1.0),
    ];
    for (key, value) in expect {
        assert_eq!(got.get(key), Some(&value), "{key} in\n{text}");
    }
    assert!(
        text.contains("# TYPE rpcnet_cluster_events_total counter")
            && text.contains("# TYPE rpcnet_cluster_members gauge")
            && text.contains("# HELP rpcnet_cluster_member_phi "),
        "{text}"
    );
}

/// An in-process cluster node (a member certificate for loopback).
pub struct Member {
    pub cluster: ClusterMembership,
    pub addr: SocketAddr,
    pub server: tokio::task::JoinHandle<Result<(), RpcError>>,
}

/// Faster than the defaults so tests finish quickly; same mechanisms.
pub fn fast() -> ClusterConfig {
    ClusterConfig::default()
        .with_gossip_interval(Duration::from_millis(50))
        .with_probe(Duration::from_millis(200), Duration::from_millis(100))
        .with_health_check_interval(Duration::from_millis(200))
        .with_expected_cluster_size(8)
}

pub async fn member(tags: &[(&str, &str)]) -> Member {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_optional_client_ca_path(cert("ca.pem"));
    let mut server = RpcServer::new(rpc);
    let quic = server.bind().unwrap();
    let handle = server.handle();
    let addr = handle.socket_addr().unwrap();
    let server = tokio::spawn(async move { server.start(quic).await });
    let mut config = fast().with_server(handle);
    for (k, v) in tags {
        config = config.with_tag(*k, *v);
    }
    let cluster = ClusterMembership::new(config).await.unwrap();
    Member {
        cluster,
        addr,
        server,
    }
}

/// Polls `/metrics` until `pred` holds for its samples (at most 20 s).
pub async fn metrics_until(
    admin: SocketAddr,
    what: &str,
    pred: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http_get(admin, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        let got = samples(&body);
        if pred(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/metrics never showed {what}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The one test in this binary that records through the process's global
/// recorder (others use their own recorder or processes), so nothing else
/// writes these gauges meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_endpoint_samples_a_live_cluster_into_its_metrics() {
    let a = member(&[("role", "seed")]).await;
    let registry = Arc::new(WorkerRegistry::new(
        a.cluster.clone(),
        LoadBalancingStrategy::RoundRobin,
    ));
    registry.start().await;
    let admin = AdminServer::new("127.0.0.1:0".parse().unwrap())
        .with_cluster(a.cluster.clone())
        .with_registry(registry.clone())
        .with_sample_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    admin.set_phase(Phase::Serving { seedless: true });
    let url = admin.local_addr();
    let b = member(&[("role", "worker"), ("label", "b")]).await;
    let c = member(&[("role", "worker"), ("label", "c")]).await;
    b.cluster.join(vec![a.addr]).await.unwrap();
    c.cluster.join(vec![a.addr]).await.unwrap();

    let (peer_b, peer_c) = (
        format!("rpcnet_cluster_member_phi{{peer=\"{}\"}}", b.addr),
        format!("rpcnet_cluster_member_phi{{peer=\"{}\"}}", c.addr),
    );
    let got = metrics_until(url, "three alive members and both peers' φ", |m| {
        m.get("rpcnet_cluster_members{state=\"alive\"}") == Some(&3.0)
            && m.contains_key(&peer_b)
            && m.contains_key(&peer_c)
            && m.get("rpcnet_routing_workers{state=\"available\"}") == Some(&2.0)
    })
    .await;
    assert_eq!(
        got.get("rpcnet_cluster_events_total{kind=\"joined\"}"),
        Some(&2.0)
    );
    assert_eq!(got.get("rpcnet_node_ready"), Some(&1.0));
    let in_flight = format!(
        "rpcnet_routing_worker_in_flight{{worker=\"{}\",label=\"b\"}}",
        b.addr
    );
    assert_eq!(got.get(&in_flight), Some(&0.0), "{got:?}");

    // A worker selected and held counts as one call in flight.
    let held = registry.select_worker(Some("label=b")).await.unwrap();
    metrics_until(url, "one call in flight to b", |m| {
        m.get(&in_flight) == Some(&1.0)
    })
    .await;
    drop(held);

    // c stops answering: failed, one failed event, its φ past the threshold.
    c.server.abort();
    drop(c.cluster);
    let threshold = a.cluster.config().phi.threshold;
    let got = metrics_until(url, "c failed", |m| {
        m.get("rpcnet_cluster_members{state=\"failed\"}") == Some(&1.0)
            && m.get("rpcnet_cluster_events_total{kind=\"failed\"}") == Some(&1.0)
    })
    .await;
    assert!(got[&peer_b] < threshold, "φ of b: {}", got[&peer_b]);
    assert_eq!(
        got.get("rpcnet_cluster_members{state=\"alive\"}"),
        Some(&2.0)
    );
    // SWIM may declare it down before φ passes the threshold; φ keeps growing.
    metrics_until(url, "φ of c past the threshold", |m| {
        m[&peer_c] > threshold
    })
    .await;

    admin.shutdown();
    b.server.abort();
    a.server.abort();
}
