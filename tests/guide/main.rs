//! The user guide's snippets (docs/guide/concepts.md, chapters "Runtime
//! Building Blocks" to "Streaming Patterns"), compiled and run exactly as
//! written. `snippets_are_verbatim` checks that every Rust block of those
//! chapters appears below unchanged (leading indentation aside), so the
//! guide and this file cannot drift apart.
//!
//! The guide's snippets use fixed paths (`certs/...`, relative to the
//! repository root, which is where cargo runs integration tests) and
//! port 8080 for the server/client walkthrough.

#![allow(unused_variables, unused_imports, clippy::all)]

use std::error::Error;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

#[rustfmt::skip]
#[test]
fn configuration() {
use rpcnet::RpcConfig;

let config = RpcConfig::new("certs/server.pem", "127.0.0.1:0")
    .with_key_path("certs/server-key.pem")
    .with_server_name("localhost")
    .with_keep_alive_interval(std::time::Duration::from_secs(30));

    assert_eq!(config.server_name(), "localhost");
    assert_eq!(config.keep_alive_interval(), Some(std::time::Duration::from_secs(30)));
}

/// Handlers the client snippets call that the server snippets do not define.
async fn register_walkthrough_extras(server: &rpcnet::RpcServer) {
    use futures::StreamExt;
    server
        .register("ping", |_| async move { Ok(b"pong".to_vec()) })
        .await;
    server
        .register("first", |_| async move { Ok(b"1".to_vec()) })
        .await;
    server
        .register("second", |_| async move { Ok(b"2".to_vec()) })
        .await;
    server
        .register_streaming("chat", |reqs| async move {
            reqs.map(|m| Ok([b"re: ".to_vec(), m].concat()))
        })
        .await;
    server
        .register_streaming("list_items", |_reqs| async move {
            futures::stream::iter(vec![Ok(b"item-1".to_vec()), Ok(b"item-2".to_vec())])
        })
        .await;
    server
        .register_streaming("upload", |reqs| async move {
            let total: usize = reqs
                .map(|c| c.len())
                .fold(0, |a, b| async move { a + b })
                .await;
            futures::stream::iter(vec![Ok(total.to_string().into_bytes())])
        })
        .await;
}

#[rustfmt::skip]
#[tokio::test]
async fn server_and_client_walkthrough() -> TestResult {
    // --- Server Essentials: Creating the Server
use rpcnet::{RpcServer, RpcConfig};

let config = RpcConfig::new("certs/server.pem", "127.0.0.1:8080")
    .with_key_path("certs/server-key.pem")
    .with_server_name("localhost");
let mut server = RpcServer::new(config);

    // --- Registering Unary Handlers (own scope: it re-imports RpcServer)
    {
use rpcnet::{RpcError, RpcServer};

server.register("add", |params| async move {
    let (a, b): (i32, i32) = bincode::deserialize(&params)
        .map_err(RpcError::SerializationError)?;
    let sum = a + b;
    Ok(bincode::serialize(&sum)? )
}).await;
    }

    // --- Registering Streaming Handlers
use async_stream::stream;
use futures::StreamExt;

server.register_streaming("echo_stream", |mut reqs| async move {
    stream! {
        while let Some(payload) = reqs.next().await {
            yield Ok(payload); // echo back exactly what we received
        }
    }
}).await;

    // --- Implementing Streaming Handlers (own scope: it re-imports)
    {
use async_stream::stream;
use futures::StreamExt;

server.register_streaming("uppercase", |mut reqs| async move {
    stream! {
        while let Some(bytes) = reqs.next().await {
            let mut owned = bytes.clone();
            owned.make_ascii_uppercase();
            yield Ok(owned);
        }
    }
}).await;
    }

    register_walkthrough_extras(&server).await;

    // --- Binding and Starting, raced against the client walkthrough: the
    // server branch is polled first, so it is bound before the client connects.
    let serve = async {
let quic_server = server.bind()?;
println!("listening on {}", server.socket_addr.unwrap());
server.start(quic_server).await?;
        Ok::<(), Box<dyn Error + Send + Sync>>(())
    };
    tokio::select! {
        biased;
        served = serve => panic!("server stopped: {served:?}"),
        walked = client_walkthrough() => walked,
    }
}

#[rustfmt::skip]
async fn client_walkthrough() -> TestResult {
    // --- Client Essentials: Connecting
use rpcnet::{RpcClient, RpcConfig};
use std::net::SocketAddr;

let config = RpcConfig::new("certs/ca.pem", "127.0.0.1:0")
    .with_server_name("localhost");
let server_addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
let client = RpcClient::connect(server_addr, config).await?;

    // --- Error Handling (RpcError)
match client.call("ping", vec![]).await {
    Ok(bytes) => println!("pong: {}", String::from_utf8_lossy(&bytes)),
    Err(rpcnet::RpcError::Timeout) => eprintln!("server took too long"),
    Err(other) => eprintln!("unhandled rpc error: {other}")
}

    // --- Unary Calls
let payload = bincode::serialize(&(21, 21))?;
let response = client.call("add", payload).await?;
let result: i32 = bincode::deserialize(&response)?;
assert_eq!(result, 42);

    // --- Concurrent Calls
use std::sync::Arc;
use tokio::join;

let client = Arc::new(client);
let (a, b) = join!(
    client.clone().call("first", vec![]),
    client.clone().call("second", vec![])
);

    assert_eq!(a?, b"1");
    assert_eq!(b?, b"2");

    // --- Bidirectional (call_streaming)
use futures::stream;
use futures::StreamExt;

let requests = stream::iter(vec![
    b"hello".to_vec(),
    b"world".to_vec(),
]);

let responses = client.call_streaming("chat", requests).await?;
let mut responses = Box::pin(responses);
while let Some(frame) = responses.next().await {
    println!("response: {:?}", frame?);
}

    // --- Server Streaming (call_server_streaming), in its own scope (re-imports StreamExt)
    {
use futures::StreamExt;

let stream = client.call_server_streaming("list_items", Vec::new()).await?;
let mut stream = Box::pin(stream);
while let Some(frame) = stream.next().await {
    println!("item: {:?}", frame?);
}
    }

    // --- Client Streaming (call_client_streaming), in its own scope (re-imports stream)
    let digest = {
use futures::stream;

let uploads = stream::iter(vec![b"chunk-a".to_vec(), b"chunk-b".to_vec()]);
let digest = client.call_client_streaming("upload", uploads).await?;
println!("digest bytes: {digest:?}");
        digest
    };

    assert_eq!(digest, b"14");
    // The guide's streaming handlers, called for real.
    let echoed: Vec<_> = client.call_streaming("echo_stream", stream::iter(vec![b"a".to_vec(), vec![]])).await?.collect().await;
    assert_eq!(echoed.into_iter().collect::<Result<Vec<_>, _>>()?, vec![b"a".to_vec(), vec![]]);
    let upper: Vec<_> = client.call_streaming("uppercase", stream::iter(vec![b"quic".to_vec()])).await?.collect().await;
    assert_eq!(upper.into_iter().collect::<Result<Vec<_>, _>>()?, vec![b"QUIC".to_vec()]);
    Ok(())
}

// ---- Cluster snippets (concepts.md "Cluster Management", cluster-example.md
// "How It Works", "Load Balancing Strategies" and "Cluster Configuration").

/// A bound cluster node (a member certificate; client certificates
/// verified against the test CA but optional, so application clients need
/// none) and its membership config.
async fn cluster_node() -> (rpcnet::cluster::ClusterConfig, std::net::SocketAddr) {
    let mut server = rpcnet::RpcServer::new(
        rpcnet::RpcConfig::new("certs/test_cert.pem", "127.0.0.1:0")
            .with_key_path("certs/test_key.pem")
            .with_optional_client_ca_path("certs/ca.pem"),
    );
    let quic = server.bind().unwrap();
    let handle = server.handle();
    let addr = handle.socket_addr().unwrap();
    tokio::spawn(async move { server.start(quic).await });
    let config = rpcnet::cluster::ClusterConfig::default()
        .with_gossip_interval(std::time::Duration::from_millis(50))
        .with_server(handle);
    (config, addr)
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_discovery_registry_and_health() -> TestResult {
    use rpcnet::cluster::ClusterMembership;
    let (director_config, director_addr) = cluster_node().await;
    let director = ClusterMembership::new(director_config.clone()).await?;
    let (config, _) = cluster_node().await;
    let worker_label = "worker-a";

    // --- cluster-example.md, 1. Automatic Discovery
// Worker code (simplified)
let cluster = ClusterMembership::new(config).await?;
cluster.join(vec![director_addr]).await?;
// Tag for discovery
cluster.set_tag("role", "worker");
cluster.set_tag("label", worker_label);
// That's it! Director discovers automatically via gossip

    let mut watch = director.watch();
    tokio::time::timeout(std::time::Duration::from_secs(20), watch.wait_for(|v| v.members.iter().any(|m| m.has_tag("label=worker-a")))).await??;

    {
    let cluster = director.clone();
    // --- concepts.md, NodeRegistry
use rpcnet::cluster::NodeRegistry;

let registry = NodeRegistry::new(cluster);
let gpu_workers = registry.nodes_with_tag("gpu").await;

    assert!(gpu_workers.is_empty());
    assert_eq!(registry.nodes_with_tag("role=worker").await.len(), 1);
    }

    {
    let cluster = director.clone();
    let config = director_config;
    // --- concepts.md, Health Checking
use rpcnet::cluster::HealthChecker;

let health = HealthChecker::new(cluster, config);
health.start().await;

// Automatically marks nodes as failed/recovered

    assert_eq!(health.healthy().len(), 1);
    }
    Ok(())
}

/// A worker node as the guide's snippets expect one: tagged `role=worker`,
/// `gpu=true` and a label, serving `compute` (it answers with its label).
async fn guide_worker(
    director: std::net::SocketAddr,
    label: &'static str,
) -> rpcnet::cluster::ClusterMembership {
    let (config, _) = cluster_node().await;
    config
        .server
        .as_ref()
        .unwrap()
        .register("compute", move |data| async move {
            Ok([label.as_bytes(), b":", &data].concat())
        })
        .await;
    let cluster = rpcnet::cluster::ClusterMembership::new(config)
        .await
        .unwrap();
    cluster.join(vec![director]).await.unwrap();
    cluster.set_tag("role", "worker");
    cluster.set_tag("gpu", "true");
    cluster.set_tag("label", label);
    cluster
}

/// The guide's "Load Balancing Strategies" block lists the variants one per
/// line without separators; this macro takes the block as written (comments
/// are not tokens) and returns the variants.
macro_rules! strategies_block {
    (use $($path:ident)::+; $($ty:ident :: $variant:ident)*) => {{
        use $($path)::+;
        [$($ty::$variant),*]
    }};
}

#[rustfmt::skip]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_routing_registry_client_and_strategies() -> TestResult {
    use rpcnet::cluster::ClusterMembership;
    use std::sync::Arc;
    let (director_config, director_addr) = cluster_node().await;
    let director = ClusterMembership::new(director_config).await?;
    let _worker_a = guide_worker(director_addr, "worker-a").await;
    let _worker_b = guide_worker(director_addr, "worker-b").await;
    let mut watch = director.watch();
    tokio::time::timeout(std::time::Duration::from_secs(20), watch.wait_for(|v| {
        v.members.iter().filter(|m| m.has_tag("gpu=true") && m.has_tag("label") && m.has_tag("role=worker")).count() == 2
    })).await??;

    {
    let cluster = director.clone();
    // --- concepts.md, WorkerRegistry
use rpcnet::cluster::{WorkerRegistry, LoadBalancingStrategy};

let registry = WorkerRegistry::new(
    cluster,
    LoadBalancingStrategy::LeastConnections
);
registry.start().await;

let worker = registry.select_worker(Some("role=worker")).await?;

    assert!(worker.label().is_some_and(|l| l.starts_with("worker-")));
    assert_eq!(registry.workers().iter().map(|w| w.in_flight).sum::<usize>(), 1, "the selected worker holds one in-flight count");
    drop(worker);
    assert_eq!(registry.workers().iter().map(|w| w.in_flight).sum::<usize>(), 0);
    }

    {
    let cluster = director.clone();
    // An application client of the workers: it trusts the cluster CA and
    // needs no certificate (only members gossip, and they hold their own).
    let config = rpcnet::RpcConfig::new("certs/ca.pem", "127.0.0.1:0");
    let data = b"job".to_vec();
    // --- concepts.md, ClusterClient
use rpcnet::cluster::{ClusterClient, WorkerRegistry, LoadBalancingStrategy};

let registry = Arc::new(WorkerRegistry::new(
    cluster,
    LoadBalancingStrategy::LeastConnections
));
registry.start().await;

let client = Arc::new(ClusterClient::new(registry, config));

// Call any worker in the pool
let result = client.call_worker("compute", data, Some("role=worker")).await?;

    assert!(result == b"worker-a:job" || result == b"worker-b:job", "{result:?}");
    // LeastConnections over sequential calls alternates between the two.
    let second = client.call_worker("compute", b"job".to_vec(), Some("role=worker")).await?;
    assert_ne!(result, second);
    }

    {
    use rpcnet::cluster::{WorkerRegistry, LoadBalancingStrategy};
    let cluster = director.clone();
    // --- cluster-example.md, 2. Load Balancing
// Director code
let registry = Arc::new(WorkerRegistry::new(
cluster,
LoadBalancingStrategy::LeastConnections
));
registry.start().await;
// Automatically tracks workers and balances load

    assert_eq!(registry.workers().len(), 2);

    // --- cluster-example.md, 4. Tag-Based Routing
// Get only GPU workers
let gpu_worker = registry.select_worker(Some("gpu=true")).await?;
// Get any worker
let any_worker = registry.select_worker(Some("role=worker")).await?;

    assert_ne!(gpu_worker.id(), any_worker.id(), "the second selection goes to the less loaded worker");
    let missing = registry.select_worker(Some("gpu=false")).await.unwrap_err();
    assert!(missing.to_string().contains("\"gpu=false\"") && missing.to_string().contains("2 members seen"), "{missing}");
    }

    // --- cluster-example.md, Load Balancing Strategies
    let strategies = strategies_block! {
use rpcnet::cluster::LoadBalancingStrategy;
// Options:
LoadBalancingStrategy::RoundRobin // Even distribution
LoadBalancingStrategy::Random // Random selection
LoadBalancingStrategy::LeastConnections // Pick least loaded (recommended)
    };
    assert_eq!(strategies.len(), 3);
    assert_eq!(strategies[2], rpcnet::cluster::LoadBalancingStrategy::default(), "the recommended one is the default");
    Ok(())
}

#[rustfmt::skip]
#[test]
fn cluster_configuration() {
    use std::time::Duration;
    // --- cluster-example.md, Cluster Configuration
use rpcnet::cluster::ClusterConfig;
let config = ClusterConfig::default()
.with_gossip_interval(Duration::from_secs(1))
.with_health_check_interval(Duration::from_secs(2));

    assert_eq!(config.gossip_interval, Duration::from_secs(1));
    assert_eq!(config.health_check_interval, Duration::from_secs(2));
}

#[test]
fn cluster_snippets_are_verbatim() {
    let this = normalize(include_str!("main.rs"));
    let concepts = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/guide/concepts.md"
    ))
    .unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/guide/cluster-example.md"
    ))
    .unwrap();
    let blocks = |text: &str| -> Vec<String> {
        text.split("```rust")
            .skip(1)
            .map(|rest| rest[..rest.find("```").unwrap()].to_string())
            .collect()
    };
    let covered: Vec<String> = blocks(&concepts)
        .into_iter()
        .chain(blocks(&example))
        .filter(|b| {
            b.contains("NodeRegistry::new(cluster)")
                || b.contains("HealthChecker::new(cluster, config)")
                || b.contains("Worker code (simplified)")
                || b.contains("with_health_check_interval")
                || b.contains("WorkerRegistry")
                || b.contains("LoadBalancingStrategy")
                || b.contains("ClusterClient")
                || b.contains("select_worker")
        })
        .collect();
    // NodeRegistry, HealthChecker, Automatic Discovery, Cluster
    // Configuration; WorkerRegistry, ClusterClient (concepts.md); Load
    // Balancing, Tag-Based Routing, Load Balancing Strategies (cluster-example.md).
    assert_eq!(covered.len(), 9);
    for block in covered {
        let lines = normalize(&block);
        assert!(
            this.windows(lines.len()).any(|w| w == lines.as_slice()),
            "cluster snippet not verbatim:\n{block}"
        );
    }
}

/// Every Rust block of the covered chapters, as the guide writes it.
fn guide_blocks() -> Vec<String> {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/guide/concepts.md"
    ))
    .unwrap();
    let covered = &guide[..guide
        .find("## Cluster Management")
        .expect("cluster chapter")];
    covered
        .split("```rust")
        .skip(1)
        .map(|rest| rest[..rest.find("```").unwrap()].to_string())
        .collect()
}

fn normalize(code: &str) -> Vec<String> {
    code.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn snippets_are_verbatim() {
    let this = normalize(include_str!("main.rs"));
    let blocks = guide_blocks();
    assert_eq!(blocks.len(), 13, "the covered chapters have 13 Rust blocks");
    for block in blocks {
        let lines = normalize(&block);
        let found = this.windows(lines.len()).any(|w| w == lines.as_slice());
        assert!(
            found,
            "guide snippet not found verbatim in tests/guide/main.rs:\n{block}"
        );
    }
}

#[test]
fn the_guide_copy_matches_the_shared_spec_when_present() {
    // In the development layout the contract lives in ../shared/spec; the
    // repository carries a copy so the suite runs from a clean clone.
    for chapter in ["concepts.md", "cluster-example.md"] {
        let shared = format!("{}/../shared/spec/{chapter}", env!("CARGO_MANIFEST_DIR"));
        if let Ok(spec) = std::fs::read_to_string(&shared) {
            let copy = std::fs::read_to_string(format!(
                "{}/docs/guide/{chapter}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            assert_eq!(
                spec, copy,
                "docs/guide/{chapter} is out of date with the shared spec"
            );
        }
    }
}
