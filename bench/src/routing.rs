//! Routing figures: the cost of going through `ClusterClient` (registry
//! selection, in-flight guard, pooled connection lookup) and how long calls
//! caught by a `kill -9` of a worker take to succeed on another worker.
//!
//! Workers are processes of this binary (`serve-worker SEED LABEL`): an RPC
//! server with mutual TLS, cluster membership tagged `role=worker`, an
//! `echo` method. The director (membership only), the registry and the
//! clients run in the measuring process.
//!
//! Under skew (one slow worker among four), the library's own pickers are
//! compared in the same run: `LeastConnections` against power of two
//! choices (and round robin as the blind baseline), each choosing from
//! in-flight counts kept the way a registry keeps them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpcnet::cluster::{
    ClusterClient, ClusterConfig, ClusterMembership, LoadBalancingStrategy, WorkerRegistry,
    WorkerState,
};
use rpcnet::{CallOptions, RpcClient, RpcConfig, RpcServer};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::report::{median, percentile};
use crate::systems::cert;
use crate::ServerProcess;

/// The library's pickers, compiled into the harness from their source:
/// they are crate-private, and power of two choices is not a public
/// strategy (it lost to `LeastConnections`, see `skew`).
#[path = "../../src/cluster/routing/balance.rs"]
#[allow(dead_code)]
mod balance;

/// The routing section of the report.
#[derive(Debug, Default)]
pub struct Figures {
    /// Calls/s through `ClusterClient` to two workers, c=64, 16 B (median of repeats).
    pub cluster_calls_per_sec: f64,
    /// Calls/s of a direct `RpcClient` to one worker, same load.
    pub direct_calls_per_sec: f64,
    /// p50 latencies (µs): cluster, direct.
    pub cluster_p50_us: f64,
    /// See `cluster_p50_us`.
    pub direct_p50_us: f64,
    /// `ClusterClient` restricted to worker a (`label=a`) against the
    /// direct client to that worker, per concurrency: the routing path's
    /// own cost.
    pub same_worker: Vec<SameWorkerRow>,
    /// Per kill: time from `kill -9` until every call in flight at the
    /// kill had succeeded (ms).
    pub recovery_ms: Vec<f64>,
    /// Calls made during the kill runs, and how many failed.
    pub kill_calls: usize,
    /// See `kill_calls`.
    pub kill_failures: usize,
    /// One slow worker among four, per concurrency and policy.
    pub skew: Vec<SkewRow>,
}

/// `ClusterClient` to one worker against `RpcClient` to it, at one
/// concurrency: pairs of runs back to back, each joined by a run of a
/// second `RpcClient` to the worker (the twin), the three in an order
/// that rotates from pair to pair, so that the runs of a pair meet the
/// same moment of a shared machine.
#[derive(Debug, Clone, Default)]
pub struct SameWorkerRow {
    /// Calls in flight (closed loop).
    pub concurrency: usize,
    /// Calls/s through `ClusterClient`, per pair.
    pub routed: Vec<f64>,
    /// Calls/s of the direct `RpcClient`, per pair.
    pub direct: Vec<f64>,
    /// Calls/s of a second direct `RpcClient` to the same worker, over
    /// its own connection, per pair: twin / direct is what the
    /// measurement reads when both sides run the same code.
    pub twin: Vec<f64>,
    /// The median of each cluster's pair ratios.
    pub clusters: Vec<f64>,
    /// The median of each cluster's twin / direct ratios.
    pub twin_clusters: Vec<f64>,
}

impl SameWorkerRow {
    /// `side`'s calls/s over the direct client's, pair by pair.
    fn over_direct(&self, side: &[f64]) -> Vec<f64> {
        side.iter().zip(&self.direct).map(|(s, d)| s / d).collect()
    }

    /// Routed / direct of each pair.
    pub fn ratios(&self) -> Vec<f64> {
        self.over_direct(&self.routed)
    }

    /// The median of the pairs' ratios.
    pub fn ratio(&self) -> f64 {
        median(&mut self.ratios())
    }

    /// Twin / direct of each pair.
    pub fn twin_ratios(&self) -> Vec<f64> {
        self.over_direct(&self.twin)
    }

    /// The median of the pairs' twin / direct ratios.
    pub fn twin_ratio(&self) -> f64 {
        median(&mut self.twin_ratios())
    }
}

/// The least share of a direct call's rate a call routed to the same
/// worker keeps (median of the pairs' ratios).
pub const SAME_WORKER_TARGET: f64 = 0.95;

/// One policy at one concurrency in the skew measurement (medians of repeats).
#[derive(Debug, Clone)]
pub struct SkewRow {
    /// Calls in flight (closed loop).
    pub concurrency: usize,
    /// The policy.
    pub policy: Policy,
    /// Calls/s.
    pub calls_per_sec: f64,
    /// Latency percentiles (ms).
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// Share of calls sent to the slow worker (%).
    pub slow_share: f64,
}

impl Figures {
    /// The routing overhead: how much lower the cluster rate is, in percent.
    pub fn overhead_percent(&self) -> f64 {
        (1.0 - self.cluster_calls_per_sec / self.direct_calls_per_sec) * 100.0
    }

    pub fn markdown(&self) -> String {
        let mut sorted = self.recovery_ms.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p50 = percentile(&sorted, 0.5);
        let p99 = percentile(&sorted, 0.99);
        let overhead = self.overhead_percent();
        format!(
            "## Routing (ClusterClient)\n\n\
             | measurement | value | target |\n|---|---|---|\n\
             | unary 16 B c=64, `ClusterClient` → 2 workers: calls/s | {:.0} (p50 {:.0} µs) | |\n\
             | unary 16 B c=64, `RpcClient` → 1 worker: calls/s | {:.0} (p50 {:.0} µs) | |\n\
             | routing overhead, 2 workers vs direct to 1 (rate lost) | {overhead:.1}% | ≤ 10% {} |\n\
             {}\
             | `kill -9` → every call caught by the kill succeeded elsewhere, {} kills: p50 / p99 / max | {p50:.0} / {p99:.0} / {:.0} ms | p99 ≤ 1000 ms {} |\n\
             | calls during the kill runs / failed | {} / {} | 0 failed {} |\n\n\
             The kill figure bounds the time to the first successful retried call from above: it is \
             when the *last* call that was in flight on the killed worker completed on the other one. \
             The calls are idempotent, so an attempt the dead worker does not answer is abandoned at \
             its per-attempt timeout (adaptive: 4 × the method's p99, at least 100 ms) and the call \
             moves on; without one it would wait for the worker connection's idle timeout (800 ms, \
             kept alive by PINGs every 100 ms, so at most 900 ms after the kill). Sometimes the loss \
             is noticed at once.\n\n\
             The same-worker rows compare `ClusterClient` restricted to worker a (`label=a`: \
             selection, filter, retry budget, outcome record, pooled connection) with `RpcClient` \
             to worker a, in pairs of runs back to back, in several clusters: \
             the report's own, then others started afresh (worker processes, membership, \
             clients), since a ratio moves more between two clusters started alike than between \
             two pairs in one. A second `RpcClient` to worker a, over a connection of its own \
             (the twin), runs in every pair too, the three runs in an order that rotates from \
             pair to pair: its ratio to the first `RpcClient` is what the same measurement \
             reads when both sides run the same code, the resolution the routed ratio is read \
             against. A \
             ratio is the median of all the pairs' ratios; in brackets, the lowest and highest \
             pair, then each cluster's median. The calls/s after it are each side's own median \
             over all pairs: a pair's ratio sets each run against the one that met the same \
             moment of the machine, so the median ratio and the ratio of the medians need not \
             agree.\n\n{}",
            self.cluster_calls_per_sec,
            self.cluster_p50_us,
            self.direct_calls_per_sec,
            self.direct_p50_us,
            if overhead <= 10.0 { "✅" } else { "❌" },
            self.same_worker_markdown(),
            sorted.len(),
            sorted.last().copied().unwrap_or(0.0),
            if p99 <= 1000.0 { "✅" } else { "❌" },
            self.kill_calls,
            self.kill_failures,
            if self.kill_failures == 0 { "✅" } else { "❌" },
            self.skew_markdown(),
        )
    }

    /// The same-worker rows: routed and direct rates (medians), and the
    /// routed / direct ratio against `SAME_WORKER_TARGET`.
    fn same_worker_markdown(&self) -> String {
        let mut md = String::new();
        for row in &self.same_worker {
            let c = row.concurrency;
            md += &format!(
                "| unary 16 B c={c}, `ClusterClient` → the same 1 worker (`label=a`) / `RpcClient` → it, \
                 {} pairs in {} clusters, each pair run with a twin run (a second `RpcClient` → worker a), the three in rotating order: median of the pairs' ratios (range; the clusters' medians); \
                 medians of calls/s routed, direct \
                 | {}; {:.0}, {:.0} | ≥ {SAME_WORKER_TARGET}× {} |\n",
                row.routed.len(),
                row.clusters.len(),
                ratio_cell(row.ratios(), &row.clusters),
                median(&mut row.routed.clone()),
                median(&mut row.direct.clone()),
                if row.ratio() >= SAME_WORKER_TARGET { "✅" } else { "❌" },
            );
        }
        for row in &self.same_worker {
            md += &format!(
                "| unary 16 B c={}, a second `RpcClient` → worker a over its own connection / \
                 `RpcClient` → it, the same pairs: median of the pairs' ratios (range; the \
                 clusters' medians); median of its calls/s | {}; {:.0} | \
                 none: both sides run the same code |\n",
                row.concurrency,
                ratio_cell(row.twin_ratios(), &row.twin_clusters),
                median(&mut row.twin.clone()),
            );
        }
        md
    }

    fn skew_markdown(&self) -> String {
        if self.skew.is_empty() {
            return String::new();
        }
        let mut md = format!(
            "### Pickers under skew\n\n\
             {SKEW_WORKERS} in-process workers, each running at most {SKEW_CAPACITY} calls at once; \
             a call holds a slot for {} ms on three of them and {} ms on the slow one. Closed loop \
             (every call followed by the next), in-flight counts per worker kept as a registry \
             keeps them; medians of repeats. Power of two choices would become a \
             `LoadBalancingStrategy` only if it beat `LeastConnections` here (the decision and \
             its figures: `docs/CLUSTER.md`, \"Power of two choices\").\n\n\
             | calls in flight | policy | calls/s | p50 ms | p99 ms | calls to the slow worker |\n\
             |---|---|---|---|---|---|\n",
            SKEW_FAST.as_millis(),
            SKEW_SLOW.as_millis(),
        );
        for r in &self.skew {
            md.push_str(&format!(
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1}% |\n",
                r.concurrency,
                r.policy.name(),
                r.calls_per_sec,
                r.p50_ms,
                r.p99_ms,
                r.slow_share
            ));
        }
        md
    }
}

/// A ratio as the same-worker rows print it: the median of the pairs'
/// `ratios`, the lowest and highest of them, and each cluster's median.
fn ratio_cell(mut ratios: Vec<f64>, clusters: &[f64]) -> String {
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let lowest = ratios.first().copied().unwrap_or(0.0);
    let highest = ratios.last().copied().unwrap_or(0.0);
    let clusters: Vec<String> = clusters.iter().map(|r| format!("{r:.2}")).collect();
    format!(
        "{:.4}× ({lowest:.2}–{highest:.2}; {})",
        median(&mut ratios),
        clusters.join(", ")
    )
}

/// Workers in the skew measurement; the last one is slow.
const SKEW_WORKERS: usize = 4;
/// Calls a skew worker runs at once (its "cores").
const SKEW_CAPACITY: usize = 4;
/// How long a call holds a slot on a normal worker.
const SKEW_FAST: Duration = Duration::from_millis(2);
/// ... and on the slow one.
const SKEW_SLOW: Duration = Duration::from_millis(10);

/// How the skew measurement chooses a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `LoadBalancingStrategy::LeastConnections`'s picker.
    LeastConnections,
    /// `balance::least_loaded_of_two`.
    TwoChoices,
    /// `LoadBalancingStrategy::RoundRobin`'s picker (blind to load).
    RoundRobin,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::LeastConnections => "LeastConnections",
            Policy::TwoChoices => "power of two choices",
            Policy::RoundRobin => "RoundRobin",
        }
    }
}

/// A balancer as a registry runs one: pick from a snapshot of the calls
/// in flight per worker and count the pick, under one lock.
struct Balancer {
    policy: Policy,
    state: Mutex<(Vec<usize>, balance::Picker, StdRng)>,
}

impl Balancer {
    fn new(policy: Policy, workers: usize, seed: u64) -> Self {
        let strategy = match policy {
            Policy::RoundRobin => balance::LoadBalancingStrategy::RoundRobin,
            _ => balance::LoadBalancingStrategy::LeastConnections,
        };
        Self {
            policy,
            state: Mutex::new((
                vec![0; workers],
                balance::Picker::new(strategy, seed),
                StdRng::seed_from_u64(seed),
            )),
        }
    }

    fn acquire(&self) -> usize {
        let mut state = self.state.lock().unwrap();
        let (loads, picker, rng) = &mut *state;
        let i = match self.policy {
            Policy::TwoChoices => balance::least_loaded_of_two(rng, loads),
            _ => picker.pick(loads),
        }
        .expect("workers");
        loads[i] += 1;
        i
    }

    fn release(&self, i: usize) {
        self.state.lock().unwrap().0[i] -= 1;
    }
}

/// A skew worker: `work` holds one of `SKEW_CAPACITY` slots for `service`.
async fn skew_worker(service: Duration) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_max_concurrent_streams(1024);
    let mut server = RpcServer::new(rpc);
    let slots = Arc::new(tokio::sync::Semaphore::new(SKEW_CAPACITY));
    server
        .register("work", move |p| {
            let slots = slots.clone();
            async move {
                let _slot = slots.acquire().await.expect("open");
                tokio::time::sleep(service).await;
                Ok(p)
            }
        })
        .await;
    let quic = server.bind().expect("bind");
    let addr = server.handle().socket_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = server.start(quic).await;
    });
    (addr, task)
}

/// One closed-loop run of `policy` at `concurrency` for `duration`.
async fn skew_run(
    clients: &[RpcClient],
    policy: Policy,
    concurrency: usize,
    duration: Duration,
    seed: u64,
) -> SkewRow {
    let balancer = Arc::new(Balancer::new(policy, clients.len(), seed));
    let slow = clients.len() - 1;
    let started = Instant::now();
    let end = started + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (balancer, clients) = (balancer.clone(), clients.to_vec());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                let mut to_slow = 0usize;
                while Instant::now() < end {
                    let t = Instant::now();
                    let i = balancer.acquire();
                    let reply = clients[i].call("work", vec![7; 16]).await;
                    balancer.release(i);
                    assert_eq!(reply.expect("work").len(), 16);
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    to_slow += usize::from(i == slow);
                }
                (latencies, to_slow)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut to_slow = 0;
    for t in tasks {
        let (latencies, slow_calls) = t.await.unwrap();
        all.extend(latencies);
        to_slow += slow_calls;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    SkewRow {
        concurrency,
        policy,
        calls_per_sec: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        slow_share: to_slow as f64 * 100.0 / all.len().max(1) as f64,
    }
}

/// Every policy at each concurrency, interleaved per repeat so drift in the
/// machine's load hits them alike; the median of each figure.
async fn skew(repeats: usize, duration: Duration) -> Vec<SkewRow> {
    let mut workers = Vec::new();
    for i in 0..SKEW_WORKERS {
        let service = if i == SKEW_WORKERS - 1 {
            SKEW_SLOW
        } else {
            SKEW_FAST
        };
        workers.push(skew_worker(service).await);
    }
    let config = RpcConfig::new(cert("ca.pem"), "127.0.0.1:0");
    let mut clients = Vec::new();
    for (addr, _) in &workers {
        clients.push(
            RpcClient::connect(*addr, config.clone())
                .await
                .expect("connect"),
        );
    }
    let policies = [
        Policy::LeastConnections,
        Policy::TwoChoices,
        Policy::RoundRobin,
    ];
    let mut rows = Vec::new();
    for concurrency in [12, 32] {
        let mut runs: Vec<Vec<SkewRow>> = vec![Vec::new(); policies.len()];
        for repeat in 0..repeats {
            for (k, policy) in policies.iter().enumerate() {
                let seed = 1000 * repeat as u64 + k as u64;
                skew_run(&clients, *policy, concurrency, duration / 4, seed).await;
                runs[k].push(skew_run(&clients, *policy, concurrency, duration, seed).await);
            }
        }
        for (k, policy) in policies.iter().enumerate() {
            let pick =
                |f: fn(&SkewRow) -> f64| median(&mut runs[k].iter().map(f).collect::<Vec<_>>());
            let row = SkewRow {
                concurrency,
                policy: *policy,
                calls_per_sec: pick(|r| r.calls_per_sec),
                p50_ms: pick(|r| r.p50_ms),
                p99_ms: pick(|r| r.p99_ms),
                slow_share: pick(|r| r.slow_share),
            };
            eprintln!(
                "skew c={concurrency} {}: {:.0} calls/s, p50 {:.1} ms, p99 {:.1} ms, {:.1}% to the slow worker",
                policy.name(),
                row.calls_per_sec,
                row.p50_ms,
                row.p99_ms,
                row.slow_share
            );
            rows.push(row);
        }
    }
    drop(clients);
    for (_, task) in workers {
        task.abort();
    }
    rows
}

fn client_rpc() -> RpcConfig {
    RpcConfig::new(cert("ca.pem"), "127.0.0.1:0")
        .with_client_identity(cert("test_cert.pem"), cert("test_key.pem"))
}

/// A node's RPC server (mutual TLS) and its membership.
async fn node(
    tags: &[(&str, &str)],
    seed: Option<SocketAddr>,
    listen: &str,
) -> (ClusterMembership, SocketAddr) {
    let rpc = RpcConfig::new(cert("test_cert.pem"), listen)
        .with_key_path(cert("test_key.pem"))
        .with_client_ca_path(cert("ca.pem"))
        .with_max_concurrent_streams(1024);
    let mut server = RpcServer::new(rpc);
    server.register("echo", |p| async move { Ok(p) }).await;
    let quic = server.bind().expect("bind");
    let handle = server.handle();
    let addr = handle.socket_addr().unwrap();
    tokio::spawn(async move { server.start(quic).await });
    // A generation that grows across restarts (see rpcnet-worker).
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut config = ClusterConfig::default()
        .with_generation(generation)
        .with_server(handle);
    for (k, v) in tags {
        config = config.with_tag(*k, *v);
    }
    let cluster = ClusterMembership::new(config).await.expect("membership");
    if let Some(seed) = seed {
        cluster.join(vec![seed]).await.expect("join");
    }
    (cluster, addr)
}

/// `serve-worker SEED LABEL [LISTEN]`: a worker process until the parent goes.
pub async fn serve_worker(
    seed: SocketAddr,
    label: &str,
    listen: &str,
    ready: impl FnOnce(SocketAddr),
) {
    let (_cluster, addr) = node(&[("role", "worker"), ("label", label)], Some(seed), listen).await;
    ready(addr);
    std::future::pending::<()>().await;
}

async fn available(registry: &WorkerRegistry, n: usize) {
    let mut changes = registry.changes();
    let count = || {
        registry
            .workers()
            .iter()
            .filter(|w| w.state == WorkerState::Available && w.tags.contains_key("role"))
            .count()
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while count() < n {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("workers join");
}

/// `concurrency` loops calling back to back for `duration`; (calls/s, p50 µs).
pub(crate) async fn closed_loop<F, Fut>(
    concurrency: usize,
    duration: Duration,
    call: F,
) -> (f64, f64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let end = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                while Instant::now() < end {
                    let t = Instant::now();
                    call().await;
                    latencies.push(t.elapsed().as_secs_f64() * 1e6);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (rate, percentile(&all, 0.5))
}

/// The routing figures' cluster: a director in this process, workers `a`
/// and `b` as processes of this binary, a started least-connections
/// registry seeing both, a `ClusterClient` over it and two `RpcClient`s
/// straight to worker `a`, each over a connection of its own.
struct TwoWorkers {
    _director: ClusterMembership,
    /// The director's address, the workers' seed.
    seed: SocketAddr,
    workers: [ServerProcess; 2],
    registry: Arc<WorkerRegistry>,
    cluster: Arc<ClusterClient>,
    direct: RpcClient,
    /// A second `RpcClient` to worker `a`, over a connection of its own.
    twin: RpcClient,
}

impl TwoWorkers {
    async fn start() -> TwoWorkers {
        let (director, seed) = node(&[], None, "127.0.0.1:0").await;
        let seed_text = seed.to_string();
        let workers = [
            ServerProcess::spawn(&["serve-worker", &seed_text, "a"]),
            ServerProcess::spawn(&["serve-worker", &seed_text, "b"]),
        ];
        let registry = Arc::new(WorkerRegistry::new(
            director.clone(),
            LoadBalancingStrategy::LeastConnections,
        ));
        registry.start().await;
        available(&registry, 2).await;
        let cluster = Arc::new(ClusterClient::new(registry.clone(), client_rpc()));
        let direct = RpcClient::connect(workers[0].addr, client_rpc())
            .await
            .expect("connect");
        let twin = RpcClient::connect(workers[0].addr, client_rpc())
            .await
            .expect("connect");
        TwoWorkers {
            _director: director,
            seed,
            workers,
            registry,
            cluster,
            direct,
            twin,
        }
    }
}

/// One mode of the routing figures alone, for a profiler or an A/B run
/// (`bench/ab.sh`): `cluster` (`ClusterClient` to worker a), `cluster2`
/// (to workers a and b) or `direct` (`RpcClient` to worker a), at
/// `concurrency`; calls/s. Also prints this process's CPU time per call
/// (the client side's cost, steadier than the rate on a shared machine).
pub async fn alone(mode: &str, concurrency: usize, duration: Duration) -> f64 {
    let TwoWorkers {
        _director,
        workers: _workers,
        cluster,
        direct,
        ..
    } = TwoWorkers::start().await;
    let filter = match mode {
        "cluster" | "direct" => "label=a",
        "cluster2" => "role=worker",
        other => panic!("unknown routing mode {other}"),
    };
    let direct_mode = mode == "direct";
    let payload = vec![0xabu8; 16];
    let call = move || {
        let (cluster, direct, payload) = (cluster.clone(), direct.clone(), payload.clone());
        async move {
            let reply = if direct_mode {
                direct.call("echo", payload).await
            } else {
                cluster.call_worker("echo", payload, Some(filter)).await
            };
            assert_eq!(reply.expect("echo").len(), 16);
        }
    };
    closed_loop(concurrency, duration / 4, call.clone()).await;
    let cpu = process_cpu();
    let started = Instant::now();
    let rate = closed_loop(concurrency, duration, call).await.0;
    let calls = rate * started.elapsed().as_secs_f64();
    eprintln!(
        "client CPU per call: {:.2} µs",
        (process_cpu() - cpu).as_secs_f64() * 1e6 / calls
    );
    rate
}

/// Fresh clusters the same-worker rows are measured in: a rate ratio
/// moves more between two clusters started alike than between two
/// pairs in one (which threads a connection's tasks land on, where its
/// hot words fall), so the pairs are spread over several.
pub const CLUSTERS: usize = 5;

/// What the same-worker rows compare: a `ClusterClient` restricted to
/// worker a, an `RpcClient` to worker a, and a second `RpcClient` to it
/// over a connection of its own.
#[derive(Clone, Copy)]
struct Sides<'a> {
    cluster: &'a Arc<ClusterClient>,
    direct: &'a RpcClient,
    twin: &'a RpcClient,
}

impl<'a> Sides<'a> {
    fn of(workers: &'a TwoWorkers) -> Self {
        Sides {
            cluster: &workers.cluster,
            direct: &workers.direct,
            twin: &workers.twin,
        }
    }
}

/// The three [`Sides`] at `concurrency`: `pairs` rounds of three runs of
/// `slice` each (one per side, after a quarter of it to warm up), back to
/// back, so that the runs of a round meet the same moment of a shared
/// machine. Round `first_round + n` starts with side `(first_round + n) %
/// 3` and goes on in order: over the rounds of a row, each side takes each
/// place about as often as the others.
async fn same_worker(
    sides: Sides<'_>,
    concurrency: usize,
    first_round: usize,
    pairs: usize,
    slice: Duration,
) -> SameWorkerRow {
    let payload = vec![0xabu8; 16];
    let mut row = SameWorkerRow {
        concurrency,
        ..SameWorkerRow::default()
    };
    for round in first_round..first_round + pairs {
        let mut rate = [0.0; 3];
        for side in (0..3).map(|n| (round + n) % 3) {
            let (cluster, payload) = (sides.cluster.clone(), payload.clone());
            let direct = match side {
                2 => sides.twin.clone(),
                _ => sides.direct.clone(),
            };
            let call = move || {
                let (cluster, direct, payload) = (cluster.clone(), direct.clone(), payload.clone());
                async move {
                    let reply = if side == 0 {
                        cluster.call_worker("echo", payload, Some("label=a")).await
                    } else {
                        direct.call("echo", payload).await
                    };
                    assert_eq!(reply.expect("echo").len(), 16);
                }
            };
            closed_loop(concurrency, slice / 4, call.clone()).await;
            rate[side] = closed_loop(concurrency, slice, call).await.0;
        }
        row.routed.push(rate[0]);
        row.direct.push(rate[1]);
        row.twin.push(rate[2]);
    }
    row
}

/// The same-worker rows at each of `concurrencies`: `pairs` rounds in
/// each of `clusters` clusters, the first `first` (a `ClusterClient` and
/// two `RpcClient`s to its worker a, which stays up), the others started
/// afresh, one at a time.
async fn same_worker_rows(
    first: Sides<'_>,
    concurrencies: &[usize],
    clusters: usize,
    pairs: usize,
    slice: Duration,
) -> Vec<SameWorkerRow> {
    let mut rows: Vec<SameWorkerRow> = concurrencies
        .iter()
        .map(|&concurrency| SameWorkerRow {
            concurrency,
            ..SameWorkerRow::default()
        })
        .collect();
    for n in 0..clusters {
        let fresh = if n == 0 {
            None
        } else {
            Some(TwoWorkers::start().await)
        };
        let sides = fresh.as_ref().map_or(first, Sides::of);
        for row in &mut rows {
            let one = same_worker(sides, row.concurrency, n * pairs, pairs, slice).await;
            row.clusters.push(one.ratio());
            row.twin_clusters.push(one.twin_ratio());
            row.routed.extend(one.routed);
            row.direct.extend(one.direct);
            row.twin.extend(one.twin);
        }
    }
    rows
}

/// `profile-routing pairs SECONDS [CONCURRENCY [PAIRS [CLUSTERS]]]`: the
/// same-worker row alone, `PAIRS` pairs (default 5) of `SECONDS` each in
/// each of `CLUSTERS` clusters (default [`CLUSTERS`]).
pub async fn pairs(
    concurrency: usize,
    pairs: usize,
    clusters: usize,
    slice: Duration,
) -> SameWorkerRow {
    let first = TwoWorkers::start().await;
    let mut rows =
        same_worker_rows(Sides::of(&first), &[concurrency], clusters, pairs, slice).await;
    rows.remove(0)
}

/// CPU time this process has used, all threads (user and system), from
/// `/proc/self/stat` (clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces), in brackets.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

pub async fn measure(repeats: usize, duration: Duration, kills: usize) -> Figures {
    // Skewed workers first, while the machine runs nothing else of ours.
    let skew_rows = skew(repeats, duration.max(Duration::from_secs(1))).await;
    let TwoWorkers {
        _director: director,
        seed,
        mut workers,
        registry,
        cluster,
        direct,
        twin,
    } = TwoWorkers::start().await;
    let seed_text = seed.to_string();
    let payload = vec![0xabu8; 16];

    let mut figures = Figures {
        skew: skew_rows,
        ..Figures::default()
    };
    // Rates and p50s per mode: ClusterClient to both workers, RpcClient to
    // worker a.
    let mut rates = [vec![], vec![]];
    let mut p50s = [vec![], vec![]];
    for _ in 0..repeats {
        for mode in 0..2 {
            let (cluster, direct, payload) = (cluster.clone(), direct.clone(), payload.clone());
            let call = move || {
                let (cluster, direct, payload) = (cluster.clone(), direct.clone(), payload.clone());
                async move {
                    let reply = match mode {
                        0 => {
                            cluster
                                .call_worker("echo", payload, Some("role=worker"))
                                .await
                        }
                        _ => direct.call("echo", payload).await,
                    };
                    assert_eq!(reply.expect("echo").len(), 16);
                }
            };
            closed_loop(64, duration / 4, call.clone()).await;
            let (rate, p50) = closed_loop(64, duration, call).await;
            rates[mode].push(rate);
            p50s[mode].push(p50);
        }
    }
    figures.cluster_calls_per_sec = median(&mut rates[0]);
    figures.cluster_p50_us = median(&mut p50s[0]);
    figures.direct_calls_per_sec = median(&mut rates[1]);
    figures.direct_p50_us = median(&mut p50s[1]);
    eprintln!(
        "routing c=64: cluster→2 {:.0} calls/s, direct→1 {:.0} ({:.1}% overhead)",
        figures.cluster_calls_per_sec,
        figures.direct_calls_per_sec,
        figures.overhead_percent()
    );
    // The routing path's own cost: ClusterClient to worker a against
    // RpcClient to worker a, and a second RpcClient to it, in rounds run
    // back to back, the order rotating from round to round.
    let slice = duration / 4;
    figures.same_worker = same_worker_rows(
        Sides {
            cluster: &cluster,
            direct: &direct,
            twin: &twin,
        },
        &[64, 256],
        CLUSTERS,
        repeats + 2,
        slice,
    )
    .await;
    for row in &figures.same_worker {
        eprintln!(
            "routing c={}: cluster→1 / direct→1 = {:.3} (clusters {:?}); twin / direct = {:.3} (clusters {:?})",
            row.concurrency,
            row.ratio(),
            row.clusters,
            row.twin_ratio(),
            row.twin_clusters
        );
    }
    drop((direct, twin));

    // Kills: steady idempotent load at c=8; kill -9 a worker; note when the
    // last call in flight at the kill completes; restart it; repeat.
    for k in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicUsize::new(0));
        // The first few errors, to say why calls failed.
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        // Completion times of calls started before `kill_at` (set below).
        let kill_at: Arc<Mutex<Option<Instant>>> = Arc::default();
        let caught: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cluster, stop, calls, failures, kill_at, caught, errors) = (
                    cluster.clone(),
                    stop.clone(),
                    calls.clone(),
                    failures.clone(),
                    kill_at.clone(),
                    caught.clone(),
                    errors.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        calls.fetch_add(1, Ordering::Relaxed);
                        let options = CallOptions::new()
                            .idempotent(true)
                            .with_timeout(Duration::from_secs(10));
                        let result = cluster
                            .call_worker_with("echo", vec![1; 16], Some("role=worker"), options)
                            .await;
                        let done = Instant::now();
                        if let Err(e) = result {
                            failures.fetch_add(1, Ordering::Relaxed);
                            let mut errors = errors.lock().unwrap();
                            if errors.len() < 3 {
                                errors.push(e.to_string());
                            }
                        }
                        if kill_at
                            .lock()
                            .unwrap()
                            .is_some_and(|k| started < k && done > k)
                        {
                            caught.lock().unwrap().push(done);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let victim = k % 2;
        let label = if victim == 0 { "a" } else { "b" };
        let killed = Instant::now();
        *kill_at.lock().unwrap() = Some(killed);
        let _ = workers[victim].child.kill(); // SIGKILL
        let _ = workers[victim].child.wait();
        // Long enough for every caught call to finish (idle timeout + margin).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let last = caught.lock().unwrap().iter().max().copied();
        if let Some(last) = last {
            figures
                .recovery_ms
                .push((last - killed).as_secs_f64() * 1e3);
        }
        figures.kill_calls += calls.load(Ordering::Relaxed);
        figures.kill_failures += failures.load(Ordering::Relaxed);
        eprintln!(
            "kill {k}: {} caught calls done after {:?}, {} failed so far {:?}",
            caught.lock().unwrap().len(),
            last.map(|l| l - killed),
            figures.kill_failures,
            errors.lock().unwrap()
        );
        // Restart at the same address: the new generation replaces the
        // dead one in the pool.
        let addr = workers[victim].addr;
        let old: Vec<_> = registry
            .workers()
            .iter()
            .filter(|w| w.addr() == addr)
            .map(|w| w.id)
            .collect();
        workers[victim] =
            ServerProcess::spawn(&["serve-worker", &seed_text, label, &addr.to_string()]);
        let mut changes = registry.changes();
        let restarted = Instant::now();
        let back = tokio::time::timeout(Duration::from_secs(60), async {
            while !registry.workers().iter().any(|w| {
                w.addr() == addr && !old.contains(&w.id) && w.state == WorkerState::Available
            }) {
                changes.changed().await.unwrap();
            }
        })
        .await;
        eprintln!(
            "restart: back after {:?}: {:?}",
            restarted.elapsed(),
            registry
                .workers()
                .iter()
                .map(|w| (w.id, w.state))
                .collect::<Vec<_>>()
        );
        if back.is_err() {
            let view = director.view();
            eprintln!(
                "membership view of {addr}: {:?}",
                view.members
                    .iter()
                    .filter(|m| m.addr() == addr)
                    .map(|m| (m.id, m.status, m.tags.clone()))
                    .collect::<Vec<_>>()
            );
        }
        back.expect("the restarted worker is back in rotation");
    }
    figures
}
