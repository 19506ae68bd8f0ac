//! Connection scale: what an idle connection and an idle stream cost the
//! server, and what a well-behaved client sees while thousands of others
//! connect and stay.
//!
//! The server is a `serve rpcnet` process. Holder processes (this binary,
//! `hold-connections ADDR N`) each open `N` connections on their shared
//! endpoint, make one call on each, report `HELD ok failed` and keep them
//! idle, with no keep-alive (they would close at the 30 s idle timeout,
//! which the measurement does not reach), until their stdin closes. A probe client
//! makes sequential 16 B echo calls on its own connection throughout.
//! Memory is the server's resident set (`VmRSS`), read after the
//! holders reported, less the same reading before they started: it
//! includes what the allocator keeps, so it is an upper bound of what
//! the connections hold. Each holder also reports its own resident set
//! per connection (after its first connection, so its endpoint's fixed
//! cost is left out): the client side of an idle connection. Idle streams are client-streaming `upload`
//! calls that send nothing, opened on connections of their own.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpcnet::{RpcClient, RpcConfig};

use crate::report::percentile;
use crate::systems::cert;

/// What one run measured.
pub struct Figures {
    pub connections: usize,
    pub processes: usize,
    pub failed_connects: usize,
    pub connect_secs: f64,
    pub per_connection_kib: f64,
    /// A holder process's own resident memory per connection it opened
    /// (median of the holders).
    pub client_per_connection_kib: f64,
    pub streams: usize,
    pub per_stream_kib: f64,
    pub probe_alone: Latency,
    pub probe_loaded: Latency,
}

/// A probe's sequential calls: p50 and p99 in µs, calls and failures.
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub calls: usize,
    pub failed: usize,
}

impl Figures {
    pub fn markdown(&self) -> String {
        format!(
            "## Connection scale\n\n\
             A `serve rpcnet` server process; {} holder processes open {} connections to it \
             in all ({} at a time per process, one call on each) and keep them idle; a \
             probe client makes sequential 16 B calls on its own connection meanwhile. \
             Memory is the server's resident set once the connections are held, less its \
             resident set before they opened, so it includes what the allocator keeps; the \
             client's is a holder's own, measured the same way from its first connection \
             on (median of the holders).\n\n\
             | measurement | value |\n|---|---:|\n\
             | idle connections held / failed to connect | {} / {} |\n\
             | time to open them all (s) | {:.1} |\n\
             | server memory per idle connection (KiB) | {:.1} |\n\
             | client memory per idle connection, a holder's own (KiB) | {:.1} |\n\
             | server memory per idle stream ({} streams, KiB) | {:.2} |\n\
             | probe alone: p50 / p99 (µs) | {:.0} / {:.0} |\n\
             | probe while the connections open and stay: p50 / p99 (µs) | {:.0} / {:.0} |\n\
             | probe calls while loaded / failed | {} / {} |\n",
            self.processes,
            self.connections,
            CONNECTS_AT_ONCE,
            self.connections - self.failed_connects,
            self.failed_connects,
            self.connect_secs,
            self.per_connection_kib,
            self.client_per_connection_kib,
            self.streams,
            self.per_stream_kib,
            self.probe_alone.p50_us,
            self.probe_alone.p99_us,
            self.probe_loaded.p50_us,
            self.probe_loaded.p99_us,
            self.probe_loaded.calls,
            self.probe_loaded.failed,
        )
    }
}

/// Connections each holder process opens at once.
const CONNECTS_AT_ONCE: usize = 32;
/// Streams opened per connection for the idle-stream figure.
const STREAMS_PER_CONNECTION: usize = 500;

/// Process `pid`'s resident set in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn client_config() -> RpcConfig {
    RpcConfig::new(cert("ca.pem"), "127.0.0.1:0")
}

/// A probe client's sequential calls, running until `finish`.
struct Probe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Latency>,
}

impl Probe {
    fn start(client: &RpcClient) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(probe(client.clone(), stop.clone()));
        Probe { stop, task }
    }

    async fn finish(self) -> Latency {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("probe")
    }
}

/// Sequential echo calls until `stop`.
async fn probe(client: RpcClient, stop: Arc<AtomicBool>) -> Latency {
    let mut micros = Vec::new();
    let mut failed = 0;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        match client.call("echo", vec![0u8; 16]).await {
            Ok(_) => micros.push(start.elapsed().as_secs_f64() * 1e6),
            Err(_) => failed += 1,
        }
    }
    micros.sort_by(f64::total_cmp);
    Latency {
        p50_us: percentile(&micros, 0.50),
        p99_us: percentile(&micros, 0.99),
        calls: micros.len() + failed,
        failed,
    }
}

/// A holder process and its report.
struct Holder {
    child: Child,
    /// Connections it was asked to open.
    n: usize,
}

impl Holder {
    fn spawn(addr: SocketAddr, n: usize) -> Holder {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["hold-connections", &addr.to_string(), &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn a holder process");
        Holder { child, n }
    }

    /// Waits for `HELD ok failed kib`; the failures (all of them when the
    /// process ended without its report) and the holder's own resident
    /// memory per connection in KiB (NaN when not reported).
    fn held(&mut self) -> (usize, f64) {
        let mut line = String::new();
        let _ = BufReader::new(self.child.stdout.as_mut().unwrap()).read_line(&mut line);
        let mut words = line.split_whitespace();
        if words.next() != Some("HELD") {
            return (self.n, f64::NAN);
        }
        let failed = words
            .nth(1)
            .and_then(|w| w.parse().ok())
            .map_or(self.n, |failed: usize| failed.min(self.n));
        let kib = words
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(f64::NAN);
        (failed, kib)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the measurement against a server process `pid` at `addr`:
/// `processes` holders of `per_process` connections each.
pub async fn measure(pid: u32, addr: SocketAddr, processes: usize, per_process: usize) -> Figures {
    let client = RpcClient::connect(addr, client_config().with_shared_endpoint(false))
        .await
        .expect("the probe connects");
    let alone = Probe::start(&client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probe_alone = alone.finish().await;
    let before = rss_kib(pid);

    let loaded = Probe::start(&client);
    let start = Instant::now();
    let mut holders: Vec<Holder> = (0..processes)
        .map(|_| Holder::spawn(addr, per_process))
        .collect();
    let failed_connects = tokio::task::spawn_blocking(move || {
        let reports: Vec<(usize, f64)> = holders.iter_mut().map(Holder::held).collect();
        (reports, holders)
    });
    let (reports, holders) = failed_connects.await.expect("holders");
    let failed_connects = reports.iter().map(|(failed, _)| failed).sum::<usize>();
    let mut client_kib: Vec<f64> = reports.iter().map(|(_, kib)| *kib).collect();
    client_kib.sort_by(f64::total_cmp);
    let client_per_connection_kib = percentile(&client_kib, 0.5);
    let connect_secs = start.elapsed().as_secs_f64();
    // The connections idle a little while the probe goes on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let probe_loaded = loaded.finish().await;
    let connections = processes * per_process;
    let held = connections.saturating_sub(failed_connects).max(1);
    let per_connection_kib = (after - before) / held as f64;
    drop(holders);

    // Idle streams, on connections of their own, once the holders left.
    let mut stream_clients = Vec::new();
    for _ in 0..4 {
        stream_clients.push(
            RpcClient::connect(addr, client_config().with_shared_endpoint(false))
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_streams = rss_kib(pid);
    let mut calls = Vec::new();
    for c in &stream_clients {
        for _ in 0..STREAMS_PER_CONNECTION {
            let c = c.clone();
            calls.push(tokio::spawn(async move {
                let _ = c
                    .call_client_streaming("upload", futures::stream::pending())
                    .await;
            }));
        }
    }
    let streams = stream_clients.len() * STREAMS_PER_CONNECTION;
    // A call on each connection after the streams, then one more second
    // for the server to take in the rest (streams are independent in QUIC,
    // so the answer does not prove the earlier streams arrived).
    for c in &stream_clients {
        let _ = c.call("echo", vec![0u8; 16]).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_stream_kib = (rss_kib(pid) - before_streams) / streams as f64;
    for call in calls {
        call.abort();
    }

    Figures {
        connections,
        processes,
        failed_connects,
        connect_secs,
        per_connection_kib,
        client_per_connection_kib,
        streams,
        per_stream_kib,
        probe_alone,
        probe_loaded,
    }
}

/// A holder process's body: `n` connections to `addr`, one call on each,
/// `HELD ok failed` on stdout, then idle until the process exits.
pub async fn hold(addr: SocketAddr, n: usize) {
    // One connection first, so the endpoint's fixed cost (its packet
    // rings) is in the reading before the others.
    let first = async {
        let client = RpcClient::connect(addr, client_config()).await?;
        client.call("echo", vec![0u8; 16]).await?;
        Ok::<_, rpcnet::RpcError>(client)
    }
    .await;
    let before = rss_kib(std::process::id());
    let results: Vec<Result<RpcClient, rpcnet::RpcError>> = futures::stream::iter(1..n)
        .map(|_| async {
            let client = RpcClient::connect(addr, client_config()).await?;
            client.call("echo", vec![0u8; 16]).await?;
            Ok(client)
        })
        .buffer_unordered(CONNECTS_AT_ONCE)
        .collect()
        .await;
    let ok_after_first = results.iter().filter(|r| r.is_ok()).count();
    let per_connection_kib = (rss_kib(std::process::id()) - before) / ok_after_first.max(1) as f64;
    let ok = ok_after_first + usize::from(first.is_ok());
    let mut out = std::io::stdout();
    let _ = writeln!(out, "HELD {ok} {} {per_connection_kib:.2}", n - ok);
    let _ = out.flush();
    // The process exits when its stdin closes (`exit_when_parent_goes`).
    let _held = (first, results);
    futures::future::pending::<()>().await;
}
