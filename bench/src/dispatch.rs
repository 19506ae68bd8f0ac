//! An experiment for the runtime-shape question (`docs/BENCHMARKS.md`,
//! "What is left, by target"): unary calls made by tasks on the process's
//! default multi-threaded runtime, but carried out on one thread of their
//! own that also drives the client's QUIC endpoint. The callers hand each
//! request over a channel and await the answer on a oneshot, as a client
//! that dispatches calls to a connection task would; every stream
//! operation then happens on the endpoint's thread. Nothing in the
//! library works this way: this measures what such a design could gain.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::routing::closed_loop;
use crate::systems::cert;

type Request = (Vec<u8>, oneshot::Sender<usize>);

/// Closed-loop unary echo calls of `size` bytes, `concurrency` in flight,
/// made by tasks of the calling runtime and carried out on a thread of
/// their own (a current-thread runtime holding the client and its
/// endpoint); calls/s over `duration`, after a quarter of it to warm up.
pub async fn unary(addr: SocketAddr, size: usize, concurrency: usize, duration: Duration) -> f64 {
    let (requests, mut incoming) = mpsc::unbounded_channel::<Request>();
    let carrier = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            let config = rpcnet::RpcConfig::new(cert("ca.pem"), "127.0.0.1:0");
            let client = rpcnet::RpcClient::connect(addr, config)
                .await
                .expect("connect");
            while let Some((payload, answer)) = incoming.recv().await {
                let client = client.clone();
                tokio::task::spawn_local(async move {
                    let reply = client.call("echo", payload).await.expect("echo");
                    let _ = answer.send(reply.len());
                });
            }
        });
    });
    let call = move || {
        let requests = requests.clone();
        async move {
            let (answer, answered) = oneshot::channel();
            requests
                .send((vec![0xab; size], answer))
                .expect("carrier running");
            assert_eq!(answered.await.expect("answer"), size);
        }
    };
    closed_loop(concurrency, duration / 4, call.clone()).await;
    let (rate, _) = closed_loop(concurrency, duration, call).await;
    // The last sender goes with the closures: the carrier's loop ends.
    carrier.join().expect("carrier thread");
    rate
}
