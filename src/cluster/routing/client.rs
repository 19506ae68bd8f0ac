//! [`ClusterClient`]: calls to any worker of a cluster, with safe failover.
//!
//! Every call mode takes one path, [`ClusterClient::route`]: select a
//! worker, get its pooled connection, make the attempt, and let
//! `failover::decide` say what a failure means (what to record for passive
//! ejection; retry on another worker, or stop). Connections are opened
//! lazily, one per worker identity, and dropped when the worker leaves the
//! pool, fails a connection, or comes back under a new generation.
//! The call modes (`modes`) differ only in the attempt they give `route`.

mod modes;
mod pool;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::time::Instant;

use super::budget::RetryBudget;
use super::config::ClusterClientConfig;
use super::discover::{Worker, WorkerRegistry};
use super::eject::Outcome;
use super::failover::{self, CallState, FailedAttempt, Next, StopReason};
use super::filter::WorkerFilter;
use crate::cluster::NodeId;
use crate::sync::lock;
use crate::wire::CallKind;
use crate::{CallOptions, ResponseStream, RpcClient, RpcError};
use pool::{Connection, Pool};

/// Calls into a cluster: each call goes to a worker chosen by the
/// registry's strategy, and moves to another worker when that is safe.
///
/// * A call that provably never ran (no connection; the worker refused
///   it, e.g. while draining) is retried on another worker.
/// * Any other failure (connection lost mid-call, timeout) is retried only
///   for calls declared idempotent ([`CallOptions::idempotent`]).
/// * A streaming call moves on only while connecting: its request is not
///   sent twice.
/// * Retries are capped per call (`with_max_attempts`), by the call's
///   timeout, and by a retry budget across calls (`with_retry_budget`).
/// * A worker whose connection fails, or that refuses calls, is ejected
///   from rotation at once; repeated timeouts eject it too (see
///   [`EjectionPolicy`](super::EjectionPolicy), set on the registry).
///
/// # Errors
/// A worker's own answer (handler error, unknown method, message too
/// large) is returned as it is. A routing failure is
/// [`RpcError::Failover`], listing every worker tried and why each failed,
/// and why no further worker was tried ([`StopReason`]).
pub struct ClusterClient {
    registry: Arc<WorkerRegistry>,
    config: ClusterClientConfig,
    pool: Pool,
    budget: Mutex<RetryBudget>,
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
    /// A client routing through `registry`; `config` is an
    /// [`RpcConfig`](crate::RpcConfig) for the worker connections (CA,
    /// server name) or a [`ClusterClientConfig`].
    pub fn new(registry: Arc<WorkerRegistry>, config: impl Into<ClusterClientConfig>) -> Self {
        let config = config.into();
        Self {
            pool: Pool::new(config.worker_rpc()),
            budget: Mutex::new(RetryBudget::new(config.budget, Instant::now())),
            registry,
            config,
        }
    }

    /// The registry this client routes through.
    pub fn registry(&self) -> &Arc<WorkerRegistry> {
        &self.registry
    }

    /// The one call path: select → connect → attempt → decide, until an
    /// answer or a reason to stop. `kind` says whether the request can be
    /// sent again (unary) and whether the responses are read as a stream
    /// (then without a timeout in `options` they have no deadline).
    async fn route<T, F, Fut>(
        &self,
        filter_text: Option<&str>,
        options: &CallOptions,
        kind: CallKind,
        mut attempt: F,
    ) -> Result<(T, Worker), RpcError>
    where
        F: FnMut(RpcClient, CallOptions) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let filter = WorkerFilter::parse(filter_text)?;
        let start = Instant::now();
        let deadline = start
            + options
                .timeout()
                .unwrap_or(self.pool.rpc().default_timeout());
        self.pool.prune(&self.registry);
        lock(&self.budget).deposit(start);
        let mut failed: Vec<FailedAttempt> = Vec::new();
        let stopped = loop {
            let now = Instant::now();
            let tried: Vec<NodeId> = failed.iter().map(|a| a.worker).collect();
            let text = filter_text.unwrap_or("");
            let worker = match self.registry.select(&filter, text, &tried, now) {
                Ok(worker) => worker,
                Err(e) if failed.is_empty() => return Err(e),
                Err(e) => break StopReason::NoMoreWorkers(Box::new(e)),
            };
            if deadline <= now {
                // Not even a connection can be tried (a zero timeout, or
                // the time went while selecting).
                failed.push(FailedAttempt {
                    worker: worker.id(),
                    error: RpcError::Timeout,
                });
                break StopReason::DeadlinePassed;
            }
            let mut cell = None;
            let attempted = self
                .attempt(&worker, deadline, options, kind, &mut cell, &mut attempt)
                .await;
            let AttemptError { error, connected } = match attempted {
                Ok(value) => {
                    let now = Instant::now();
                    self.registry.record(&worker, Outcome::Answered, now);
                    return Ok((value, worker));
                }
                Err(e) => e,
            };
            let now = Instant::now();
            let call = CallState {
                attempts: failed.len() + 1,
                max_attempts: self.config.max_attempts,
                idempotent: options.is_idempotent(),
                replayable: kind == CallKind::Unary,
                deadline,
            };
            let decision = failover::decide(&error, connected, &call, now, || {
                lock(&self.budget).try_withdraw(now)
            });
            self.registry.record(&worker, decision.outcome, now);
            if let (Outcome::ConnectionFailed, Some(cell)) = (decision.outcome, &cell) {
                self.pool.forget(&worker.id(), cell);
            }
            let worker = worker.id();
            match decision.next {
                Next::Return => return Err(error),
                Next::RetryElsewhere => failed.push(FailedAttempt { worker, error }),
                Next::Stop(reason) => {
                    failed.push(FailedAttempt { worker, error });
                    break reason;
                }
            }
        };
        Err(RpcError::Failover {
            attempts: failed,
            stopped,
        })
    }

    /// One attempt on `worker`: its pooled connection (`cell` receives the
    /// pool entry), then `attempt` with `options` bounded by what is left
    /// of the call's time (a stream without a timeout stays without one).
    async fn attempt<T, F, Fut>(
        &self,
        worker: &Worker,
        deadline: Instant,
        options: &CallOptions,
        kind: CallKind,
        cell: &mut Option<Connection>,
        attempt: &mut F,
    ) -> Result<T, AttemptError>
    where
        F: FnMut(RpcClient, CallOptions) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let client = self
            .pool
            .connection(worker, remaining, cell)
            .await
            .map_err(|error| AttemptError {
                error,
                connected: false,
            })?;
        let streamed = matches!(kind, CallKind::ServerStreaming | CallKind::Bidirectional);
        let options = if streamed && options.timeout().is_none() {
            options.clone()
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            options.clone().with_timeout(left)
        };
        attempt(client, options)
            .await
            .map_err(|error| AttemptError {
                error,
                connected: true,
            })
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
