//! [`ClusterClientConfig`]: how a [`ClusterClient`](super::ClusterClient)
//! connects to workers and how far it retries.

use std::time::Duration;

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
    pub(super) fn worker_rpc(&self) -> RpcConfig {
        self.rpc
            .clone()
            .with_handshake_timeout(self.connect_timeout)
            .with_idle_timeout(self.idle_timeout)
            .with_keep_alive_interval(self.idle_timeout / KEEP_ALIVE_DIVISOR)
    }
}
