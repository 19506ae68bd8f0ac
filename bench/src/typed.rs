//! The typed layer's cost: the same unary echo through a generated client
//! (`#[rpcnet::service]`: the `Vec<u8>` request and answer travel as they
//! are, without the codec; the answer's tag byte, the schema hash in the
//! call's header, the typed dispatch) and through a raw `RpcClient`
//! (`echo`, the bytes as they are), on one connection to the same server
//! process, alternated within each repeat (in alternating order).

use std::time::{Duration, Instant};

use rpcnet::RpcClient;

use crate::report::median;

/// The typed echo the rpcnet server process also serves (`bench.Echo.echo`).
#[rpcnet::service(name = "bench.Echo")]
pub trait Echo {
    /// The payload back.
    async fn echo(&self, payload: Vec<u8>) -> Result<Vec<u8>, String>;
}

/// The server's implementation.
pub struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(payload)
    }
}

/// Calls/s of both clients (medians of the repeats).
#[derive(Debug, Default)]
pub struct Figures {
    pub concurrency: usize,
    pub size: usize,
    pub raw_calls_per_sec: f64,
    pub typed_calls_per_sec: f64,
}

impl Figures {
    pub fn markdown(&self) -> String {
        format!(
            "## Typed services (`#[rpcnet::service]`)\n\n\
             The same unary echo ({} B payload, {} calls in flight on one connection, same server \
             process) through a generated client and through a raw `RpcClient`, alternated in \
             each repeat, in alternating order. The typed method takes and returns `Vec<u8>`, \
             which travels without the codec, as `Bytes` does: the row is the typed layer's \
             own cost, not serde's.\n\n\
             | workload | raw `RpcClient` | typed client | typed / raw |\n|---|---:|---:|---:|\n\
             | unary {} B c={}: calls/s | {:.0} | {:.0} | {:.2}× |\n",
            self.size,
            self.concurrency,
            self.size,
            self.concurrency,
            self.raw_calls_per_sec,
            self.typed_calls_per_sec,
            self.typed_calls_per_sec / self.raw_calls_per_sec
        )
    }
}

/// Measures raw and typed echo calls/s, `repeats` times each.
pub async fn measure(client: &RpcClient, repeats: usize, duration: Duration) -> Figures {
    let (concurrency, size) = (64, 16);
    let typed = EchoClient::new(client.clone());
    let payload = vec![0xabu8; size];
    let mut raw_rates = Vec::new();
    let mut typed_rates = Vec::new();
    for repeat in 0..repeats {
        // Each repeat runs both, in alternating order (raw first, then
        // typed first, ...), so a drift during the run favours neither.
        for typed_turn in [repeat % 2 == 1, repeat % 2 == 0] {
            let p = payload.clone();
            if typed_turn {
                let t = typed.clone();
                typed_rates.push(
                    closed_loop(concurrency, duration, move || {
                        let call = t.echo(p.clone());
                        async move {
                            assert_eq!(call.await.expect("typed echo").len(), size);
                        }
                    })
                    .await,
                );
            } else {
                let c = client.clone();
                raw_rates.push(
                    closed_loop(concurrency, duration, move || {
                        let call = c.call("echo", p.clone());
                        async move {
                            assert_eq!(call.await.expect("raw echo").len(), size);
                        }
                    })
                    .await,
                );
            }
        }
    }
    let figures = Figures {
        concurrency,
        size,
        raw_calls_per_sec: median(&mut raw_rates),
        typed_calls_per_sec: median(&mut typed_rates),
    };
    eprintln!(
        "typed unary {size} B c={concurrency}: raw={:.0} typed={:.0} ratio={:.2}",
        figures.raw_calls_per_sec,
        figures.typed_calls_per_sec,
        figures.typed_calls_per_sec / figures.raw_calls_per_sec
    );
    figures
}

/// Typed (`typed`) or raw echo calls/s alone, for a profiler
/// (`rpcnet-bench profile rpcnet typed|raw-echo SECONDS`).
pub async fn alone(client: &RpcClient, typed: bool, duration: Duration) -> f64 {
    let payload = vec![0xabu8; 16];
    if typed {
        let t = EchoClient::new(client.clone());
        closed_loop(64, duration, move || {
            let call = t.echo(payload.clone());
            async move {
                call.await.expect("typed echo");
            }
        })
        .await
    } else {
        let c = client.clone();
        closed_loop(64, duration, move || {
            let call = c.call("echo", payload.clone());
            async move {
                call.await.expect("raw echo");
            }
        })
        .await
    }
}

/// `concurrency` tasks call back to back for `duration` after a warm-up
/// of a quarter of it; returns calls per second.
async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, call: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let run = |length: Duration| {
        let end = Instant::now() + length;
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let call = call.clone();
                tokio::spawn(async move {
                    let mut calls = 0u64;
                    while Instant::now() < end {
                        call().await;
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        async move {
            let mut total = 0;
            for task in tasks {
                total += task.await.unwrap();
            }
            total
        }
    };
    run(duration / 4).await;
    let started = Instant::now();
    let calls = run(duration).await;
    calls as f64 / started.elapsed().as_secs_f64()
}
