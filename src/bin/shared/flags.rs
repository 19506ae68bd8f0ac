//! The flags `rpcnet-node` and `rpcnet-worker` share. Each one can also be
//! set by an environment variable (a container sets those); a flag given
//! on the command line wins over its variable. Included by both programs
//! with `#[path]`.
//!
//! | flag | variable | default |
//! |---|---|---|
//! | `--listen ADDR` | `RPCNET_LISTEN` | `127.0.0.1:0` |
//! | `--advertise HOST[:PORT]` | `RPCNET_ADVERTISE` | the listen address |
//! | `--seed HOST:PORT` (repeated) | `RPCNET_SEEDS` (comma-separated) | none |
//! | `--tag KEY=VALUE` (repeated) | `RPCNET_TAGS` (comma-separated) | none |
//! | `--cert PATH` | `RPCNET_CERT` | `certs/test_cert.pem` |
//! | `--key PATH` | `RPCNET_KEY` | `certs/test_key.pem` |
//! | `--ca PATH` | `RPCNET_CA` | `certs/ca.pem` |
//! | `--admin ADDR` | `RPCNET_ADMIN_ADDR` | off |
//!
//! A seed is `host:port`, the host an IP address or a DNS name (a
//! Kubernetes headless service, for example); names are resolved again
//! while the node has no live member (`ClusterMembership::join_named`).
//! Both lists split at commas on the command line as well.

use std::path::PathBuf;

use rpcnet::cluster::ClusterConfig;

/// The stop signals, SIGTERM and Ctrl-C (SIGINT), taken over at start: a
/// signal that arrives while the member is still joining then stops it
/// gracefully instead of ending the process (exit 143).
pub struct Stop(tokio::signal::unix::Signal);

impl Stop {
    /// Takes over SIGTERM now.
    ///
    /// # Errors
    /// When the signal handler cannot be installed.
    pub fn install() -> std::io::Result<Self> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map(Self)
    }

    /// Until SIGTERM or Ctrl-C.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.0.recv() => {}
        }
    }
}

/// Joins through `seeds` (printing `JOIN-FAILED <why>` when none
/// answered), unless a stop signal comes first: returns whether it did.
pub async fn join_or_stop(
    cluster: &rpcnet::cluster::ClusterMembership,
    seeds: Vec<String>,
    stop: &mut Stop,
) -> bool {
    tokio::select! {
        joined = cluster.join_named(seeds) => {
            if let Err(e) = joined {
                eprintln!("join failed: {e}");
                println!("JOIN-FAILED {e}");
            }
            false
        }
        _ = stop.wait() => true,
    }
}

/// Warnings and errors of the library on stderr (`RUST_LOG` sets more,
/// for example `RUST_LOG=rpcnet=debug`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The flags (and variables) of every cluster member program.
#[derive(clap::Args, Debug)]
pub struct Member {
    /// The address the RPC endpoint binds; membership gossip uses the same port.
    #[arg(
        long,
        env = "RPCNET_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:0"
    )]
    pub listen: String,
    /// The address peers reach this member at and know it by, as
    /// `host[:port]` (an IP address or a DNS name; the listen port when
    /// none is given). Needed when listening on a wildcard address, behind
    /// NAT or a port mapping, or to be known by a DNS name. The member
    /// certificate must name its host (`rpcnet-certs --member NAME --san HOST`).
    #[arg(long, env = "RPCNET_ADVERTISE", value_name = "HOST[:PORT]")]
    pub advertise: Option<String>,
    /// A member to join through, as host:port (an IP address or a DNS
    /// name); repeatable, or several separated by commas.
    #[arg(
        long = "seed",
        env = "RPCNET_SEEDS",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    seeds: Vec<String>,
    /// A tag this member carries, as key=value; repeatable, or several
    /// separated by commas.
    #[arg(
        long = "tag",
        env = "RPCNET_TAGS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    tags: Vec<String>,
    /// The member certificate (PEM), issued by `rpcnet-certs --member`.
    #[arg(
        long,
        env = "RPCNET_CERT",
        value_name = "PATH",
        default_value = "certs/test_cert.pem"
    )]
    pub cert: PathBuf,
    /// The certificate's private key (PEM).
    #[arg(
        long,
        env = "RPCNET_KEY",
        value_name = "PATH",
        default_value = "certs/test_key.pem"
    )]
    pub key: PathBuf,
    /// The cluster CA (PEM; several certificates during a CA rotation).
    #[arg(
        long,
        env = "RPCNET_CA",
        value_name = "PATH",
        default_value = "certs/ca.pem"
    )]
    pub ca: PathBuf,
    /// Serves the admin endpoint (/ready, /alive, /metrics, /members, the
    /// status page) on this address, or else on $RPCNET_ADMIN_ADDR's; off
    /// without either.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<String>,
}

impl Member {
    /// `config` with this member's advertised address, if one was given.
    pub fn advertise(&self, config: ClusterConfig) -> ClusterConfig {
        match &self.advertise {
            Some(addr) if !addr.trim().is_empty() => config.with_advertise_addr(addr.trim()),
            _ => config,
        }
    }

    /// The seeds, without empty entries (`RPCNET_SEEDS=` or a trailing
    /// comma name none).
    pub fn seeds(&self) -> Vec<String> {
        self.seeds
            .iter()
            .map(|seed| seed.trim())
            .filter(|seed| !seed.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The tags as (key, value), without empty entries.
    ///
    /// # Errors
    /// An entry that is not `key=value`, or whose key is empty.
    pub fn tags(&self) -> Result<Vec<(String, String)>, String> {
        let mut tags = Vec::new();
        for tag in self.tags.iter().map(|tag| tag.trim()) {
            if tag.is_empty() {
                continue;
            }
            match tag.split_once('=') {
                Some((key, value)) if !key.is_empty() => tags.push((key.into(), value.into())),
                _ => return Err(format!("--tag / RPCNET_TAGS: {tag:?} is not key=value")),
            }
        }
        Ok(tags)
    }
}
