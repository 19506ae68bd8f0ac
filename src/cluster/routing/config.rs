//! [`ClusterClientConfig`]: how a [`ClusterClient`](super::ClusterClient)
//! connects to workers and how far it retries.

use std::time::Duration;

use super::attempt::AttemptTimeout;
use super::budget::RetryBudgetConfig;
use crate::RpcConfig;

/// PINGs per idle timeout on worker connections: calls caught by a dead
/// worker move on within `idle_timeout * (1 + 1 / KEEP_ALIVE_DIVISOR)`
/// (see [`ClusterClientConfig::with_idle_timeout`]). With a third (as for
/// ordinary keep-alive) the worst of 20 kills took 800 + 267 = 1,066 ms.
const KEEP_ALIVE_DIVISOR: u32 = 8;

/// How a [`ClusterClient`](super::ClusterClient) connects to workers and retries.
#[derive(Debug, Clone)]
pub struct ClusterClientConfig {
    rpc: RpcConfig,
    pub(super) max_attempts: usize,
    pub(super) budget: RetryBudgetConfig,
    connect_timeout: Duration,
    idle_timeout: Duration,
    pub(super) attempt_timeout: AttemptTimeout,
    pub(super) replay_limit: usize,
}

/// Bytes of a request stream kept for sending it again (see
/// [`ClusterClientConfig::with_replay_limit`]).
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

impl From<RpcConfig> for ClusterClientConfig {
    /// Worker connections use `rpc` (CA, server name, limits, default
    /// timeout) with the liveness settings below, at 3 attempts per call,
    /// Finagle's retry budget, the adaptive per-attempt timeout and a
    /// 64 KiB replay buffer per request stream.
    fn from(rpc: RpcConfig) -> Self {
        Self {
            rpc,
            max_attempts: 3,
            budget: RetryBudgetConfig::default(),
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_millis(800),
            attempt_timeout: AttemptTimeout::default(),
            replay_limit: DEFAULT_REPLAY_LIMIT,
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

    /// How long one attempt of an idempotent unary call may take before it
    /// is abandoned and the call moves to another worker (default
    /// [`AttemptTimeout::Adaptive`]: a share of the call's timeout,
    /// shortened by the method's recent answer times; see
    /// [`AdaptiveTimeout`](super::AdaptiveTimeout)). A call's own
    /// [`CallOptions::with_attempt_timeout`](crate::CallOptions::with_attempt_timeout)
    /// wins over it.
    pub fn with_attempt_timeout(mut self, policy: AttemptTimeout) -> Self {
        self.attempt_timeout = policy;
        self
    }

    /// Bytes of a client- or bidirectional-streaming call's request stream
    /// kept so that the stream can be sent again to another worker when
    /// the first refused the call before running it (draining, shutting
    /// down), or lost it and the call is idempotent (default
    /// [`DEFAULT_REPLAY_LIMIT`], 64 KiB). Once the requests sent exceed it,
    /// or the worker's first response arrives, nothing is kept and the call
    /// stays with its worker: gRFC A6's retry buffer and its commit rule.
    pub fn with_replay_limit(mut self, bytes: usize) -> Self {
        self.replay_limit = bytes;
        self
    }

    /// The RPC configuration as given (CA, server name, limits).
    pub(super) fn rpc(&self) -> &RpcConfig {
        &self.rpc
    }

    /// The RPC configuration worker connections use, liveness settings applied.
    pub(super) fn worker_rpc(&self) -> RpcConfig {
        self.rpc
            .clone()
            .with_handshake_timeout(self.connect_timeout)
            .with_idle_timeout(self.idle_timeout)
            .with_keep_alive_interval(self.idle_timeout / KEEP_ALIVE_DIVISOR)
    }
}
