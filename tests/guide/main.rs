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
    let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/spec/concepts.md");
    if let Ok(spec) = std::fs::read_to_string(shared) {
        let copy = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/guide/concepts.md"
        ))
        .unwrap();
        assert_eq!(
            spec, copy,
            "docs/guide/concepts.md is out of date with the shared spec"
        );
    }
}
