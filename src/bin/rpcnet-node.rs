//! A bare cluster member: an RPC server (TLS; client certificates optional,
//! verified against the CA) whose endpoint
//! carries the membership gossip. Prints one line per membership event;
//! Ctrl-C / SIGTERM leaves the cluster gracefully.
//!
//! ```text
//! rpcnet-node --listen 127.0.0.1:7001 [--advertise host[:port]] [--seed 127.0.0.1:7000 | --seed host:port]... [--tag key=value]...
//!             [--cert certs/test_cert.pem --key certs/test_key.pem --ca certs/ca.pem]
//!             [--generation N] [--admin 127.0.0.1:9090]
//! ```
//!
//! The certificate must be a member certificate (`rpcnet-certs --member`);
//! clients of the node need none (they only trust the CA). `--generation`
//! fixes the starting generation (tests use it to start a restart *below*
//! its earlier life; the node then moves above what the cluster remembers).
//!
//! `--advertise` (for a node listening on `0.0.0.0`, behind NAT or a port
//! mapping, or known by a DNS name) is the address peers reach it at and
//! know it by; its certificate must name that host.
//!
//! Output lines: `READY <addr>` (the advertised address, or the listen
//! address), then `EVENT <event>` per membership
//! event, in `ClusterEvent`'s display form (`EVENT failed <addr>
//! <generation>`; kinds: joined, left, failed, recovered, tags, partition,
//! healed). With `--admin ADDR` (or `$RPCNET_ADMIN_ADDR`) it serves the
//! admin endpoint there (`docs/OPERATIONS.md`) and prints `ADMIN <addr>`
//! after `READY`. Methods: `echo` (unary) and `echo.stream` (every call
//! mode), for trying calls with `rpcnet call`.
//!
//! Every flag can also be set by an environment variable, for containers:
//! `RPCNET_LISTEN`, `RPCNET_ADVERTISE`, `RPCNET_SEEDS` and `RPCNET_TAGS` (comma-separated),
//! `RPCNET_CERT`, `RPCNET_KEY`, `RPCNET_CA`, `RPCNET_ADMIN_ADDR` and
//! `RPCNET_GENERATION`; a flag on the command line wins
//! (`src/bin/shared/flags.rs`, `rpcnet-node --help`).

#[path = "shared/admin.rs"]
mod admin;
#[path = "shared/echo.rs"]
mod echo;
#[path = "shared/flags.rs"]
mod flags;

use clap::Parser;
use rpcnet::cluster::{ClusterConfig, ClusterMembership};
use rpcnet::{RpcConfig, RpcServer};

/// A bare cluster member: prints READY ADDR, then one EVENT line per
/// membership event; SIGTERM or Ctrl-C leaves the cluster.
#[derive(Parser, Debug)]
#[command(name = "rpcnet-node", version)]
struct Args {
    #[command(flatten)]
    member: flags::Member,
    /// The starting generation (by default the Unix time in milliseconds).
    #[arg(long, env = "RPCNET_GENERATION", value_name = "N")]
    generation: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args { member, generation } = Args::parse();
    flags::init_logging();
    let mut stop = flags::Stop::install()?;
    let tags = member.tags()?;
    let seeds = member.seeds();
    let rpc = RpcConfig::new(&member.cert, member.listen.as_str())
        .with_key_path(&member.key)
        .with_optional_client_ca_path(&member.ca);
    let mut server = RpcServer::new(rpc);
    server
        .register("echo", |request| async move { Ok(request) })
        .await;
    server
        .register_streaming(echo::METHOD, echo::echo_stream)
        .await;
    let quic = server.bind()?;
    let handle = server.handle();
    let serving = tokio::spawn(async move { server.start(quic).await });

    let mut config = member.advertise(ClusterConfig::default().with_server(handle));
    for (k, v) in tags {
        config = config.with_tag(k, v);
    }
    if let Some(generation) = generation {
        config = config.with_generation(generation);
    }
    let cluster = ClusterMembership::new(config).await?;
    let mut events = cluster.subscribe();
    // The address the node is known by (events name it): the listen
    // address, or the advertised one.
    println!("READY {}", cluster.advertised_addr());
    let admin = admin::Admin::start(member.admin.as_deref(), &cluster, None).await?;
    let seedless = seeds.is_empty();
    if !flags::join_or_stop(&cluster, seeds, &mut stop).await {
        admin.serving(seedless);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => println!("EVENT {event}"),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("LAGGED {n}"),
                    Err(_) => break,
                },
                _ = stop.wait() => break,
            }
        }
    }
    admin.draining();
    cluster.leave().await?;
    println!("LEFT");
    serving.abort();
    Ok(())
}
