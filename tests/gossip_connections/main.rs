//! Gossip connections between real nodes on loopback are bounded, as an
//! operator sees them: `rpcnet_server_connections` on the admin
//! endpoint's `/metrics`, the connections the process's servers hold.
//! This binary holds one test, so no other server in the process moves
//! that gauge.

#![cfg(feature = "admin")]

#[path = "../support/http.rs"]
mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rpcnet::admin::AdminServer;
use rpcnet::cluster::{ClusterConfig, ClusterEvent, ClusterMembership, NodeStatus};
use rpcnet::{RpcConfig, RpcServer};

fn cert(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// Connections the process's servers hold, from `/metrics` at `admin`.
async fn server_connections(admin: SocketAddr) -> f64 {
    let (status, _, body) = http::get(admin, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("rpcnet_server_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The UDP sockets this process has open (each counted once, however
/// many descriptors refer to it).
fn udp_sockets() -> usize {
    let udp: std::collections::HashSet<String> = ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(9).map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    let ours: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    ours.intersection(&udp).count()
}

async fn node(config: ClusterConfig) -> (ClusterMembership, SocketAddr) {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_optional_client_ca_path(cert("ca.pem"));
    let mut server = RpcServer::new(rpc);
    let quic = server.bind().expect("bind");
    let handle = server.handle();
    let addr = handle.socket_addr().unwrap();
    tokio::spawn(async move { server.start(quic).await });
    let cluster = ClusterMembership::new(config.with_server(handle))
        .await
        .expect("membership starts");
    (cluster, addr)
}

/// Ten members that each keep at most four gossip connections: SWIM's
/// probes go to every member in turn (each node would hold nine, each
/// server serve nine), yet the servers serve 10 × 4 (a few more while
/// evicted connections finish their packets), the seeds' connections of
/// the joins close once idle, each member dials from one client endpoint,
/// and no member is failed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_keep_at_most_gossip_max_connections_and_stay_alive() {
    // The first admin endpoint of a process installs the metrics
    // recorder: started before any server, so the gauge counts them all.
    let admin_handle = AdminServer::new("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .expect("admin endpoint");
    let admin = admin_handle.local_addr();

    const N: usize = 10;
    const MAX: usize = 4;
    let idle = Duration::from_secs(2);
    // Two ring monitors per member (their heartbeats keep those two
    // connections the most recently used); probes every second, as by
    // default.
    let config = ClusterConfig::default()
        .with_gossip_interval(Duration::from_millis(100))
        .with_phi_monitors(2)
        .with_gossip_connections(MAX, idle);
    let mut nodes = Vec::new();
    for _ in 0..N {
        nodes.push(node(config.clone()).await);
    }
    let seed = nodes[0].1;
    for (cluster, _) in &nodes[1..] {
        cluster
            .join(vec![seed])
            .await
            .expect("join through the seed");
    }
    let mut events: Vec<_> = nodes.iter().map(|(c, _)| c.subscribe()).collect();
    for (cluster, _) in &nodes {
        let mut watch = cluster.watch();
        tokio::time::timeout(
            Duration::from_secs(30),
            watch.wait_for(|v| {
                v.members
                    .iter()
                    .filter(|m| m.status == NodeStatus::Alive)
                    .count()
                    == N - 1
            }),
        )
        .await
        .expect("every member sees the others alive")
        .expect("membership running");
    }
    // The seed connections of the joins close once idle (2 s, checked
    // every health-check tick).
    let mut last = 0.0;
    let seeds_closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            last = server_connections(admin).await;
            if last <= (N * MAX) as f64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        seeds_closed.is_ok(),
        "servers still hold {last} connections (bound: {})",
        N * MAX
    );
    // 8 s: every member probes eight of the nine others; with
    // connections kept, the servers would hold about N × (N − 1) = 90. A
    // connection evicted while it carries a packet closes once that
    // packet is delivered, so a sample may catch a few of those: on a
    // loaded 2-core machine (a build running beside the tests) one
    // sample of 80 caught 53, so the peak allows two per member.
    let mut samples = Vec::new();
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        samples.push(server_connections(admin).await);
    }
    samples.sort_by(f64::total_cmp);
    let (median, most) = (samples[samples.len() / 2], samples[samples.len() - 1]);
    assert!(
        median <= (N * MAX) as f64 && most <= (N * (MAX + 2)) as f64,
        "the servers held {median} gossip connections (median), {most} at most; each of {N} \
         members may keep {MAX}: {samples:?}"
    );
    assert!(median > 0.0, "the gauge is read");
    // The members' connections to their peers share one client endpoint
    // (one UDP socket): they present the same certificate here, so one
    // for the whole process, besides the ten servers' sockets. Each peer
    // used to get an endpoint of its own.
    let sockets = udp_sockets();
    assert!(
        sockets <= N + 1,
        "{sockets} UDP sockets open for {N} members' servers and their gossip"
    );
    for (i, rx) in events.iter_mut().enumerate() {
        loop {
            let event = match rx.try_recv() {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            assert!(
                !matches!(
                    event,
                    ClusterEvent::NodeFailed(_) | ClusterEvent::NodeLeft(_)
                ),
                "member {i}: {event:?} while connections were closed and reopened"
            );
        }
    }
}
