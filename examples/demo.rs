//! A server and a client in one process, showing every call mode, an
//! unknown method, a handler error and a timeout.
//!
//! Run from the repository root: `cargo run --example demo`

use std::time::Duration;

use async_stream::stream;
use futures::{stream, StreamExt};
use rpcnet::{RpcClient, RpcConfig, RpcError, RpcServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server_config = RpcConfig::new("certs/test_cert.pem", "127.0.0.1:0")
        .with_key_path("certs/test_key.pem")
        .with_server_name("localhost");
    let mut server = RpcServer::new(server_config);

    server
        .register("add", |params| async move {
            let (a, b): (i32, i32) = bincode::deserialize(&params)?;
            Ok(bincode::serialize(&(a + b))?)
        })
        .await;
    server
        .register("divide", |params| async move {
            let (a, b): (i32, i32) = bincode::deserialize(&params)?;
            if b == 0 {
                return Err(RpcError::RemoteError("division by zero".into()));
            }
            Ok(bincode::serialize(&(a / b))?)
        })
        .await;
    server
        .register("slow", |_| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(vec![])
        })
        .await;
    server
        .register_streaming("uppercase", |mut reqs| async move {
            stream! {
                while let Some(mut bytes) = reqs.next().await {
                    bytes.make_ascii_uppercase();
                    yield Ok(bytes);
                }
            }
        })
        .await;
    server
        .register_streaming("countdown", |mut reqs| async move {
            stream! {
                let from: u32 = match reqs.next().await {
                    Some(bytes) => bincode::deserialize(&bytes)?,
                    None => 0,
                };
                for n in (0..=from).rev() {
                    yield Ok(bincode::serialize(&n)?);
                }
            }
        })
        .await;
    server
        .register_streaming("total_bytes", |reqs| async move {
            let total = reqs
                .fold(0u64, |acc, chunk| async move { acc + chunk.len() as u64 })
                .await;
            stream::iter([bincode::serialize(&total).map_err(RpcError::from)])
        })
        .await;

    let quic = server.bind()?;
    let addr = server.socket_addr.expect("bound");
    println!("server listening on {addr}");
    let shutdown = server.shutdown_handle();
    let serving = tokio::spawn(async move { server.start(quic).await });

    let client = RpcClient::connect(addr, RpcConfig::new("certs/ca.pem", "127.0.0.1:0")).await?;
    println!("client connected (trusting only certs/ca.pem)");

    // Unary.
    let sum: i32 =
        bincode::deserialize(&client.call("add", bincode::serialize(&(21, 21))?).await?)?;
    println!("unary          add(21, 21) = {sum}");

    // Bidirectional streaming.
    let words = stream::iter(["hello", "quic", "world"].map(|w| w.as_bytes().to_vec()));
    let shouted: Vec<String> = client
        .call_streaming("uppercase", words)
        .await?
        .map(|r| r.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("bidirectional  uppercase(hello, quic, world) = {shouted:?}");

    // Server streaming.
    let mut countdown = client
        .call_server_streaming("countdown", bincode::serialize(&5u32)?)
        .await?;
    let mut seen = Vec::new();
    while let Some(n) = countdown.next().await {
        seen.push(bincode::deserialize::<u32>(&n?)?);
    }
    println!("server stream  countdown(5) = {seen:?}");

    // Client streaming.
    let chunks = stream::iter((0..100).map(|i| vec![0u8; i]));
    let total: u64 =
        bincode::deserialize(&client.call_client_streaming("total_bytes", chunks).await?)?;
    println!("client stream  total_bytes(0..100 byte chunks) = {total}");

    // Typed errors.
    match client.call("missing", vec![]).await {
        Err(RpcError::UnknownMethod(m)) => println!("error          unknown method {m:?}"),
        other => println!("unexpected: {other:?}"),
    }
    match client.call("divide", bincode::serialize(&(1, 0))?).await {
        Err(RpcError::RemoteError(m)) => println!("error          handler said {m:?}"),
        other => println!("unexpected: {other:?}"),
    }
    match client
        .call_with_timeout("slow", vec![], Duration::from_millis(200))
        .await
    {
        Err(RpcError::Timeout) => println!("error          slow call timed out after 200 ms"),
        other => println!("unexpected: {other:?}"),
    }

    shutdown.shutdown();
    serving.await??;
    println!("server shut down gracefully");
    Ok(())
}
