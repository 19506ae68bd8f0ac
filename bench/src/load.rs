//! The closed-loop load generator shared by every system.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::{median, percentile};
use crate::systems::{Client, System};

pub struct UnaryResult {
    pub calls_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// `concurrency` workers each issue echo calls back to back for `duration`
/// (after a warm-up of a quarter of it), recording every latency.
pub async fn unary(
    client: &Client,
    size: usize,
    concurrency: usize,
    duration: Duration,
) -> UnaryResult {
    let payload = Arc::new(vec![0xabu8; size]);
    run_workers(client, &payload, concurrency, duration / 4).await;
    let started = Instant::now();
    let latencies = run_workers(client, &payload, concurrency, duration).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut all: Vec<f64> = latencies.into_iter().flatten().collect();
    let calls = all.len() as f64;
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    UnaryResult {
        calls_per_sec: calls / elapsed,
        p50_us: percentile(&all, 0.50),
        p99_us: percentile(&all, 0.99),
    }
}

async fn run_workers(
    client: &Client,
    payload: &Arc<Vec<u8>>,
    concurrency: usize,
    duration: Duration,
) -> Vec<Vec<f64>> {
    let end = Instant::now() + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                while Instant::now() < end {
                    let t = Instant::now();
                    let reply = client.echo(payload.to_vec()).await;
                    latencies.push(t.elapsed().as_secs_f64() * 1e6);
                    assert_eq!(reply.len(), payload.len());
                }
                latencies
            })
        })
        .collect();
    let mut out = Vec::with_capacity(concurrency);
    for w in workers {
        out.push(w.await.unwrap());
    }
    out
}

/// Messages per second received on one server-streaming call.
pub async fn server_stream(client: &Client, n: u32, size: u32) -> f64 {
    let started = Instant::now();
    let got = client.server_stream(n, size).await;
    assert_eq!(got, n as u64);
    n as f64 / started.elapsed().as_secs_f64()
}

/// Messages per second uploaded on one client-streaming call (until its reply).
pub async fn client_stream(client: &Client, n: u32, size: usize) -> f64 {
    let started = Instant::now();
    let got = client.client_stream(n, size).await;
    assert_eq!(got, n as u64);
    n as f64 / started.elapsed().as_secs_f64()
}

/// Median time to connect a new client (new connection/channel) and
/// complete one 16 B call; `new_endpoint`: the rpcnet client gets a QUIC
/// endpoint of its own instead of sharing a running one.
pub async fn connect_p50(
    system: System,
    addr: SocketAddr,
    times: usize,
    new_endpoint: bool,
) -> f64 {
    let mut samples = Vec::with_capacity(times);
    for _ in 0..times {
        let t = Instant::now();
        let client = Client::connect_with(system, addr, new_endpoint).await;
        client.echo(vec![1; 16]).await;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        drop(client);
    }
    median(&mut samples)
}
