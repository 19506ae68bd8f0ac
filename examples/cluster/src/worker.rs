//! The worker: an RPC server that joins the cluster through the director
//! (retrying until the director is up), tags itself `role=worker` and
//! `label=<name>`, and serves a resumable token stream. With
//! `WORKER_FAILURE_ENABLED=true` it fails on the guide's cycle: while
//! failed it answers every call with an error and carries the registry's
//! draining tag, so the director stops assigning it.
//!
//! Ctrl+C or SIGTERM: the admin endpoint's `/ready` (with
//! `RPCNET_ADMIN_ADDR`) turns 503, open streams end with an error (so
//! clients fail over at once), then `drain_and_leave`: the draining tag, a
//! goodbye (peers report the worker left, not failed), then the server's
//! graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_stream::stream;
use rpcnet::cluster::{
    drain_and_leave, ClusterConfig, ClusterEvent, ClusterMembership, DRAINING_TAG,
};
use rpcnet::RpcServer;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::certs::{CertDir, NODE_FILES};
use rpcnet::typed::Streaming;

use crate::protocol::{GenerateRequest, Refusal, Token, Worker, WorkerServer};
use crate::settings;

/// How long one attempt to join through the director waits.
const JOIN_ATTEMPT: Duration = Duration::from_secs(2);
/// Pause between join attempts.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// Longest wait for calls in flight when stopping (the server's own drain
/// timeout, `CertDir::node_config`, is shorter).
const DRAIN: Duration = Duration::from_secs(5);

/// The failure simulation's cycle (`WORKER_FAILURE_*_MS`; defaults are the
/// guide's: 10 s running, a warning 3 s before, 5 s failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCycle {
    /// Normal operation before the warning.
    pub run: Duration,
    /// From the warning to the failure.
    pub warning: Duration,
    /// Time spent failed.
    pub down: Duration,
}

impl FailureCycle {
    /// The guide's cycle.
    pub const GUIDE: FailureCycle = FailureCycle {
        run: Duration::from_secs(10),
        warning: Duration::from_secs(3),
        down: Duration::from_secs(5),
    };

    /// The guide's cycle, with any of `WORKER_FAILURE_RUN_MS`,
    /// `WORKER_FAILURE_WARNING_MS` and `WORKER_FAILURE_DOWN_MS` overriding it.
    ///
    /// # Errors
    /// When one of them is not a number of milliseconds.
    pub fn from_env() -> Result<Self, settings::BadSetting> {
        Ok(Self {
            run: settings::millis("WORKER_FAILURE_RUN_MS", Self::GUIDE.run)?,
            warning: settings::millis("WORKER_FAILURE_WARNING_MS", Self::GUIDE.warning)?,
            down: settings::millis("WORKER_FAILURE_DOWN_MS", Self::GUIDE.down)?,
        })
    }
}

/// Everything `run` reads from the environment.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `WORKER_LABEL` (default `worker-1`).
    pub label: String,
    /// `WORKER_ADDR` (default `127.0.0.1:62001`): the address bound.
    pub addr: SocketAddr,
    /// `WORKER_ADVERTISE` (`host[:port]`; default: the address bound): the
    /// address the cluster, and the clients, reach this worker at.
    pub advertise: Option<String>,
    /// `DIRECTOR_SEED` (`host:port`, names allowed), or else `DIRECTOR_ADDR`
    /// (default `127.0.0.1:61000`): where the worker joins the cluster.
    pub director: settings::DirectorSeed,
    /// `WORKER_FAILURE_ENABLED` (default `false`) and the cycle.
    pub failures: Option<FailureCycle>,
    /// `WORKER_TOKEN_INTERVAL_MS` (default 100): time between tokens.
    pub token_interval: Duration,
}

impl WorkerSettings {
    /// Reads the environment.
    ///
    /// # Errors
    /// When a variable is set to something unusable.
    pub fn from_env() -> Result<Self, settings::BadSetting> {
        let failures = if settings::flag("WORKER_FAILURE_ENABLED", false)? {
            Some(FailureCycle::from_env()?)
        } else {
            None
        };
        Ok(Self {
            label: settings::string("WORKER_LABEL", settings::DEFAULT_WORKER_LABEL),
            addr: settings::addr("WORKER_ADDR", settings::DEFAULT_WORKER_ADDR)?,
            advertise: settings::advertise(settings::WORKER_ADVERTISE)?,
            director: settings::DirectorSeed::from_env()?,
            failures,
            token_interval: settings::millis(
                "WORKER_TOKEN_INTERVAL_MS",
                Duration::from_millis(100),
            )?
            .max(Duration::from_millis(1)),
        })
    }
}

/// Why open streams end: the worker's state as the stream handlers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Serving,
    /// Simulated failure.
    Failed,
    ShuttingDown,
}

impl Health {
    fn refusal(self, label: &str) -> Option<Refusal> {
        match self {
            Health::Serving => None,
            Health::Failed => Some(Refusal(format!(
                "worker '{label}' failed (simulated failure)"
            ))),
            Health::ShuttingDown => Some(Refusal(format!("worker '{label}' is shutting down"))),
        }
    }
}

/// Runs a worker with settings from the environment until Ctrl+C / SIGTERM
/// ([`WorkerSettings`]; `RPCNET_ADMIN_ADDR`: the admin endpoint).
///
/// # Errors
/// Unusable settings, missing certificates, an address already in use.
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let settings = WorkerSettings::from_env()?;
    let label = settings.label.clone();
    let addr = settings.addr;
    println!("👷 Starting Worker '{label}' at {addr}");
    let certs = CertDir::find(&NODE_FILES)?;
    certs.announce(&NODE_FILES);

    println!("🔌 Binding server to {addr}...");
    let mut server = RpcServer::new(certs.node_config(&addr.to_string()));
    let quic = server.bind()?;
    println!("✅ Server bound successfully");
    let (health, _) = watch::channel(Health::Serving);
    let health = Arc::new(health);
    register_generator(&server, &label, settings.token_interval, health.clone()).await;
    let handle = server.handle();
    let shutdown = server.shutdown_handle();
    let serving = tokio::spawn(async move { server.start(quic).await });

    let director = settings.director;
    println!("🌐 Enabling cluster, connecting to director at {director}...");
    // The tags travel with the join announcement too, so the director
    // never sees this worker without its label (a restart would otherwise
    // show up once as "unlabelled"); the `set_tag` calls below are the
    // guide's and change nothing then.
    let mut config = ClusterConfig::default()
        .with_server(handle)
        .with_join_timeout(JOIN_ATTEMPT)
        .with_tag("role", "worker")
        .with_tag("label", label.as_str());
    if let Some(advertise) = &settings.advertise {
        config = config.with_advertise_addr(advertise.as_str());
    }
    let cluster = ClusterMembership::new(config).await.map_err(|e| {
        settings::membership_error(
            e,
            "WORKER_ADDR",
            addr,
            settings::WORKER_ADVERTISE,
            settings.advertise.as_deref(),
        )
    })?;
    if settings.advertise.is_some() {
        println!(
            "📣 Worker '{label}' known to the cluster as {}",
            cluster.advertised_addr()
        );
    }
    let admin = Admin::start(&cluster, None).await?;
    let signal = crate::shutdown_signal();
    tokio::pin!(signal);
    let joined = tokio::select! {
        () = join_until_up(&cluster, &director) => true,
        _ = &mut signal => false,
    };
    if joined {
        println!("✅ Cluster enabled, connected to director");
        println!("🏷️ Tagging worker with role=worker and label={label}...");
        cluster.set_tag("role", "worker");
        cluster.set_tag("label", label.as_str());
        println!("✅ Worker '{label}' joined cluster with role=worker");
        tokio::spawn(log_events(cluster.clone(), label.clone()));
        let simulation = settings
            .failures
            .map(|cycle| tokio::spawn(simulate_failures(cycle, cluster.clone(), health.clone())));
        // Ready while the worker has a live peer (the director).
        admin.serving(false);
        println!("🚀 Worker '{label}' is running and ready to handle requests");
        let _ = signal.await;
        if let Some(task) = simulation {
            task.abort();
        }
    }

    // Not ready first, so that whoever reads the next line finds /ready at 503.
    admin.draining();
    println!("🛑 Worker '{label}' shutting down: ending streams, leaving the cluster");
    // Token streams never finish by themselves: end them now (clients
    // switch at once), then drain and leave as any worker does.
    health.send_replace(Health::ShuttingDown);
    if joined {
        if let Err(e) = drain_and_leave(&cluster, &shutdown, serving, DRAIN).await {
            tracing::warn!("drain and leave: {e}");
        }
    } else {
        shutdown.shutdown();
        let _ = tokio::time::timeout(DRAIN, serving).await;
    }
    println!("👋 Worker '{label}' stopped");
    Ok(())
}

/// Joins through `director`, retrying until it answers (the guide's
/// troubleshooting note: a worker started first waits for the director).
/// A `DIRECTOR_SEED` is joined by name: looked up at each attempt, and
/// remembered by the membership, which looks it up again whenever the
/// worker reaches no member.
async fn join_until_up(cluster: &ClusterMembership, director: &settings::DirectorSeed) {
    loop {
        let joined = match director {
            settings::DirectorSeed::Addr(addr) => cluster.join(vec![*addr]).await,
            settings::DirectorSeed::Named(name) => cluster.join_named([name.as_str()]).await,
        };
        match joined {
            Ok(()) => return,
            Err(e) => {
                println!(
                    "⏳ director at {director} not reachable yet ({e}); retrying in {JOIN_RETRY:?}"
                );
                tokio::time::sleep(JOIN_RETRY).await;
            }
        }
    }
}

/// The [`Worker`] service: a token stream from any starting sequence, one
/// token per `interval`, until the caller drops the call or the worker
/// fails or stops (then the stream ends with a [`Refusal`], so the client
/// knows to fail over).
struct Generator {
    label: String,
    interval: Duration,
    health: Arc<watch::Sender<Health>>,
}

impl Worker for Generator {
    async fn generate(&self, request: GenerateRequest) -> Streaming<Result<Token, Refusal>> {
        let (label, interval) = (self.label.clone(), self.interval);
        let mut health = self.health.subscribe();
        Streaming::new(stream! {
            let refusal = health.borrow_and_update().refusal(&label);
            if let Some(refusal) = refusal {
                yield Err(refusal);
                return;
            }
            tracing::info!(from = request.from_sequence, "token stream opened");
            let mut sequence = request.from_sequence.max(1);
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let refusal = tokio::select! {
                    _ = ticks.tick() => None,
                    changed = health.changed() => match changed {
                        Ok(()) => health.borrow_and_update().refusal(&label),
                        Err(_) => Health::ShuttingDown.refusal(&label),
                    },
                };
                if let Some(refusal) = refusal {
                    tracing::info!(at = sequence, "token stream ended: {refusal}");
                    yield Err(refusal);
                    return;
                }
                yield Ok(Token::at(sequence));
                let Some(next) = sequence.checked_add(1) else { return };
                sequence = next;
            }
        })
    }
}

async fn register_generator(
    server: &RpcServer,
    label: &str,
    interval: Duration,
    health: Arc<watch::Sender<Health>>,
) {
    let generator = Generator {
        label: label.to_owned(),
        interval,
        health,
    };
    WorkerServer::new(generator).register(server).await;
}

/// The guide's failure cycle, forever: run, warn, fail (draining tag on,
/// calls refused), recover.
async fn simulate_failures(
    cycle: FailureCycle,
    cluster: ClusterMembership,
    health: Arc<watch::Sender<Health>>,
) {
    loop {
        tokio::time::sleep(cycle.run).await;
        println!(
            "⚠️ Simulating worker failure in {} seconds...",
            seconds(cycle.warning)
        );
        tokio::time::sleep(cycle.warning).await;
        cluster.set_tag(DRAINING_TAG, "simulated-failure");
        health.send_replace(Health::Failed);
        println!("💥 Worker failed!");
        tokio::time::sleep(cycle.down).await;
        println!("🔄 Worker recovering...");
        health.send_replace(Health::Serving);
        cluster.remove_tag(DRAINING_TAG);
        println!("✅ Worker recovered and ready to serve!");
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

/// The guide's "monitor cluster events": one log line per membership event.
async fn log_events(cluster: ClusterMembership, label: String) {
    let mut events = cluster.subscribe();
    loop {
        match events.recv().await {
            Ok(ClusterEvent::NodeJoined { node, .. }) => {
                tracing::info!(%label, "node joined: {node}")
            }
            Ok(ClusterEvent::NodeLeft(node)) => tracing::info!(%label, "node left: {node}"),
            Ok(ClusterEvent::NodeFailed(node)) => tracing::warn!(%label, "node failed: {node}"),
            Ok(event) => tracing::debug!(%label, ?event, "cluster event"),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(%label, "missed {n} cluster events")
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
