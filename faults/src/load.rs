//! `rpcnet-faults load`: a cluster member that keeps calling workers
//! through a `ClusterClient` and reports every failure, every slow call and
//! every change of its worker pool. The scenarios run it in a lab host.
//!
//! ```text
//! rpcnet-faults load --listen ADDR [--advertise HOST[:PORT]] --seed HOST:PORT
//!                    [--cert F --key F --ca F] [--concurrency 8] [--secs 60]
//!                    [--min-workers 1] [--method echo|whoami]
//! ```
//!
//! The load starts once `--min-workers` workers are available and runs for
//! `--secs` from then. Output lines (milliseconds since the process
//! started): `READY <addr>` (the advertised address, as in `rpcnet-node`);
//! `EVENT <event>` per membership event (as
//! `rpcnet-node` prints them); `GO <ms>` when the load starts; `POOL <ms> <active workers> <addr,...>` on every pool
//! change; `ERR <ms> <latency ms> <error>` for a failed call;
//! `SLOW <ms> <latency ms>` for a call that succeeded after more than
//! 100 ms; `TICK <ms> <ok> <err>` every second; `DONE <ok> <err>` at the end.
//! Calls are idempotent `echo` calls of 64 bytes with a 5 s timeout; with
//! `--method whoami` they are `whoami` calls, whose answer is the worker's
//! label, and every second also prints `BY <ms> <label>=<answers>,...`
//! (answers so far per label). Seeds may be names (`host:port`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpcnet::cluster::{
    ClusterClient, ClusterConfig, ClusterMembership, LoadBalancingStrategy, WorkerRegistry,
    WorkerState,
};
use rpcnet::{CallOptions, RpcConfig, RpcServer};

struct Args {
    listen: String,
    advertise: Option<String>,
    seeds: Vec<String>,
    cert: String,
    key: String,
    ca: String,
    concurrency: usize,
    secs: u64,
    min_workers: usize,
    whoami: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        listen: "127.0.0.1:0".into(),
        advertise: None,
        seeds: Vec::new(),
        cert: "certs/test_cert.pem".into(),
        key: "certs/test_key.pem".into(),
        ca: "certs/ca.pem".into(),
        concurrency: 8,
        secs: 60,
        min_workers: 1,
        whoami: false,
    };
    for (flag, value) in crate::args::pairs(args)? {
        match flag {
            "--listen" => out.listen = value.into(),
            "--advertise" => out.advertise = Some(value.into()),
            "--seed" => out.seeds.push(value.into()),
            "--cert" => out.cert = value.into(),
            "--key" => out.key = value.into(),
            "--ca" => out.ca = value.into(),
            "--concurrency" => out.concurrency = crate::args::parse(flag, value)?,
            "--secs" => out.secs = crate::args::parse(flag, value)?,
            "--min-workers" => out.min_workers = crate::args::parse(flag, value)?,
            "--method" => {
                out.whoami = match value {
                    "echo" => false,
                    "whoami" => true,
                    _ => return Err(format!("--method: {value} is neither echo nor whoami")),
                }
            }
            other => return Err(crate::args::unknown(other)),
        }
    }
    Ok(out)
}

/// Runs the load role; `args` are the arguments after `load`.
pub fn main(args: &[String]) -> Result<(), String> {
    let args = parse(args)?;
    crate::args::block_on(run(args))
}

async fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    let ms = move || started.elapsed().as_millis();
    let rpc = RpcConfig::new(&args.cert, args.listen.as_str())
        .with_key_path(&args.key)
        .with_client_ca_path(&args.ca);
    let mut server = RpcServer::new(rpc);
    let quic = server.bind().map_err(|e| e.to_string())?;
    let handle = server.handle();
    tokio::spawn(async move { server.start(quic).await });
    let mut config = ClusterConfig::default().with_server(handle);
    if let Some(advertise) = &args.advertise {
        config = config.with_advertise_addr(advertise.as_str());
    }
    let cluster = ClusterMembership::new(config)
        .await
        .map_err(|e| e.to_string())?;
    let addr = cluster.advertised_addr();
    let mut events = cluster.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => println!("EVENT {event}"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("LAGGED {n}"),
                Err(_) => break,
            }
        }
    });
    println!("READY {addr}");
    cluster
        .join_named(args.seeds)
        .await
        .map_err(|e| e.to_string())?;

    let registry = Arc::new(WorkerRegistry::new(
        cluster.clone(),
        LoadBalancingStrategy::LeastConnections,
    ));
    registry.start().await;
    {
        let registry = registry.clone();
        let mut changes = registry.changes();
        tokio::spawn(async move {
            loop {
                let active = available_addrs(&registry);
                println!("POOL {} {} {}", ms(), active.len(), active.join(","));
                if changes.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    let mut changes = registry.changes();
    while available(&registry) < args.min_workers {
        if changes.changed().await.is_err() {
            return Err("the registry stopped".into());
        }
    }
    println!("GO {}", ms());

    let worker_rpc =
        RpcConfig::new(&args.ca, "0.0.0.0:0").with_client_identity(&args.cert, &args.key);
    let client = Arc::new(ClusterClient::new(registry.clone(), worker_rpc));
    let (ok, err) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Answers per worker label (`--method whoami`).
    let by: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let (method, payload) = if args.whoami {
        ("whoami", Vec::new())
    } else {
        ("echo", vec![7; 64])
    };
    let end = tokio::time::Instant::now() + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, ok, err, by) = (client.clone(), ok.clone(), err.clone(), by.clone());
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < end {
                let t0 = Instant::now();
                let options = CallOptions::new()
                    .idempotent(true)
                    .with_timeout(Duration::from_secs(5));
                let result = client
                    .call_worker_with(method, payload.clone(), Some("role=worker"), options)
                    .await;
                let latency = t0.elapsed().as_millis();
                match result {
                    Ok(answer) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if method == "whoami" {
                            let label = String::from_utf8_lossy(&answer).into_owned();
                            *by.lock().unwrap().entry(label).or_default() += 1;
                        }
                        if latency > 100 {
                            println!("SLOW {} {latency}", ms());
                        }
                    }
                    Err(e) => {
                        err.fetch_add(1, Ordering::Relaxed);
                        println!(
                            "ERR {} {latency} {}",
                            ms(),
                            e.to_string().replace('\n', " ")
                        );
                        // Nothing to call yet (or any more): do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    {
        let (ok, err, whoami) = (ok.clone(), err.clone(), args.whoami);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                println!(
                    "TICK {} {} {}",
                    ms(),
                    ok.load(Ordering::Relaxed),
                    err.load(Ordering::Relaxed)
                );
                if whoami {
                    let by = by
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(label, n)| format!("{label}={n}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    println!("BY {} {by}", ms());
                }
            }
        });
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "DONE {} {}",
        ok.load(Ordering::Relaxed),
        err.load(Ordering::Relaxed)
    );
    let _ = cluster.leave().await;
    Ok(())
}

fn available_addrs(registry: &WorkerRegistry) -> Vec<String> {
    registry
        .workers()
        .into_iter()
        .filter(|w| w.state == WorkerState::Available)
        .filter(|w| w.tags.get("role").map(String::as_str) == Some("worker"))
        .map(|w| w.addr().to_string())
        .collect()
}

fn available(registry: &WorkerRegistry) -> usize {
    available_addrs(registry).len()
}
