//! The README's Rust example, compiled by `cargo test`.
//!
//! The code between the two marker comments is the README's `rust` block;
//! `the_readme_example_is_this_code` checks that every `rust` block of the
//! README appears here byte for byte, so the two cannot drift apart. The
//! functions are compiled, not run (running them needs a cluster).

// README example: begin
use std::{net::SocketAddr, sync::Arc};

use rpcnet::cluster::{ClusterClient, ClusterMembership, LoadBalancingStrategy, WorkerRegistry};
use rpcnet::{RpcClient, RpcConfig, RpcError, RpcServer};

/// A server: TLS always on, one async handler per method name.
async fn serve() -> Result<(), RpcError> {
    let config = RpcConfig::new("certs/server.pem", "127.0.0.1:8080")
        .with_key_path("certs/server-key.pem")
        .with_server_name("localhost");
    let mut server = RpcServer::new(config);
    server.register("echo", |req| async move { Ok(req) }).await;
    let quic = server.bind()?;
    server.start(quic).await
}

/// A client: trusts only the CA it is given; each call is one QUIC stream.
async fn call(addr: SocketAddr) -> Result<Vec<u8>, RpcError> {
    let config = RpcConfig::new("certs/ca.pem", "127.0.0.1:0").with_server_name("localhost");
    let client = RpcClient::connect(addr, config).await?;
    client.call("echo", b"hello".to_vec()).await
}

/// A call to the least loaded live member tagged `role=worker`; a call that
/// never reached its worker moves on to another one.
/// `cluster` is this node's membership (docs/CLUSTER.md shows a node joining).
async fn call_a_worker(cluster: ClusterMembership) -> Result<Vec<u8>, RpcError> {
    let strategy = LoadBalancingStrategy::LeastConnections;
    let registry = Arc::new(WorkerRegistry::new(cluster, strategy));
    registry.start().await;
    let client = ClusterClient::new(registry, RpcConfig::new("certs/ca.pem", "127.0.0.1:0"));
    let filter = Some("role=worker");
    client.call_worker("echo", b"hello".to_vec(), filter).await
}
// README example: end

/// Naming the functions counts as using them (no dead-code warning): they
/// are type-checked, never called.
#[test]
fn the_readme_example_compiles() {
    let _ = (serve, call, call_a_worker);
}

#[test]
fn the_readme_example_is_this_code() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let this = include_str!("readme.rs");
    let (begin, end) = ("// README example: begin\n", "// README example: end\n");
    let example = &this[this.find(begin).unwrap() + begin.len()..this.find(end).unwrap()];
    let blocks: Vec<&str> = readme
        .split("```rust\n")
        .skip(1)
        .map(|rest| &rest[..rest.find("```").unwrap()])
        .collect();
    assert_eq!(
        blocks,
        [example],
        "README.md's rust block differs from tests/readme.rs"
    );
}
