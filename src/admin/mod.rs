//! The admin endpoint: an HTTP server, on an address of its own, for the
//! people and probes that operate a node (feature `admin`, on by default;
//! nothing runs until an application starts an [`AdminServer`]).
//!
//! | route | answers |
//! |---|---|
//! | `/` | a live status page: members, states, tags, φ over the last minutes, load per worker, events as they happen (one HTML document, script and style inline) |
//! | `/metrics` | Prometheus text format: membership, routing, and whatever else the process records through the `metrics` facade |
//! | `/ready` | 200 `ready` while the node serves and is a member with a live peer (or started without seeds); 503 `not ready: <reason>` while joining, draining or cut off |
//! | `/alive` | 200 `alive` while the process's runtime runs tasks |
//! | `/members` | JSON: every member's address, generation, status, tags, φ, and its load where a `WorkerRegistry` is attached |
//! | `/events?after=N&wait_ms=M` | JSON: recent membership events after sequence number `N`, waiting up to `M` ms (at most 10 s) for one |
//! | `/history` | JSON: φ of every member, one sample per interval over the last minutes |
//!
//! **No authentication.** Anyone who can reach the address can read all of
//! this (nothing can be changed through it): bind it to `127.0.0.1` or a
//! private interface. See `docs/OPERATIONS.md`.
//!
//! ```no_run
//! # async fn f(cluster: rpcnet::cluster::ClusterMembership) -> Result<(), rpcnet::RpcError> {
//! use rpcnet::admin::{AdminServer, Phase};
//!
//! let admin = AdminServer::new("127.0.0.1:9090".parse().unwrap())
//!     .with_cluster(cluster.clone())
//!     .start()
//!     .await?;
//! cluster.join(vec!["127.0.0.1:7000".parse().unwrap()]).await?;
//! admin.set_phase(Phase::Serving { seedless: false });
//! # Ok(()) }
//! ```
//!
//! Metrics: the first admin endpoint of a process with metrics on (the
//! default) builds a Prometheus recorder and installs it as the global
//! `metrics` recorder; without an admin endpoint no recorder is installed
//! and recording costs nothing. [`metrics`] has the names.

mod exporter;
mod http;
pub mod metrics;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio::task::AbortHandle;

pub use state::Phase;
use state::{now_ms, AdminState, EventLog, PhiHistory};

use crate::cluster::{ClusterEvent, ClusterMembership, WorkerRegistry};
use crate::RpcError;

/// The environment variable `rpcnet-node` and `rpcnet-worker` read the
/// admin address from when `--admin` is not given.
pub const ADMIN_ADDR_ENV: &str = "RPCNET_ADMIN_ADDR";

/// The settings of an admin endpoint; [`start`](Self::start) binds and runs it.
#[derive(Debug, Clone)]
pub struct AdminServer {
    addr: SocketAddr,
    cluster: Option<ClusterMembership>,
    registry: Option<Arc<WorkerRegistry>>,
    metrics: bool,
    sample_interval: Duration,
    history: Duration,
    event_capacity: usize,
}

impl AdminServer {
    /// An admin endpoint that will listen on `addr` (port 0 picks one; see
    /// [`AdminHandle::local_addr`]), with metrics on, a sample every
    /// second, 5 minutes of φ history and the last 256 events.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            cluster: None,
            registry: None,
            metrics: true,
            sample_interval: Duration::from_secs(1),
            history: Duration::from_secs(300),
            event_capacity: 256,
        }
    }

    /// The address in `$RPCNET_ADMIN_ADDR` ([`ADMIN_ADDR_ENV`]), if set and
    /// not empty.
    ///
    /// # Errors
    /// [`RpcError::ConfigError`] when it is set but not an address.
    pub fn addr_from_env() -> Result<Option<SocketAddr>, RpcError> {
        match std::env::var(ADMIN_ADDR_ENV) {
            Ok(value) if !value.trim().is_empty() => value.trim().parse().map(Some).map_err(|e| {
                RpcError::ConfigError(format!("{ADMIN_ADDR_ENV}={value:?} is not an address: {e}"))
            }),
            _ => Ok(None),
        }
    }

    /// Reports this node's membership: `/members`, `/events`, `/history`,
    /// the membership metrics, and the membership part of `/ready`.
    pub fn with_cluster(mut self, cluster: ClusterMembership) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Reports the load and rotation state of `registry`'s workers in
    /// `/members`, the status page and the routing metrics.
    pub fn with_registry(mut self, registry: Arc<WorkerRegistry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Whether to serve `/metrics` (default `true`), installing the
    /// process's Prometheus recorder (see the [module docs](self)).
    pub fn with_metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// How often the view is sampled for metrics and φ history (default
    /// 1 s; at least 100 ms).
    pub fn with_sample_interval(mut self, interval: Duration) -> Self {
        self.sample_interval = interval.max(Duration::from_millis(100));
        self
    }

    /// How much φ history to keep (default 5 minutes).
    pub fn with_history(mut self, history: Duration) -> Self {
        self.history = history;
        self
    }

    /// How many recent events to keep for `/events` (default 256).
    pub fn with_event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events.max(1);
        self
    }

    /// Binds the address and starts serving, sampling and recording
    /// events. The phase starts at [`Phase::Joining`].
    ///
    /// # Errors
    /// [`RpcError::IoError`] when the address cannot be bound.
    pub async fn start(self) -> Result<AdminHandle, RpcError> {
        let listener = TcpListener::bind(self.addr).await?;
        let local_addr = listener.local_addr()?;
        let samples = (self.history.as_millis() / self.sample_interval.as_millis().max(1)) as usize;
        let state = Arc::new(AdminState {
            cluster: self.cluster.clone(),
            registry: self.registry.clone(),
            phase: watch::channel(Phase::Joining).0,
            events: EventLog::new(self.event_capacity),
            history: PhiHistory::new(samples.max(1)),
            sample_interval: self.sample_interval,
            exporter: self.metrics.then(exporter::exporter),
        });
        let mut tasks = vec![tokio::spawn(http::serve(listener, state.clone())).abort_handle()];
        if let Some(cluster) = &self.cluster {
            let events = cluster.subscribe();
            tasks.push(tokio::spawn(follow_events(events, state.clone())).abort_handle());
        }
        tasks.push(tokio::spawn(sample(state.clone())).abort_handle());
        tracing::info!("admin endpoint on {}", http::url(local_addr));
        Ok(AdminHandle {
            inner: Arc::new(Inner {
                local_addr,
                state,
                tasks,
            }),
        })
    }
}

/// A running admin endpoint. Cheap to clone; it stops with
/// [`shutdown`](Self::shutdown) or when the last clone is dropped.
#[derive(Clone)]
#[must_use = "the admin endpoint stops when its handle is dropped"]
pub struct AdminHandle {
    inner: Arc<Inner>,
}

struct Inner {
    local_addr: SocketAddr,
    state: Arc<AdminState>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for AdminHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminHandle")
            .field("local_addr", &self.inner.local_addr)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl AdminHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Tells `/ready` where the node stands: [`Phase::Serving`] once its
    /// RPC server runs and it joined (or started alone), [`Phase::Draining`]
    /// when it begins to shut down. (A node whose membership carries the
    /// `rpcnet.draining` tag is reported draining whatever the phase.)
    pub fn set_phase(&self, phase: Phase) {
        self.inner.state.phase.send_replace(phase);
    }

    /// The phase last set.
    pub fn phase(&self) -> Phase {
        *self.inner.state.phase.borrow()
    }

    /// Whether `/ready` would answer 200 now.
    pub fn is_ready(&self) -> bool {
        self.inner.state.readiness().ready
    }

    /// Stops serving (connections open now end with their requests).
    pub fn shutdown(&self) {
        for task in &self.inner.tasks {
            task.abort();
        }
    }
}

/// Records every membership event: the ring `/events` serves, and the
/// event counter.
async fn follow_events(mut events: broadcast::Receiver<ClusterEvent>, state: Arc<AdminState>) {
    loop {
        match events.recv().await {
            Ok(event) => {
                state.events.push_event(&event);
                if let Some(exporter) = state.exporter {
                    exporter.record(|| metrics::record_event(&event));
                }
            }
            Err(RecvError::Lagged(missed)) => {
                state.events.push_missed(missed);
                if let Some(exporter) = state.exporter {
                    exporter.record(|| metrics::record_missed_events(missed));
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Every sample interval: φ history, and the membership, routing and
/// readiness metrics.
async fn sample(state: Arc<AdminState>) {
    let mut tick = tokio::time::interval(state.sample_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let view = state.cluster.as_ref().map(ClusterMembership::view);
        if let Some(view) = &view {
            state.history.push(view, now_ms());
        }
        let Some(exporter) = state.exporter else {
            continue;
        };
        let workers = state.registry.as_ref().map(|r| r.workers());
        let ready = state.readiness().ready;
        exporter.record(|| {
            if let Some(view) = &view {
                metrics::record_view(view);
            }
            if let Some(workers) = &workers {
                metrics::record_workers(workers);
            }
            metrics::record_ready(ready);
        });
    }
}
