//! A bare cluster member: an RPC server (TLS; client certificates optional,
//! verified against the CA) whose endpoint
//! carries the membership gossip. Prints one line per membership event;
//! Ctrl-C / SIGTERM leaves the cluster gracefully.
//!
//! ```text
//! rpcnet-node --listen 127.0.0.1:7001 [--seed 127.0.0.1:7000 | --seed host:port]... [--tag key=value]...
//!             [--cert certs/test_cert.pem --key certs/test_key.pem --ca certs/ca.pem]
//!             [--generation N] [--admin 127.0.0.1:9090]
//! ```
//!
//! The certificate must be a member certificate (`rpcnet-certs --member`);
//! clients of the node need none (they only trust the CA). `--generation`
//! fixes the starting generation (tests use it to start a restart *below*
//! its earlier life; the node then moves above what the cluster remembers).
//!
//! Output lines: `READY <addr>`, then `EVENT <event>` per membership
//! event, in `ClusterEvent`'s display form (`EVENT failed <addr>
//! <generation>`; kinds: joined, left, failed, recovered, tags, partition,
//! healed). With `--admin ADDR` (or `$RPCNET_ADMIN_ADDR`) it serves the
//! admin endpoint there (`docs/OPERATIONS.md`) and prints `ADMIN <addr>`
//! after `READY`. Methods: `echo` (unary) and `echo.stream` (every call
//! mode), for trying calls with `rpcnet call`.

#[path = "shared/admin.rs"]
mod admin;
#[path = "shared/echo.rs"]
mod echo;

use rpcnet::cluster::{ClusterConfig, ClusterMembership};
use rpcnet::{RpcConfig, RpcServer};

struct Args {
    listen: String,
    seeds: Vec<String>,
    tags: Vec<(String, String)>,
    cert: String,
    key: String,
    ca: String,
    generation: Option<u64>,
    admin: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:0".into(),
        seeds: Vec::new(),
        tags: Vec::new(),
        cert: "certs/test_cert.pem".into(),
        key: "certs/test_key.pem".into(),
        ca: "certs/ca.pem".into(),
        generation: None,
        admin: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--seed" => args.seeds.push(value()?),
            "--tag" => {
                let v = value()?;
                let (k, val) = v.split_once('=').ok_or("--tag takes key=value")?;
                args.tags.push((k.into(), val.into()));
            }
            "--cert" => args.cert = value()?,
            "--key" => args.key = value()?,
            "--ca" => args.ca = value()?,
            "--admin" => args.admin = Some(value()?),
            "--generation" => {
                args.generation = Some(value()?.parse().map_err(|e| format!("--generation: {e}"))?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse().map_err(|e| format!("{e}\nusage: rpcnet-node --listen ADDR [--seed ADDR]... [--tag k=v]... [--cert F --key F --ca F] [--generation N] [--admin ADDR]"))?;
    let rpc = RpcConfig::new(&args.cert, args.listen.as_str())
        .with_key_path(&args.key)
        .with_optional_client_ca_path(&args.ca);
    let mut server = RpcServer::new(rpc);
    server
        .register("echo", |request| async move { Ok(request) })
        .await;
    server
        .register_streaming(echo::METHOD, echo::echo_stream)
        .await;
    let quic = server.bind()?;
    let handle = server.handle();
    let addr = handle.socket_addr().expect("bound");
    let serving = tokio::spawn(async move { server.start(quic).await });

    let mut config = ClusterConfig::default().with_server(handle);
    for (k, v) in args.tags {
        config = config.with_tag(k, v);
    }
    if let Some(generation) = args.generation {
        config = config.with_generation(generation);
    }
    let cluster = ClusterMembership::new(config).await?;
    let mut events = cluster.subscribe();
    println!("READY {addr}");
    let admin = admin::Admin::start(args.admin.as_deref(), &cluster, None).await?;
    let seedless = args.seeds.is_empty();
    if let Err(e) = cluster.join_named(args.seeds).await {
        eprintln!("join failed: {e}");
        println!("JOIN-FAILED {e}");
    }
    admin.serving(seedless);

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => println!("EVENT {event}"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("LAGGED {n}"),
                Err(_) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    admin.draining();
    cluster.leave().await?;
    println!("LEFT");
    serving.abort();
    Ok(())
}
