//! [`ClusterClient`]: calls to any worker of a cluster, with safe failover.
//!
//! Every call mode takes one path, `Shared::route`: select a worker, get
//! its pooled connection, make the attempt, and let `failover::decide`
//! say what a failure means (what to record for passive ejection; retry
//! on another worker, or stop). A routed stream (`stream`) feeds the
//! failures it meets before its first response, and a resumable stream
//! those that break it later, to the same decision (`Shared::failed`)
//! and opens itself again through the same path. Connections are opened
//! lazily, one per worker identity, and dropped when the worker leaves
//! the pool, fails a connection, or comes back under a new generation.
//! The call modes (`modes`) differ only in the attempt they give `route`.

mod modes;
mod pool;
mod replay;
mod route;
mod stream;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::Latencies;
use super::budget::RetryBudget;
use super::config::ClusterClientConfig;
use super::discover::{Worker, WorkerRegistry};
use super::eject::Outcome;
use super::failover::{self, CallState, FailedAttempt, Next, StopReason};
use crate::cluster::NodeId;
use crate::wire::CallKind;
use crate::{CallOptions, RpcClient, RpcError};
use pool::{Connection, Pool};
use route::Route;
pub use stream::WorkerStream;

/// Calls into a cluster: each call goes to a worker chosen by the
/// registry's strategy, and moves to another worker when that is safe.
///
/// * A call that provably never ran (no connection; the worker refused
///   it, e.g. while draining) is retried on another worker, a streaming
///   call too (until its first response, and while its request stream
///   is within the replay buffer, `with_replay_limit`).
/// * Any other failure (connection lost mid-call, timeout) is retried only
///   for calls declared idempotent ([`CallOptions::idempotent`]); an
///   idempotent unary call also gives up on a worker that does not answer
///   within its per-attempt timeout ([`AttemptTimeout`](super::AttemptTimeout)).
/// * A stream that delivered a response stays with its worker, unless it
///   is resumable ([`call_worker_resumable`](Self::call_worker_resumable)).
/// * Retries are capped per call (`with_max_attempts`), by the call's
///   timeout, and by a retry budget across calls (`with_retry_budget`).
/// * A worker whose connection fails, or that refuses calls, is ejected
///   from rotation at once; repeated timeouts eject it too (see
///   [`EjectionPolicy`](super::EjectionPolicy), set on the registry).
///   Streams count like calls.
///
/// # Errors
/// A worker's own answer (handler error, unknown method, message too
/// large) is returned as it is. A routing failure is
/// [`RpcError::Failover`], listing every worker tried and why each failed,
/// and why no further worker was tried ([`StopReason`]).
pub struct ClusterClient {
    shared: Arc<Shared>,
}

/// What the client's calls and streams share.
struct Shared {
    registry: Arc<WorkerRegistry>,
    config: ClusterClientConfig,
    pool: Pool,
    budget: RetryBudget,
    latencies: Latencies,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("registry", &self.shared.registry)
            .finish_non_exhaustive()
    }
}

/// How one attempt failed.
struct AttemptError {
    error: RpcError,
    /// Whether a connection existed (false: failed while connecting).
    connected: bool,
}

/// A successful attempt: its value, the worker, and which pooled
/// connection it used.
struct Attempted<T> {
    value: T,
    worker: Worker,
    cell: Option<Connection>,
}

impl ClusterClient {
    /// A client routing through `registry`; `config` is an
    /// [`RpcConfig`](crate::RpcConfig) for the worker connections (CA,
    /// server name) or a [`ClusterClientConfig`].
    pub fn new(registry: Arc<WorkerRegistry>, config: impl Into<ClusterClientConfig>) -> Self {
        let config = config.into();
        Self {
            shared: Arc::new(Shared {
                pool: Pool::new(config.worker_rpc()),
                budget: RetryBudget::new(config.budget, Instant::now()),
                latencies: Latencies::default(),
                registry,
                config,
            }),
        }
    }

    /// The registry this client routes through.
    pub fn registry(&self) -> &Arc<WorkerRegistry> {
        &self.shared.registry
    }
}

impl Shared {
    fn default_timeout(&self) -> Duration {
        self.pool.rpc().default_timeout()
    }

    /// The one call path: select → connect → attempt → decide, until an
    /// attempt succeeds or a reason to stop. A unary or client-streaming
    /// attempt succeeds with the answer; a streaming one once its stream
    /// is open (the stream records its worker's outcome at its first
    /// response).
    async fn route<T, F, Fut>(
        &self,
        route: &mut Route<'_>,
        mut attempt: F,
    ) -> Result<Attempted<T>, RpcError>
    where
        F: FnMut(&RpcClient, &CallOptions) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        // A copy (a pointer for a call's borrowed filter): the route is
        // updated below while the filter is in use. It is parsed where
        // selection needs it (`select` keeps the thread's last filter
        // matched): a malformed one fails the first selection.
        let filter = route.filter.clone();
        let filter = filter.as_deref();
        self.pool.prune(&self.registry);
        // The clock is read once per attempt: a new call's first attempt
        // starts when the call did.
        let mut now = if route.counted {
            Instant::now()
        } else {
            route.started
        };
        loop {
            let tried: Vec<NodeId> = route.failed.iter().map(|a| a.worker).collect();
            let worker = match self.registry.select(filter, &tried, now) {
                Ok(worker) => worker,
                Err(e) if route.failed.is_empty() => return Err(e),
                Err(e) => return Err(route.stop(StopReason::NoMoreWorkers(Box::new(e)))),
            };
            if !route.counted {
                // A call counts once for the budget, once a worker was
                // found for it (a malformed filter or an empty pool
                // makes no call); a stream opened again draws on it
                // instead.
                route.counted = true;
                self.budget.deposit(now);
            }
            if route.deadline <= now {
                // Not even a connection can be tried (a zero timeout, or
                // the time went while selecting).
                route.failed.push(FailedAttempt {
                    worker: worker.id(),
                    error: RpcError::Timeout,
                });
                return Err(route.stop(StopReason::DeadlinePassed));
            }
            // One attempt: the worker's pooled connection (opened on
            // first use), then the call, awaited here rather than in a
            // function of its own, whose state would be moved into this
            // one's on every call.
            let limit = self.attempt_limit(route).map(|limit| now + limit);
            let limit = limit.filter(|limit| *limit < route.deadline);
            // The attempt's call, made on the worker's pooled connection
            // borrowed in place while it is open (the pool entry's count
            // does not move; the call's future holds the client's own),
            // or on a connection opened now; `cell` is which connection
            // it was.
            let mut cell = None;
            let call = match self.pool.with_open(&worker, |client| {
                attempt(client, &self.options_for(route, now))
            }) {
                Some((call, used)) => {
                    cell = Some(used);
                    Ok(call)
                }
                None => {
                    // Boxed: connecting is rare, and its state would
                    // otherwise make every call's larger.
                    Box::pin(self.connect(&worker, route, limit, &mut now, &mut cell))
                        .await
                        .map(|client| attempt(&client, &self.options_for(route, now)))
                }
            };
            let attempted = match call {
                Ok(call) => {
                    match limit {
                        None => call.await,
                        // Boxed: the timer makes the future larger, and
                        // only idempotent calls have one.
                        Some(limit) => {
                            Box::pin(self.attempt_within(limit, call, &worker, (filter, &tried)))
                                .await
                        }
                    }
                    .map_err(|error| AttemptError {
                        error,
                        connected: true,
                    })
                }
                Err(error) => Err(error),
            };
            match attempted {
                Ok(value) => {
                    if crate::telemetry::is_enabled() {
                        crate::telemetry::routed(worker.addr(), route.failed.len(), route.started);
                    }
                    if matches!(route.kind, CallKind::Unary | CallKind::ClientStreaming) {
                        // An answer is recorded as of the attempt's start
                        // (it only counts toward the current period).
                        self.registry.record(&worker, Outcome::Answered, now);
                        if self.records_latency(route) {
                            let took = now.elapsed();
                            self.latencies.record(&route.method, took);
                        }
                    }
                    return Ok(Attempted {
                        value,
                        worker,
                        cell,
                    });
                }
                Err(AttemptError { error, connected }) => {
                    self.failed(route, &worker, cell, error, connected)?;
                }
            }
            now = Instant::now();
        }
    }

    /// What follows an attempt on `worker` that failed with `error`:
    /// records the worker's outcome for ejection (dropping the connection
    /// `cell` if it failed) and applies `failover::decide`. `Ok` when the
    /// call goes on to another worker (the failure is kept in `route`),
    /// otherwise the error the call ends with.
    fn failed(
        &self,
        route: &mut Route<'_>,
        worker: &Worker,
        cell: Option<Connection>,
        error: RpcError,
        connected: bool,
    ) -> Result<(), RpcError> {
        let now = Instant::now();
        let call = CallState {
            attempts: route.failed.len() + 1,
            max_attempts: self.config.max_attempts,
            idempotent: route.idempotent,
            replayable: route.replayable(),
            deadline: route.deadline,
        };
        let decision = failover::decide(&error, connected, &call, now, || {
            self.budget.try_withdraw(now)
        });
        self.record(worker, cell, decision.outcome, now);
        let failed = FailedAttempt {
            worker: worker.id(),
            error,
        };
        if crate::telemetry::is_enabled() {
            crate::telemetry::attempt_failed(
                crate::telemetry::error_label(&failed.error),
                match &decision.next {
                    Next::RetryElsewhere => None,
                    Next::Return => Some("final_answer"),
                    Next::Stop(reason) => Some(reason.label()),
                },
            );
        }
        match decision.next {
            Next::Return => Err(failed.error),
            Next::RetryElsewhere => {
                route.failed.push(failed);
                Ok(())
            }
            Next::Stop(reason) => {
                route.failed.push(failed);
                Err(route.stop(reason))
            }
        }
    }

    /// Records `outcome` for `worker`, and drops its connection `cell`
    /// when the connection failed.
    fn record(&self, worker: &Worker, cell: Option<Connection>, outcome: Outcome, now: Instant) {
        self.registry.record(worker, outcome, now);
        if let (Outcome::ConnectionFailed, Some(cell)) = (outcome, cell) {
            self.pool.forget(&worker.id(), cell);
        }
    }

    /// Opens `worker`'s pooled connection (`cell` receives which one it is)
    /// within what the attempt may take: until its per-attempt `limit`, or
    /// the call's deadline. Connecting takes time out of the call's, so
    /// `now` is read again.
    async fn connect(
        &self,
        worker: &Worker,
        route: &Route<'_>,
        limit: Option<Instant>,
        now: &mut Instant,
        cell: &mut Option<Connection>,
    ) -> Result<RpcClient, AttemptError> {
        let connect_by = limit.unwrap_or(route.deadline);
        let client = self
            .pool
            .connection(
                &self.registry,
                worker,
                connect_by.saturating_duration_since(*now),
                cell,
            )
            .await
            .map_err(|error| AttemptError {
                error,
                connected: false,
            })?;
        *now = Instant::now();
        Ok(client)
    }

    /// The options of an attempt starting at `now`: the route's, bounded
    /// by the call's deadline (a stream without a timeout stays without
    /// one). A call's first attempt, made when the call started, takes
    /// the route's options as they are: what is left of the call's time
    /// is then its own timeout, or the worker client's default, which is
    /// the pool's (`Route::new`), so nothing is copied.
    fn options_for<'r>(&self, route: &'r Route<'_>, now: Instant) -> Cow<'r, CallOptions> {
        let options = &*route.options;
        let streamed = matches!(
            route.kind,
            CallKind::ServerStreaming | CallKind::Bidirectional
        );
        if now == route.started || (streamed && options.timeout().is_none()) {
            Cow::Borrowed(options)
        } else {
            Cow::Owned(
                options
                    .clone()
                    .with_timeout(route.deadline.saturating_duration_since(now)),
            )
        }
    }

    /// `call`, bounded by its per-attempt `limit`: past it, the attempt is
    /// abandoned (dropped, which cancels it) only when another worker
    /// matching the call's filter and not yet tried could take the call;
    /// the only worker left keeps the attempt until the call's deadline,
    /// so a slow answer is never turned into a failure for want of
    /// somewhere else to go.
    async fn attempt_within<T>(
        &self,
        limit: Instant,
        call: impl Future<Output = Result<T, RpcError>>,
        worker: &Worker,
        (filter, tried): (Option<&str>, &[NodeId]),
    ) -> Result<T, RpcError> {
        let mut call = std::pin::pin!(call);
        if let Ok(answer) = tokio::time::timeout_at(limit, &mut call).await {
            return answer;
        }
        let mut avoid = tried.to_vec();
        avoid.push(worker.id());
        if self.registry.could_select(filter, &avoid, Instant::now()) {
            return Err(RpcError::Timeout);
        }
        call.await
    }

    /// Whether the answer time of the route's call feeds the adaptive
    /// attempt timeout: an idempotent unary call's, when that policy is in
    /// force (the only calls it applies to; the others skip its lock).
    fn records_latency(&self, route: &Route<'_>) -> bool {
        route.kind == CallKind::Unary
            && route.idempotent
            && matches!(
                self.config.attempt_timeout,
                super::AttemptTimeout::Adaptive(_)
            )
    }

    /// The per-attempt timeout of the route's next attempt: for an
    /// idempotent unary call that has another attempt after this one, the
    /// call's own or the configured [`AttemptTimeout`](super::AttemptTimeout).
    fn attempt_limit(&self, route: &Route<'_>) -> Option<Duration> {
        let last = route.failed.len() + 1 >= self.config.max_attempts;
        if route.kind != CallKind::Unary || !route.idempotent || last {
            return None;
        }
        if let Some(limit) = route.options.attempt_timeout() {
            return Some(limit);
        }
        let timeout = route
            .options
            .timeout()
            .unwrap_or_else(|| self.default_timeout());
        let p99 = self.latencies.p99(&route.method);
        self.config
            .attempt_timeout
            .limit(timeout, self.config.max_attempts, p99)
    }
}
