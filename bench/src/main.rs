//! Side-by-side benchmarks: rpcnet against tonic (TLS and plaintext) and a
//! blocking UDP ping-pong floor, servers in separate processes on loopback,
//! one connection/channel per client, the same closed-loop load generator
//! and the same raw `Vec<u8>` payloads for every system.
//!
//! ```text
//! cargo run --release -p rpcnet-bench            # full run (~10 min), writes docs/BENCHMARKS.md
//! cargo run --release -p rpcnet-bench -- --quick # quick run (~2.5 min)
//! cargo run --release -p rpcnet-bench -- typed    # the typed-layer row alone (seconds)
//! cargo run --release -p rpcnet-bench -- connections [--quick]  # 10,000 idle connections (500 with --quick)
//! cargo run --release -p rpcnet-bench -- gossip-crowd 100 128 120  # gossip connections of 100 real members
//! ```

mod conns;
mod crowd;
mod dispatch;
mod load;
mod report;
mod routing;
mod systems;
mod typed;
mod udp;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use report::{Report, Row};
use systems::{Client, System};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(System::parse(&args[2]).expect("system name")),
        // Profiling aid: `rpcnet-bench profile SYSTEM unary|latency|unary-1k-256|stream|upload|connect|connect-new|typed|raw-echo|unary-dispatch|udp SECONDS`
        // (`bench/pinned.sh` runs it with each side on a core of its own)
        Some("profile") => {
            let system = System::parse(&args[2]).expect("system name");
            let seconds: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(5.0);
            let runtime = runtime();
            runtime.block_on(profile(system, &args[3], Duration::from_secs_f64(seconds)));
        }
        // Profiling aid for the routing path: `rpcnet-bench profile-routing
        // cluster|cluster2|direct SECONDS [CONCURRENCY]` (c=64 by default),
        // or the same-worker rows alone: `profile-routing pairs SECONDS
        // [CONCURRENCY [PAIRS [CLUSTERS]]]`.
        Some("profile-routing") => {
            let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5.0);
            let concurrency = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(64);
            if args[2] == "pairs" {
                let pairs = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(5);
                let clusters = args.get(6).and_then(|s| s.parse().ok());
                let row = Shape::Default.runtime().block_on(routing::pairs(
                    concurrency,
                    pairs,
                    clusters.unwrap_or(routing::CLUSTERS),
                    Duration::from_secs_f64(seconds),
                ));
                eprintln!(
                    "median {:.3} of {} pairs; clusters {:?}; twin / direct {:.3}; clusters {:?}",
                    row.ratio(),
                    row.ratios().len(),
                    row.clusters,
                    row.twin_ratio(),
                    row.twin_clusters
                );
                return;
            }
            let rate = Shape::Default.runtime().block_on(routing::alone(
                &args[2],
                concurrency,
                Duration::from_secs_f64(seconds),
            ));
            eprintln!("{rate:.0} calls/s");
        }
        Some("serve-worker") => {
            exit_when_parent_goes();
            let seed: SocketAddr = args[2].parse().expect("seed address");
            let listen = args.get(4).map_or("127.0.0.1:0", String::as_str);
            runtime().block_on(routing::serve_worker(seed, &args[3], listen, announce));
        }
        // Routing figures alone: `rpcnet-bench routing [--quick]`.
        Some("routing") => {
            let plan = Plan::new(args.iter().any(|a| a == "--quick"));
            let figures = Shape::Default.runtime().block_on(routing_figures(&plan));
            println!("{}", figures.markdown());
        }
        // Connection scale: `rpcnet-bench connections [--quick]` (5
        // holder processes of 2,000 connections; 2 of 250 with --quick).
        Some("connections") => {
            let figures = connection_figures(args.iter().any(|a| a == "--quick"));
            println!("{}", figures.markdown());
        }
        // Gossip connections of N members in this process:
        // `gossip-crowd N MAX SECONDS` (MAX 0: kept open, no bound).
        Some("gossip-crowd") => {
            let n: usize = args[2].parse().expect("members");
            let max: usize = args[3].parse().expect("gossip_max_connections");
            let seconds: u64 = args[4].parse().expect("seconds");
            Shape::Default
                .runtime()
                .block_on(crowd::run(n, max, seconds));
        }
        // The measured member of `gossip-crowd`: `gossip-member SEED N MAX SECONDS`.
        Some("gossip-member") => {
            let seed: SocketAddr = args[2].parse().expect("seed address");
            let n: usize = args[3].parse().expect("members");
            let max: usize = args[4].parse().expect("gossip_max_connections");
            let seconds: u64 = args[5].parse().expect("seconds");
            exit_when_parent_goes();
            Shape::Default
                .runtime()
                .block_on(crowd::member_alone(seed, n, max, seconds));
        }
        // A holder process of `connections`: `hold-connections ADDR N`.
        Some("hold-connections") => {
            let addr: SocketAddr = args[2].parse().expect("address");
            let n: usize = args[3].parse().expect("count");
            exit_when_parent_goes();
            runtime().block_on(conns::hold(addr, n));
        }
        // The typed-layer row alone: `rpcnet-bench typed [--quick]`.
        Some("typed") => {
            let plan = Plan::new(args.iter().any(|a| a == "--quick"));
            let figures = Shape::Default.runtime().block_on(async {
                let server = ServerProcess::spawn_in(Shape::Default, &["serve", "rpcnet"]);
                let Client::Rpcnet(client) = Client::connect(System::Rpcnet, server.addr).await
                else {
                    unreachable!("an rpcnet client")
                };
                typed::measure(&client, plan.repeats, plan.unary_duration).await
            });
            println!("{}", figures.markdown());
        }
        Some("udp-echo") => {
            exit_when_parent_goes();
            udp::echo_server(announce);
        }
        _ => {
            let quick = args.iter().any(|a| a == "--quick");
            let out = args
                .iter()
                .position(|a| a == "--out")
                .and_then(|i| args.get(i + 1).cloned())
                .unwrap_or_else(|| {
                    concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BENCHMARKS.md").to_string()
                });
            // Anything else is a mistyped subcommand or flag: refuse it
            // rather than start the full run and rewrite the report.
            let mut rest = args.iter().skip(1);
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--quick" => {}
                    "--out" if rest.next().is_some() => {}
                    other => {
                        eprintln!(
                            "rpcnet-bench: unknown argument {other:?} (subcommands: typed, \
                             routing, connections, profile, profile-routing; flags: --quick, \
                             --out FILE)"
                        );
                        std::process::exit(2);
                    }
                }
            }
            let plan = Plan::new(quick);
            let mut report = Shape::Default.runtime().block_on(run(&plan));
            report.one_worker = Shape::OneWorker.runtime().block_on(run_one_worker(&plan));
            report.routing = Some(Shape::Default.runtime().block_on(routing_figures(&plan)));
            report.connections = Some(connection_figures(quick));
            let text = report.markdown(quick);
            println!("{text}");
            if let Some(dir) = std::path::Path::new(&out).parent() {
                std::fs::create_dir_all(dir).expect("create the report's directory");
            }
            std::fs::write(&out, &text).expect("write report");
            eprintln!("written to {out}");
        }
    }
}

/// The runtime of a server or profiling process: tokio's default
/// multi-threaded runtime unless a variable says otherwise (the report's
/// one-worker pass starts its servers with `RPCNET_BENCH_WORKERS=1`). For profiling,
/// `RPCNET_BENCH_WORKERS=N` gives every process N workers (0: a
/// current-thread runtime); `RPCNET_BENCH_SERVER_WORKERS` and
/// `RPCNET_BENCH_CLIENT_WORKERS` set one side only.
fn runtime() -> tokio::runtime::Runtime {
    let server = std::env::args().nth(1).as_deref() == Some("serve");
    let workers = |name: &str| std::env::var(name).ok()?.parse::<usize>().ok();
    let own = if server {
        workers("RPCNET_BENCH_SERVER_WORKERS")
    } else {
        workers("RPCNET_BENCH_CLIENT_WORKERS")
    };
    runtime_with(own.or_else(|| workers("RPCNET_BENCH_WORKERS")))
}

/// `None`: tokio's default; `Some(0)`: current-thread; `Some(n)`: n workers.
fn runtime_with(workers: Option<usize>) -> tokio::runtime::Runtime {
    match workers {
        Some(0) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()
            .unwrap(),
        None => tokio::runtime::Runtime::new().unwrap(),
    }
}

fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {addr}").unwrap();
    out.flush().unwrap();
}

/// The orchestrator holds our stdin; when it exits, so do we.
fn exit_when_parent_goes() {
    std::thread::spawn(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
        std::process::exit(0);
    });
}

fn serve(system: System) {
    exit_when_parent_goes();
    let runtime = runtime();
    runtime.block_on(systems::serve(
        system,
        "127.0.0.1:0".parse().unwrap(),
        announce,
    ));
}

/// A server process and the address it announced.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

/// A command running `exe`, under `taskset -c CPUS` when
/// `RPCNET_BENCH_SERVER_CPUS` is set: `bench/pinned.sh` sets it for a
/// `profile` run whose own process it pins to another core. `taskset`
/// executes `exe` in its place, so the child's pid is the server's. The
/// report's servers (`spawn_in`) are never pinned.
fn server_command(exe: std::ffi::OsString) -> Command {
    match std::env::var_os("RPCNET_BENCH_SERVER_CPUS") {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus).arg(exe);
            command
        }
        None => Command::new(exe),
    }
}

impl ServerProcess {
    /// A server process that inherits the profiling variables.
    /// A server process of this binary, or of `RPCNET_BENCH_SERVER_EXE`
    /// when set (another build's servers, to tell client-side costs from
    /// server-side ones in an A/B run).
    fn spawn(args: &[&str]) -> ServerProcess {
        let exe = std::env::var_os("RPCNET_BENCH_SERVER_EXE")
            .unwrap_or_else(|| std::env::current_exe().unwrap().into());
        Self::spawn_command(server_command(exe), args)
    }

    /// A server process with `shape`'s runtime, whatever the environment says.
    fn spawn_in(shape: Shape, args: &[&str]) -> ServerProcess {
        let mut command = Command::new(std::env::current_exe().unwrap());
        for name in WORKER_VARS {
            command.env_remove(name);
        }
        if let Shape::OneWorker = shape {
            command.env("RPCNET_BENCH_WORKERS", "1");
        }
        Self::spawn_command(command, args)
    }

    fn spawn_command(mut command: Command, args: &[&str]) -> ServerProcess {
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("READY ")
            .expect("READY line")
            .parse()
            .unwrap();
        ServerProcess { child, addr }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn profile(system: System, workload: &str, duration: Duration) {
    if workload == "udp" {
        // The blocking UDP ping-pong floor of the report (the system is
        // not used): 10,000 round trips per second asked for (`udp 2` makes
        // the full report's 20,000), after a tenth as many to warm up.
        let udp = ServerProcess::spawn(&["udp-echo"]);
        let p50 = udp_floor(&udp, (duration.as_secs_f64() * 10_000.0) as usize).await;
        eprintln!("p50 {p50:.1} µs");
        return;
    }
    let server = ServerProcess::spawn(&["serve", system.name()]);
    eprintln!("server pid {}", server.child.id());
    let client = Client::connect(system, server.addr).await;
    match workload {
        "unary" => {
            let r = load::unary(&client, 16, 64, duration).await;
            eprintln!("{:.0} calls/s", r.calls_per_sec);
        }
        "unary-dispatch" => {
            assert!(
                matches!(system, System::Rpcnet),
                "unary-dispatch needs the rpcnet system"
            );
            let rate = dispatch::unary(server.addr, 16, 64, duration).await;
            eprintln!("{rate:.0} calls/s");
        }
        "latency" => {
            let r = load::unary(&client, 16, 1, duration).await;
            eprintln!(
                "{:.0} calls/s, p50 {:.1} µs, p99 {:.1} µs",
                r.calls_per_sec, r.p50_us, r.p99_us
            );
        }
        "unary-1k-256" => {
            let r = load::unary(&client, 1024, 256, duration).await;
            eprintln!(
                "{:.0} calls/s, p50 {:.0} µs, p99 {:.0} µs",
                r.calls_per_sec, r.p50_us, r.p99_us
            );
        }
        "stream" | "upload" => {
            let end = std::time::Instant::now() + duration;
            while std::time::Instant::now() < end {
                let rate = if workload == "stream" {
                    load::server_stream(&client, 100_000, 1024).await
                } else {
                    load::client_stream(&client, 100_000, 1024).await
                };
                eprintln!("{rate:.0} msg/s");
            }
        }
        "connect" | "connect-new" => eprintln!(
            "p50 {:.0} µs",
            load::connect_p50(system, server.addr, 200, workload == "connect-new").await
        ),
        "typed" | "raw-echo" => {
            let Client::Rpcnet(client) = &client else {
                panic!("typed calls need the rpcnet system")
            };
            let rate = typed::alone(client, workload == "typed", duration).await;
            eprintln!("{rate:.0} calls/s");
        }
        other => panic!("unknown workload {other}"),
    }
}

/// The blocking UDP ping-pong's p50 (µs) against the `udp-echo` server
/// `udp`, over `round_trips` (after a tenth as many to warm up).
async fn udp_floor(udp: &ServerProcess, round_trips: usize) -> f64 {
    let addr = udp.addr;
    tokio::task::spawn_blocking(move || udp::ping_pong_p50(addr, round_trips))
        .await
        .unwrap()
}

struct Plan {
    repeats: usize,
    unary_duration: Duration,
    stream_messages: u32,
    connects: usize,
    udp_round_trips: usize,
    /// Worker kills for the routing figures (at least 10).
    kills: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                repeats: 3,
                unary_duration: Duration::from_millis(400),
                stream_messages: 100_000,
                connects: 15,
                udp_round_trips: 5_000,
                kills: 10,
            }
        } else {
            Plan {
                repeats: 3,
                unary_duration: Duration::from_secs(2),
                stream_messages: 100_000,
                connects: 50,
                udp_round_trips: 20_000,
                kills: 20,
            }
        }
    }
}

/// Connection scale: 5 holder processes of 2,000 connections (2 of 250
/// when `quick`) against a server process of its own (of
/// `RPCNET_BENCH_SERVER_EXE` when set: another build's server, or a
/// wrapper that `exec`s a heap profiler on it).
fn connection_figures(quick: bool) -> conns::Figures {
    let (processes, per_process) = if quick { (2, 250) } else { (5, 2_000) };
    Shape::Default.runtime().block_on(async {
        let server = ServerProcess::spawn(&["serve", "rpcnet"]);
        conns::measure(server.child.id(), server.addr, processes, per_process).await
    })
}

async fn routing_figures(plan: &Plan) -> routing::Figures {
    routing::measure(plan.repeats, plan.unary_duration, plan.kills).await
}

/// The tokio runtime of every process in one pass of the report.
#[derive(Clone, Copy)]
enum Shape {
    /// `Runtime::new()`: one worker per core in every process, what
    /// `#[tokio::main]` gives.
    Default,
    /// One worker per process: on a two-core machine the client and the
    /// server process each get one core's worth of threads.
    OneWorker,
}

impl Shape {
    fn runtime(self) -> tokio::runtime::Runtime {
        runtime_with(match self {
            Shape::Default => None,
            Shape::OneWorker => Some(1),
        })
    }
}

/// The profiling variables that change the runtime of bench processes.
const WORKER_VARS: [&str; 3] = [
    "RPCNET_BENCH_WORKERS",
    "RPCNET_BENCH_SERVER_WORKERS",
    "RPCNET_BENCH_CLIENT_WORKERS",
];

/// The servers of every system, started with `shape`'s runtime, and one
/// connected client for each.
async fn start(shape: Shape) -> (Vec<(System, ServerProcess)>, Vec<(System, Client)>) {
    let servers: Vec<(System, ServerProcess)> = System::ALL
        .into_iter()
        .map(|s| (s, ServerProcess::spawn_in(shape, &["serve", s.name()])))
        .collect();
    let mut clients = Vec::new();
    for (system, server) in &servers {
        clients.push((*system, Client::connect(*system, server.addr).await));
    }
    (servers, clients)
}

/// The report's measurements with tokio's default runtime in every process.
async fn run(plan: &Plan) -> Report {
    let (servers, clients) = start(Shape::Default).await;
    let mut report = Report::default();
    for size in [16usize, 1024] {
        report
            .rows
            .extend(unary_rows(plan, &clients, size, &[1, 16, 64, 256], "").await);
    }
    report.rows.extend(stream_rows(plan, &clients, "").await);
    if let Some((_, systems::Client::Rpcnet(client))) =
        clients.iter().find(|(s, _)| *s == System::Rpcnet)
    {
        report.typed = Some(typed::measure(client, plan.repeats, plan.unary_duration).await);
    }
    // The clients above stay connected, so an rpcnet client connecting now
    // finds a running endpoint to share; tonic opens a new channel either way.
    for (name, new_endpoint) in [(report::CONNECT_SHARED, false), (report::CONNECT_NEW, true)] {
        report
            .rows
            .push(connect_row(plan, &servers, name.to_string(), new_endpoint).await);
    }
    drop(clients);
    drop(servers);

    let udp = ServerProcess::spawn_in(Shape::Default, &["udp-echo"]);
    let mut floors = Vec::new();
    for _ in 0..plan.repeats {
        floors.push(udp_floor(&udp, plan.udp_round_trips).await);
    }
    report.udp_p50_us = report::median(&mut floors);
    eprintln!("UDP ping-pong p50: {:.1} µs", report.udp_p50_us);
    report
}

/// The rows the targets name, again with one worker in every process
/// (client and server each get one core's worth of threads on this
/// machine instead of both asking for two).
async fn run_one_worker(plan: &Plan) -> Vec<Row> {
    let (servers, clients) = start(Shape::OneWorker).await;
    let suffix = report::ONE_WORKER;
    let mut rows = unary_rows(plan, &clients, 16, &[1, 64, 256], suffix).await;
    rows.extend(stream_rows(plan, &clients, suffix).await);
    rows.push(
        connect_row(
            plan,
            &servers,
            format!("{}{suffix}", report::CONNECT_SHARED),
            false,
        )
        .await,
    );
    rows
}

async fn unary_rows(
    plan: &Plan,
    clients: &[(System, Client)],
    size: usize,
    concurrencies: &[usize],
    suffix: &str,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &concurrency in concurrencies {
        let label = format!(
            "unary {} c={concurrency}{suffix}",
            if size == 16 { "16 B" } else { "1 KiB" }
        );
        let mut rate = Row::new(format!("{label}: calls/s"), "calls/s");
        let mut p50 = Row::new(format!("{label}: p50"), "µs");
        let mut p99 = Row::new(format!("{label}: p99"), "µs");
        for _ in 0..plan.repeats {
            for (system, client) in clients {
                let r = load::unary(client, size, concurrency, plan.unary_duration).await;
                rate.add(*system, r.calls_per_sec);
                p50.add(*system, r.p50_us);
                p99.add(*system, r.p99_us);
            }
        }
        eprintln!("{}", rate.summary());
        rows.extend([rate, p50, p99]);
    }
    rows
}

async fn stream_rows(plan: &Plan, clients: &[(System, Client)], suffix: &str) -> Vec<Row> {
    let n = plan.stream_messages;
    let down_label = format!("server streaming {n} × 1 KiB{suffix}");
    let up_label = format!("client streaming {n} × 1 KiB{suffix}");
    let mut down = Row::new(format!("{down_label}: messages/s"), "msg/s");
    let mut down_mb = Row::new(format!("{down_label}: MB/s"), "MB/s");
    let mut up = Row::new(format!("{up_label}: messages/s"), "msg/s");
    let mut up_mb = Row::new(format!("{up_label}: MB/s"), "MB/s");
    for _ in 0..plan.repeats {
        for (system, client) in clients {
            let rate = load::server_stream(client, n, 1024).await;
            down.add(*system, rate);
            down_mb.add(*system, rate * 1024.0 / 1e6);
            let rate = load::client_stream(client, n, 1024).await;
            up.add(*system, rate);
            up_mb.add(*system, rate * 1024.0 / 1e6);
        }
    }
    eprintln!("{}\n{}", down.summary(), up.summary());
    vec![down, down_mb, up, up_mb]
}

async fn connect_row(
    plan: &Plan,
    servers: &[(System, ServerProcess)],
    name: String,
    new_endpoint: bool,
) -> Row {
    let mut connect = Row::new(name, "µs");
    for _ in 0..plan.repeats {
        for (system, server) in servers {
            connect.add(
                *system,
                load::connect_p50(*system, server.addr, plan.connects, new_endpoint).await,
            );
        }
    }
    eprintln!("{}", connect.summary());
    connect
}
