//! [`ClusterClient`]: calls to any worker of a cluster, with safe failover.
//!
//! One path serves every call mode: [`ClusterClient::route`] selects a
//! worker, gets its pooled connection, runs the attempt, records the
//! outcome for passive ejection, and decides whether another worker may
//! try (see `retry`). Connections are opened lazily, one per worker
//! identity, and dropped when the worker leaves the pool, fails a
//! connection, or comes back under a new generation.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::discover::{Worker, WorkerRegistry};
use super::eject::Outcome;
use super::filter::WorkerFilter;
use super::retry::{verdict, RetryBudget, RetryBudgetConfig, Verdict};
use crate::cluster::NodeId;
use crate::{Body, CallOptions, ResponseStream, RpcClient, RpcConfig, RpcError};

/// PINGs per idle timeout on worker connections: calls caught by a dead
/// worker move on within `idle_timeout * (1 + 1 / KEEP_ALIVE_DIVISOR)`
/// (see [`ClusterClientConfig::with_idle_timeout`]). With a third (as for
/// ordinary keep-alive) the worst of 20 kills took 800 + 267 = 1,066 ms.
const KEEP_ALIVE_DIVISOR: u32 = 8;

/// How a [`ClusterClient`] connects to workers and retries.
#[derive(Debug, Clone)]
pub struct ClusterClientConfig {
    rpc: RpcConfig,
    max_attempts: usize,
    budget: RetryBudgetConfig,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl From<RpcConfig> for ClusterClientConfig {
    /// Worker connections use `rpc` (CA, server name, limits, default
    /// timeout) with the liveness settings below, at 3 attempts per call and
    /// Finagle's retry budget.
    fn from(rpc: RpcConfig) -> Self {
        Self {
            rpc,
            max_attempts: 3,
            budget: RetryBudgetConfig::default(),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_millis(800),
        }
    }
}

impl ClusterClientConfig {
    /// Workers tried per call at most, the first included (default 3, at least 1).
    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The retry budget (default: Finagle's, 20% of calls plus 10 per
    /// second over 10 s).
    pub fn with_retry_budget(mut self, budget: RetryBudgetConfig) -> Self {
        self.budget = budget;
        self
    }

    /// How long connecting to a worker may take before the call moves on
    /// to another worker (default 1 s; the QUIC handshake timeout).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Silence after which a worker connection counts as dead (default
    /// 800 ms). Connections send QUIC PINGs every eighth of it, which the
    /// worker's QUIC stack answers even while its handlers are busy, so
    /// only a worker that stopped (killed, frozen, unreachable) goes quiet;
    /// its calls then fail and move on within this time plus one PING
    /// interval (900 ms by default): QUIC restarts the idle timer when it
    /// sends its first ack-eliciting packet after the last one received
    /// (RFC 9000, section 10.1), and with every call stuck on the dead
    /// worker that packet is the next PING.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The RPC configuration worker connections use, liveness settings applied.
    fn worker_rpc(&self) -> RpcConfig {
        self.rpc
            .clone()
            .with_handshake_timeout(self.connect_timeout)
            .with_idle_timeout(self.idle_timeout)
            .with_keep_alive_interval(self.idle_timeout / KEEP_ALIVE_DIVISOR)
    }
}

/// One worker that failed a call, and how.
#[derive(Debug)]
pub struct FailedAttempt {
    /// The worker.
    pub worker: NodeId,
    /// What went wrong there.
    pub error: RpcError,
}

impl std::fmt::Display for FailedAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.worker, self.error)
    }
}

type Connection = Arc<OnceCell<RpcClient>>;

/// Calls into a cluster: each call goes to a worker chosen by the
/// registry's strategy, and moves to another worker when that is safe.
///
/// * A call that provably never ran (no connection; the worker refused
///   it, e.g. while draining) is retried on another worker.
/// * Any other failure (connection lost mid-call, timeout) is retried only
///   for calls declared idempotent ([`CallOptions::idempotent`]).
/// * Retries are capped per call (`with_max_attempts`) and by a retry
///   budget across calls (`with_retry_budget`).
/// * A worker whose connection fails, or that refuses calls, is ejected
///   from rotation at once; repeated timeouts eject it too (see
///   [`EjectionPolicy`](super::EjectionPolicy)).
///
/// # Errors
/// A worker's own answer (handler error, unknown method, message too
/// large) is returned as it is. A routing failure is
/// [`RpcError::Failover`], listing every worker tried and why each failed,
/// and why no further worker was tried.
pub struct ClusterClient {
    registry: Arc<WorkerRegistry>,
    config: ClusterClientConfig,
    rpc: RpcConfig,
    connections: Mutex<HashMap<NodeId, Connection>>,
    budget: Mutex<RetryBudget>,
    pruned_at: AtomicU64,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// How one attempt failed.
struct AttemptError {
    error: RpcError,
    /// Whether a connection existed (false: failed while connecting).
    connected: bool,
}

impl ClusterClient {
    /// A client routing through `registry`; `config` is an [`RpcConfig`]
    /// for the worker connections (CA, server name) or a
    /// [`ClusterClientConfig`].
    pub fn new(registry: Arc<WorkerRegistry>, config: impl Into<ClusterClientConfig>) -> Self {
        let config = config.into();
        Self {
            rpc: config.worker_rpc(),
            budget: Mutex::new(RetryBudget::new(config.budget, Instant::now())),
            registry,
            config,
            connections: Mutex::new(HashMap::new()),
            pruned_at: AtomicU64::new(0),
        }
    }

    /// The registry this client routes through.
    pub fn registry(&self) -> &Arc<WorkerRegistry> {
        &self.registry
    }

    /// Calls unary `method` on a worker matching `filter` (see
    /// [`WorkerRegistry::select_worker`]) with default options: not
    /// idempotent, the configuration's default timeout.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker(
        &self,
        method: &str,
        data: Vec<u8>,
        filter: Option<&str>,
    ) -> Result<Vec<u8>, RpcError> {
        self.call_worker_with(method, data, filter, CallOptions::new())
            .await
    }

    /// [`call_worker`](Self::call_worker) with call options: metadata, a
    /// timeout for the whole call (retries included) and whether the call
    /// is idempotent.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_with(
        &self,
        method: &str,
        data: Vec<u8>,
        filter: Option<&str>,
        options: CallOptions,
    ) -> Result<Vec<u8>, RpcError> {
        let (response, _worker) = self
            .route(filter, &options, true, |client, options| {
                client.call_with_options(method, data.clone(), &options)
            })
            .await?;
        Ok(response)
    }

    /// Server streaming on a worker matching `filter`: one request, a
    /// stream of responses. The call moves to another worker only while
    /// connecting; once the request is sent, failures arrive in the stream.
    /// The worker counts the call as in flight until the stream is dropped.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_server_streaming(
        &self,
        method: &str,
        request: Vec<u8>,
        filter: Option<&str>,
    ) -> Result<WorkerStream, RpcError> {
        let (inner, worker) = self
            .route(filter, &CallOptions::new(), false, |client, _| {
                // The stream itself has no deadline (as `call_server_streaming`).
                client.invoke(method, &CallOptions::new(), Body::Message(request.clone()))
            })
            .await?;
        Ok(WorkerStream { inner, worker })
    }

    /// Bidirectional streaming on a worker matching `filter`. A request
    /// stream cannot be replayed, so the call moves to another worker only
    /// if connecting fails.
    ///
    /// # Errors
    /// See [`ClusterClient`].
    pub async fn call_worker_streaming<S>(
        &self,
        method: &str,
        requests: S,
        filter: Option<&str>,
    ) -> Result<WorkerStream, RpcError>
    where
        S: Stream<Item = Vec<u8>> + Send + 'static,
    {
        let mut requests = Some(requests);
        let (inner, worker) = self
            .route(filter, &CallOptions::new(), false, |client, _| {
                let requests = requests.take();
                async move {
                    match requests {
                        Some(requests) => {
                            client
                                .invoke(method, &CallOptions::new(), Body::stream(requests))
                                .await
                        }
                        // Only reached if an attempt failed after taking the
                        // stream, which `route` never retries (see `connected`).
                        None => Err(RpcError::StreamError(
                            "the request stream was already sent".into(),
                        )),
                    }
                }
            })
            .await?;
        Ok(WorkerStream { inner, worker })
    }

    /// The one call path: select, connect, attempt, record, maybe retry.
    /// `replayable`: whether `attempt` may run again after a connected
    /// attempt failed (unary calls; not a consumed request stream).
    async fn route<T, F, Fut>(
        &self,
        filter_text: Option<&str>,
        options: &CallOptions,
        replayable: bool,
        mut attempt: F,
    ) -> Result<(T, Worker), RpcError>
    where
        F: FnMut(RpcClient, CallOptions) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let filter = WorkerFilter::parse(filter_text)?;
        let start = Instant::now();
        let deadline = start + options.timeout().unwrap_or(self.rpc.default_timeout());
        self.prune();
        lock(&self.budget).deposit(start);
        let mut failed: Vec<FailedAttempt> = Vec::new();
        let stopped = loop {
            let now = Instant::now();
            let tried: Vec<NodeId> = failed.iter().map(|a| a.worker).collect();
            let worker = match self
                .registry
                .select(&filter, filter_text.unwrap_or(""), &tried, now)
            {
                Ok(worker) => worker,
                Err(e) if failed.is_empty() => return Err(e),
                Err(e) => break e.to_string(),
            };
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() {
                failed.push(FailedAttempt {
                    worker: worker.id(),
                    error: RpcError::Timeout,
                });
                break "the call's timeout passed".into();
            }
            let mut cell = None;
            let result = async {
                let client = self
                    .connection(&worker, remaining, &mut cell)
                    .await
                    .map_err(|error| AttemptError {
                        error,
                        connected: false,
                    })?;
                let left = deadline.saturating_duration_since(Instant::now());
                attempt(client, options.clone().with_timeout(left))
                    .await
                    .map_err(|error| AttemptError {
                        error,
                        connected: true,
                    })
            }
            .await;
            let AttemptError { error, connected } = match result {
                Ok(value) => {
                    self.registry
                        .record(&worker, Outcome::Answered, Instant::now());
                    return Ok((value, worker));
                }
                Err(e) => e,
            };
            let verdict = verdict(&error, connected);
            let outcome = match (&error, connected) {
                (_, false) => Outcome::ConnectionFailed,
                (RpcError::Unavailable(_), _) => Outcome::Refused,
                (RpcError::Timeout, _) => Outcome::TimedOut,
                (RpcError::ConnectionError(_) | RpcError::IoError(_), _) => {
                    Outcome::ConnectionFailed
                }
                _ => Outcome::Answered,
            };
            let now = Instant::now();
            self.registry.record(&worker, outcome, now);
            if let (Outcome::ConnectionFailed, Some(cell)) = (outcome, &cell) {
                self.forget(&worker.id(), cell);
            }
            if verdict == Verdict::Final {
                if failed.is_empty() {
                    return Err(error);
                }
                failed.push(FailedAttempt {
                    worker: worker.id(),
                    error,
                });
                break "the worker's answer is final".into();
            }
            failed.push(FailedAttempt {
                worker: worker.id(),
                error,
            });
            drop(worker);
            if verdict == Verdict::MayHaveRun && !options.is_idempotent() {
                break "the call may have run and is not idempotent".into();
            }
            // A streaming call's request stream is consumed once connected.
            if connected && !replayable {
                break "a streaming call is not repeated once sent".into();
            }
            if failed.len() >= self.config.max_attempts {
                break format!("{} attempts made (max_attempts)", failed.len());
            }
            if deadline <= now {
                break "the call's timeout passed".into();
            }
            if !lock(&self.budget).try_withdraw(now) {
                break "retry budget exhausted".into();
            }
        };
        Err(RpcError::Failover {
            attempts: failed,
            stopped,
        })
    }

    /// The worker's pooled connection, opened on first use.
    /// `used` receives the pool entry, for [`forget`](Self::forget).
    async fn connection(
        &self,
        worker: &Worker,
        within: Duration,
        used: &mut Option<Connection>,
    ) -> Result<RpcClient, RpcError> {
        let cell = lock(&self.connections)
            .entry(worker.id())
            .or_default()
            .clone();
        *used = Some(cell.clone());
        let addr = worker.addr();
        let connect = cell.get_or_try_init(|| RpcClient::connect(addr, self.rpc.clone()));
        match tokio::time::timeout(within, connect).await {
            Ok(Ok(client)) => Ok(client.clone()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RpcError::Timeout),
        }
    }

    /// Drops the connection `cell` to `id` (it failed) unless another call
    /// already replaced it; the next call reconnects.
    fn forget(&self, id: &NodeId, cell: &Connection) {
        let mut pool = lock(&self.connections);
        if pool.get(id).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            pool.remove(id);
        }
    }

    /// Drops connections to workers no longer in the pool (left, failed,
    /// or replaced by a new generation), once per pool change.
    fn prune(&self) {
        let version = self.registry.version();
        if self.pruned_at.swap(version, Ordering::Relaxed) == version {
            return;
        }
        lock(&self.connections).retain(|id, _| self.registry.contains(id));
    }
}

/// The responses of a streaming call to a worker; the worker counts the
/// call as in flight until this is dropped. Dropping it before the end
/// cancels the call.
#[derive(Debug)]
pub struct WorkerStream {
    inner: ResponseStream,
    worker: Worker,
}

impl WorkerStream {
    /// The worker serving the call.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }
}

impl Stream for WorkerStream {
    type Item = Result<Vec<u8>, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `a; b; c` for [`RpcError::Failover`]'s message.
pub(crate) fn format_attempts(attempts: &[FailedAttempt]) -> String {
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
