//! The director: the cluster's seed node. It tracks workers with a
//! `WorkerRegistry` (`LeastConnections`), prints the pool whenever it or a
//! worker's connection count changes, and assigns workers to clients.
//!
//! An assignment is a server-streaming call (`director.assign_worker`):
//! the first response names the worker, and the call stays open while the
//! client uses that worker, holding the registry's in-flight guard. So a
//! worker's "connections" are the clients currently assigned to it, and a
//! client that goes away (or fails over) releases its count: by dropping
//! the call, or by its connection timing out.

use std::sync::Arc;
use std::time::Duration;

use async_stream::stream;
use rpcnet::cluster::{
    ClusterConfig, ClusterMembership, EjectionPolicy, LoadBalancingStrategy, MemberAddr, Worker,
    WorkerRegistry, WorkerState, WorkerStatus,
};
use rpcnet::{RpcError, RpcServer};
use tokio::sync::watch;

use crate::admin::Admin;
use crate::certs::{CertDir, NODE_FILES};
use rpcnet::typed::Streaming;

use crate::protocol::{
    AssignRequest, Assignment, Director, DirectorServer, Refusal, WORKER_FILTER,
};
use crate::settings;

/// Runs the director with settings from the environment until Ctrl+C /
/// SIGTERM: the guide's `DIRECTOR_ADDR` (the address bound), and for a
/// deployment `DIRECTOR_ADVERTISE` (the address the cluster knows it by)
/// and `RPCNET_ADMIN_ADDR` (the admin endpoint).
///
/// # Errors
/// Unusable settings, missing certificates, an address already in use.
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let addr = settings::addr("DIRECTOR_ADDR", settings::DEFAULT_DIRECTOR_ADDR)?;
    let advertise = settings::advertise(settings::DIRECTOR_ADVERTISE)?;
    println!("🎯 Starting Director at {addr}");
    let certs = CertDir::find(&NODE_FILES)?;
    certs.announce(&NODE_FILES);
    let mut server = RpcServer::new(certs.node_config(&addr.to_string()));
    let quic = server.bind()?;
    // The address really bound (DIRECTOR_ADDR may ask for port 0).
    let addr = server.socket_addr.unwrap_or(addr);
    let mut config = ClusterConfig::default()
        .with_server(server.handle())
        .with_tag("role", "director");
    if let Some(advertise) = &advertise {
        config = config.with_advertise_addr(advertise.as_str());
    }
    let cluster = ClusterMembership::new(config).await.map_err(|e| {
        settings::membership_error(
            e,
            "DIRECTOR_ADDR",
            addr,
            settings::DIRECTOR_ADVERTISE,
            advertise.as_deref(),
        )
    })?;
    if advertise.is_some() {
        println!(
            "📣 Director known to the cluster as {}",
            cluster.advertised_addr()
        );
    }
    // No seeds: the director starts the cluster and is the workers' seed.
    cluster.join(Vec::new()).await?;
    println!("✅ Director registered itself in cluster");
    // Each selection here is a client's assignment, held for as long as
    // the client stays: a handful of long sessions, not a stream of calls.
    // Slow start thins a new worker's selections to 10% at first, which
    // would send every client that arrives in its first seconds to the
    // others however loaded they are, so it is off; least-connections
    // alone fills a (re)started worker first.
    let registry = Arc::new(
        WorkerRegistry::new(cluster.clone(), LoadBalancingStrategy::LeastConnections)
            .with_ejection_policy(EjectionPolicy {
                slow_start_window: Duration::ZERO,
                ..EjectionPolicy::default()
            }),
    );
    registry.start().await;
    println!("✅ Cluster enabled - Director is now discoverable");
    println!("🔄 Load balancing strategy: LeastConnections");
    let admin = Admin::start(&cluster, Some(registry.clone())).await?;

    let (leases, _) = watch::channel(0u64);
    let leases = Arc::new(leases);
    register_assignments(&server, registry.clone(), leases.clone()).await;
    let shutdown = server.shutdown_handle();
    let serving = tokio::spawn(async move { server.start(quic).await });
    let printer = tokio::spawn(print_pool(registry.clone(), leases.subscribe()));
    // Ready: the director started the cluster, so it needs no peer.
    admin.serving(true);
    println!("🚀 Director ready - listening on {addr}");

    crate::shutdown_signal().await?;
    admin.draining();
    println!("🛑 Director shutting down");
    printer.abort();
    cluster.leave().await?;
    shutdown.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    println!("👋 Director stopped");
    Ok(())
}

/// A worker assigned to a client, counted in the pool while it lives.
struct Lease {
    _worker: Worker,
    changed: Arc<watch::Sender<u64>>,
}

impl Lease {
    fn new(worker: Worker, changed: Arc<watch::Sender<u64>>) -> Self {
        changed.send_modify(|n| *n += 1);
        Self {
            _worker: worker,
            changed,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The [`Director`] service: assignments from the registry, each holding a
/// lease on its worker while the call stays open.
struct Assigner {
    registry: Arc<WorkerRegistry>,
    leases: Arc<watch::Sender<u64>>,
}

impl Director for Assigner {
    async fn assign_worker(
        &self,
        request: AssignRequest,
    ) -> Streaming<Result<Assignment, Refusal>> {
        let (registry, leases) = (self.registry.clone(), self.leases.clone());
        Streaming::new(stream! {
            let worker = match pick(&registry, &request.avoid).await {
                Ok(worker) => worker,
                Err(e) => {
                    yield Err(Refusal(e.to_string()));
                    return;
                }
            };
            let assignment = Assignment {
                addr: worker.addr(),
                label: worker.label().unwrap_or("unlabelled").to_owned(),
            };
            tracing::info!(worker = %assignment.label, addr = %assignment.addr, avoid = ?request.avoid, "assigned");
            let _lease = Lease::new(worker, leases);
            yield Ok(assignment);
            // Held until the client drops the call.
            futures::future::pending::<()>().await;
        })
    }
}

async fn register_assignments(
    server: &RpcServer,
    registry: Arc<WorkerRegistry>,
    leases: Arc<watch::Sender<u64>>,
) {
    DirectorServer::new(Assigner { registry, leases })
        .register(server)
        .await;
}

/// The registry's choice among workers other than `avoid` (workers that
/// just failed for this client and that the membership may not have
/// declared down yet); one of `avoid` only if no other worker is selectable.
///
/// Each avoided pick is held while picking again, so `LeastConnections`
/// moves on to the next least loaded worker; at most one pick per worker.
async fn pick(registry: &WorkerRegistry, avoid: &[MemberAddr]) -> Result<Worker, RpcError> {
    let mut passed_over: Vec<Worker> = Vec::new();
    for _ in 0..=registry.workers().len() {
        match registry.select_worker(Some(WORKER_FILTER)).await {
            Ok(worker) if !avoid.contains(&worker.addr()) => return Ok(worker),
            Ok(worker) => passed_over.push(worker),
            Err(e) if passed_over.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(passed_over.swap_remove(0))
}

/// Prints the pool whenever its members, their states or their connection
/// counts change.
async fn print_pool(registry: Arc<WorkerRegistry>, mut leases: watch::Receiver<u64>) {
    let mut changes = registry.changes();
    let mut shown = String::new();
    loop {
        let status = render(&registry.workers());
        if status != shown {
            println!("{status}");
            shown = status;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            changed = leases.changed() => if changed.is_err() { return },
        }
    }
}

/// The first words of a pool status.
pub const POOL_HEADER: &str = "📊 Worker pool status: ";

/// The guide's pool status: `📊 Worker pool status: N workers available`
/// (followed by `(M in the pool)` when some are draining, suspect or
/// ejected), then `- <label> at <addr> (<n> connections)` per worker, one
/// per line; [`PoolStatusReader`] reads it back.
pub fn render(workers: &[WorkerStatus]) -> String {
    let mut workers: Vec<&WorkerStatus> = workers
        .iter()
        .filter(|w| w.tags.get("role").map(String::as_str) == Some("worker"))
        .collect();
    workers.sort_by_key(|w| w.addr());
    let available = workers
        .iter()
        .filter(|w| w.state == WorkerState::Available)
        .count();
    let mut text = format!("{POOL_HEADER}{available} workers available");
    if available != workers.len() {
        text.push_str(&format!(" ({} in the pool)", workers.len()));
    }
    for w in workers {
        let state = match w.state {
            WorkerState::Available => "",
            WorkerState::Draining => ", draining",
            WorkerState::Suspect => ", suspect",
            WorkerState::Ejected => ", ejected",
            _ => ", unavailable",
        };
        text.push_str(&format!(
            "\n  - {} at {} ({} connections{state})",
            w.label.as_deref().unwrap_or("unlabelled"),
            w.addr(),
            w.in_flight
        ));
    }
    text
}

/// Reads the director's pool status back from its output, line by line
/// (the demo and the tests follow the pool with it).
#[derive(Debug, Default)]
pub struct PoolStatusReader {
    expecting: usize,
    entries: Vec<String>,
}

impl PoolStatusReader {
    /// Feeds one line of the director's output; returns the entries
    /// (`worker-a at 127.0.0.1:62001 (0 connections)`) once a whole pool
    /// status has been read.
    pub fn feed(&mut self, line: &str) -> Option<Vec<String>> {
        if let Some(rest) = line.strip_prefix(POOL_HEADER) {
            let numbers: Vec<usize> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            self.entries.clear();
            self.expecting = numbers.get(1).or(numbers.first()).copied().unwrap_or(0);
            return (self.expecting == 0).then(Vec::new);
        }
        if self.expecting == 0 {
            return None;
        }
        let entry = line.trim_start().strip_prefix("- ")?;
        self.entries.push(entry.to_owned());
        self.expecting -= 1;
        (self.expecting == 0).then(|| std::mem::take(&mut self.entries))
    }
}

/// Whether pool `entries` list the worker labelled `label`.
pub fn pool_lists(entries: &[String], label: &str) -> bool {
    entries
        .iter()
        .any(|e| e.starts_with(&format!("{label} at ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpcnet::cluster::{NodeId, Tags};

    fn status(label: &str, port: u16, in_flight: usize, state: WorkerState) -> WorkerStatus {
        let mut tags = Tags::new();
        tags.insert("role".into(), "worker".into());
        tags.insert("label".into(), label.into());
        WorkerStatus {
            id: NodeId::new(
                format!("127.0.0.1:{port}")
                    .parse::<std::net::SocketAddr>()
                    .unwrap(),
                1,
            ),
            tags,
            label: Some(label.into()),
            in_flight,
            state,
        }
    }

    #[test]
    fn the_pool_status_reads_back_line_by_line() {
        let text = render(&[
            status("worker-b", 62002, 0, WorkerState::Draining),
            status("worker-a", 62001, 1, WorkerState::Available),
        ]);
        assert_eq!(
            text,
            "📊 Worker pool status: 1 workers available (2 in the pool)\n  \
             - worker-a at 127.0.0.1:62001 (1 connections)\n  \
             - worker-b at 127.0.0.1:62002 (0 connections, draining)"
        );
        let mut reader = PoolStatusReader::default();
        let mut complete = None;
        for line in text.lines() {
            assert!(complete.is_none(), "complete before the last line");
            complete = reader.feed(line);
        }
        let entries = complete.expect("a whole status");
        assert!(pool_lists(&entries, "worker-a") && pool_lists(&entries, "worker-b"));
        assert!(!pool_lists(&entries, "worker-"));
        assert_eq!(reader.feed(&render(&[])), Some(vec![]));
        assert_eq!(reader.feed("  - stray line"), None);
    }
}
