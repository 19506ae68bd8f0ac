//! A cluster worker for the routing tests and the benchmark: an RPC server
//! with mutual TLS that joins the cluster tagged `role=worker` and
//! `label=<label>`, and drains gracefully on SIGTERM / Ctrl-C
//! (`rpcnet::cluster::drain_and_leave`).
//!
//! ```text
//! rpcnet-worker --listen 127.0.0.1:0 [--advertise HOST[:PORT]] --seed HOST:PORT --label worker-a [--drain-ms 10000]
//!               [--tag key=value]... [--cert certs/test_cert.pem --key certs/test_key.pem --ca certs/ca.pem]
//!               [--admin 127.0.0.1:9091]
//! ```
//!
//! The certificate must be a member certificate for the listen address,
//! or for the `--advertise`d one (`rpcnet-certs --member`; the default one
//! is for loopback); `--ca` is the cluster CA its clients' certificates
//! must come from.
//!
//! Methods: `whoami` (answers the label), `sleep` (payload: milliseconds as
//! ASCII digits; sleeps, then answers the label), `echo`.
//! Output lines: `READY <addr>` (the advertised or listen address), `EVENT <event>` per membership event (as
//! `rpcnet-node` prints them), `DRAINING`, `SERVED <calls completed>`, `LEFT`.
//! `--admin ADDR` (or `$RPCNET_ADMIN_ADDR`) serves the admin endpoint
//! there and prints `ADMIN <addr>` after `READY` (`docs/OPERATIONS.md`);
//! its `/ready` answers 503 from `DRAINING` on.
//!
//! Every flag can also be set by an environment variable, for containers:
//! `RPCNET_LISTEN`, `RPCNET_ADVERTISE`, `RPCNET_SEEDS` and `RPCNET_TAGS`
//! (comma-separated), `RPCNET_LABEL`, `RPCNET_DRAIN_MS`, `RPCNET_CERT`, `RPCNET_KEY`,
//! `RPCNET_CA` and `RPCNET_ADMIN_ADDR`; a flag on the command line wins
//! (`src/bin/shared/flags.rs`, `rpcnet-worker --help`). Seeds may be DNS
//! names. Tags given this way come on top of `role` and `label`, which
//! they cannot change.

#[path = "shared/admin.rs"]
mod admin;
#[path = "shared/flags.rs"]
mod flags;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rpcnet::cluster::{drain_and_leave, ClusterConfig, ClusterMembership};
use rpcnet::{RpcConfig, RpcError, RpcServer};

/// A cluster worker tagged role=worker and label=LABEL: prints READY ADDR
/// and EVENT lines; SIGTERM or Ctrl-C drains (DRAINING, SERVED N), then
/// leaves (LEFT).
#[derive(Parser, Debug)]
#[command(name = "rpcnet-worker", version)]
struct Args {
    #[command(flatten)]
    member: flags::Member,
    /// The worker's label (its `label` tag, and the answer of `whoami`).
    #[arg(long, env = "RPCNET_LABEL", default_value = "worker-1")]
    label: String,
    /// How long calls in flight may take to finish after SIGTERM, in milliseconds.
    #[arg(
        long = "drain-ms",
        env = "RPCNET_DRAIN_MS",
        value_name = "MS",
        default_value_t = 10_000
    )]
    drain_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args {
        member,
        label,
        drain_ms,
    } = Args::parse();
    flags::init_logging();
    let mut stop = flags::Stop::install()?;
    let tags = member.tags()?;
    let seeds = member.seeds();
    let drain = Duration::from_millis(drain_ms);
    let rpc = RpcConfig::new(&member.cert, member.listen.as_str())
        .with_key_path(&member.key)
        .with_client_ca_path(&member.ca)
        .with_drain_timeout(drain);
    let mut server = RpcServer::new(rpc);
    let served = Arc::new(AtomicU64::new(0));
    let label_bytes = label.clone().into_bytes();
    {
        let (label, served) = (label_bytes.clone(), served.clone());
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
        let (label, served) = (label_bytes.clone(), served.clone());
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
    let serving = tokio::spawn(async move { server.start(quic).await });

    // A generation that grows across restarts, so a restart at the same
    // address wins over the old identity (the default generation mixes the
    // process id into the clock and can come out lower than the last one).
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut config = member.advertise(
        ClusterConfig::default()
            .with_generation(generation)
            .with_server(handle),
    );
    // Tags of the command line or environment first: `role` and `label`
    // are the worker's own and win.
    for (k, v) in tags {
        config = config.with_tag(k, v);
    }
    let config = config.with_tag("role", "worker").with_tag("label", label);
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
    // The address the node is known by (events name it): the listen
    // address, or the advertised one.
    println!("READY {}", cluster.advertised_addr());
    let admin = admin::Admin::start(member.admin.as_deref(), &cluster, None).await?;
    let seedless = seeds.is_empty();
    if !flags::join_or_stop(&cluster, seeds, &mut stop).await {
        admin.serving(seedless);
        stop.wait().await;
    }
    // Not ready first, so that whoever reads DRAINING finds /ready at 503.
    admin.draining();
    println!("DRAINING");
    let drained = drain_and_leave(&cluster, &shutdown, serving, drain).await;
    println!("SERVED {}", served.load(Ordering::Relaxed));
    if let Err(e) = drained {
        println!("DRAIN-INCOMPLETE {e}");
    }
    println!("LEFT");
    Ok(())
}
