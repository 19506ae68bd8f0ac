//! A cluster worker for the routing tests and the benchmark: an RPC server
//! with mutual TLS that joins the cluster tagged `role=worker` and
//! `label=<label>`, and drains gracefully on SIGTERM / Ctrl-C
//! (`rpcnet::cluster::drain_and_leave`).
//!
//! ```text
//! rpcnet-worker --listen 127.0.0.1:0 --seed ADDR --label worker-a [--drain-ms 10000]
//!               [--cert certs/test_cert.pem --key certs/test_key.pem --ca certs/ca.pem]
//!               [--admin 127.0.0.1:9091]
//! ```
//!
//! The certificate must be a member certificate for the listen address
//! (`rpcnet-certs --member`; the default one is for loopback); `--ca` is
//! the cluster CA its clients' certificates must come from.
//!
//! Methods: `whoami` (answers the label), `sleep` (payload: milliseconds as
//! ASCII digits; sleeps, then answers the label), `echo`.
//! Output lines: `READY <addr>`, `EVENT <event>` per membership event (as
//! `rpcnet-node` prints them), `DRAINING`, `SERVED <calls completed>`, `LEFT`.
//! `--admin ADDR` (or `$RPCNET_ADMIN_ADDR`) serves the admin endpoint
//! there and prints `ADMIN <addr>` after `READY` (`docs/OPERATIONS.md`).

#[path = "shared/admin.rs"]
mod admin;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rpcnet::cluster::{drain_and_leave, ClusterConfig, ClusterMembership};
use rpcnet::{RpcConfig, RpcError, RpcServer};

struct Args {
    listen: String,
    seeds: Vec<SocketAddr>,
    label: String,
    drain: Duration,
    cert: String,
    key: String,
    ca: String,
    admin: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:0".into(),
        seeds: Vec::new(),
        label: "worker-1".into(),
        drain: Duration::from_secs(10),
        cert: "certs/test_cert.pem".into(),
        key: "certs/test_key.pem".into(),
        ca: "certs/ca.pem".into(),
        admin: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--seed" => args
                .seeds
                .push(value()?.parse().map_err(|e| format!("--seed: {e}"))?),
            "--label" => args.label = value()?,
            "--cert" => args.cert = value()?,
            "--key" => args.key = value()?,
            "--ca" => args.ca = value()?,
            "--admin" => args.admin = Some(value()?),
            "--drain-ms" => {
                args.drain =
                    Duration::from_millis(value()?.parse().map_err(|e| format!("--drain-ms: {e}"))?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse().map_err(|e| {
        format!(
            "{e}\nusage: rpcnet-worker --listen ADDR [--seed ADDR]... [--label L] [--drain-ms N] [--cert F --key F --ca F] [--admin ADDR]"
        )
    })?;
    let rpc = RpcConfig::new(&args.cert, args.listen.as_str())
        .with_key_path(&args.key)
        .with_client_ca_path(&args.ca)
        .with_drain_timeout(args.drain);
    let mut server = RpcServer::new(rpc);
    let served = Arc::new(AtomicU64::new(0));
    let label = args.label.clone().into_bytes();
    {
        let (label, served) = (label.clone(), served.clone());
        server
            .register("whoami", move |_| {
                let (label, served) = (label.clone(), served.clone());
                async move {
                    served.fetch_add(1, Ordering::Relaxed);
                    Ok(label)
                }
            })
            .await;
    }
    {
        let (label, served) = (label.clone(), served.clone());
        server
            .register("sleep", move |ms| {
                let (label, served) = (label.clone(), served.clone());
                async move {
                    let ms: u64 = std::str::from_utf8(&ms)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| {
                            RpcError::RemoteError("sleep takes ASCII milliseconds".into())
                        })?;
                    tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
                    served.fetch_add(1, Ordering::Relaxed);
                    Ok(label)
                }
            })
            .await;
    }
    server
        .register("echo", |data| async move { Ok(data) })
        .await;
    let quic = server.bind()?;
    let handle = server.handle();
    let shutdown = server.shutdown_handle();
    let addr = handle.socket_addr().expect("bound");
    let serving = tokio::spawn(async move { server.start(quic).await });

    // A generation that grows across restarts, so a restart at the same
    // address wins over the old identity (the default generation mixes the
    // process id into the clock and can come out lower than the last one).
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let config = ClusterConfig::default()
        .with_generation(generation)
        .with_server(handle)
        .with_tag("role", "worker")
        .with_tag("label", args.label.clone());
    let cluster = ClusterMembership::new(config).await?;
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
    let admin = admin::Admin::start(args.admin.as_deref(), &cluster, None).await?;
    let seedless = args.seeds.is_empty();
    if let Err(e) = cluster.join(args.seeds).await {
        println!("JOIN-FAILED {e}");
    }
    admin.serving(seedless);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
    }
    println!("DRAINING");
    admin.draining();
    let drained = drain_and_leave(&cluster, &shutdown, serving, args.drain).await;
    println!("SERVED {}", served.load(Ordering::Relaxed));
    if let Err(e) = drained {
        println!("DRAIN-INCOMPLETE {e}");
    }
    println!("LEFT");
    Ok(())
}
