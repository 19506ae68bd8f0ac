//! A [`ClusterClient`](super::ClusterClient)'s worker connections: the
//! crate's connection pool keyed by worker identity (opened on a worker's
//! first call, dropped when the connection fails), pruned when an identity
//! leaves the registry's pool (left, failed, or back under a new
//! generation).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(super) use crate::client::pool::SlotId as Connection;
use crate::client::pool::{ConnectionPool, ServerNames};
use crate::cluster::{NodeId, Worker, WorkerRegistry};
use crate::{RpcClient, RpcConfig, RpcError};

/// Connections by worker identity.
pub(super) struct Pool {
    connections: ConnectionPool<NodeId>,
    /// The registry version last pruned at.
    pruned_at: AtomicU64,
}

impl Pool {
    pub(super) fn new(rpc: RpcConfig) -> Self {
        Self {
            connections: ConnectionPool::new(rpc, ServerNames::Dialed),
            pruned_at: AtomicU64::new(0),
        }
    }

    /// The RPC configuration of worker connections.
    pub(super) fn rpc(&self) -> &RpcConfig {
        self.connections.config()
    }

    /// `f` applied to the worker's pooled connection if it is open (the
    /// call path: nothing to await), and which connection it was.
    pub(super) fn with_open<R>(
        &self,
        worker: &Worker,
        f: impl FnOnce(&RpcClient) -> R,
    ) -> Option<(R, Connection)> {
        self.connections.with_open(worker.id_ref(), f)
    }

    /// The worker's pooled connection, opened on first use within
    /// `within`. `used` receives which connection it is, for
    /// [`forget`](Self::forget).
    pub(super) async fn connection(
        &self,
        worker: &Worker,
        within: Duration,
        used: &mut Option<Connection>,
    ) -> Result<RpcClient, RpcError> {
        // Boxed: connecting is rare, and its state machine (resolving,
        // the handshake) would otherwise make every call's future larger.
        let (slot, client) =
            Box::pin(self.connections.get(worker.id_ref(), worker.addr(), within)).await;
        *used = Some(slot);
        client
    }

    /// Drops the connection `cell` to `id` (it failed) unless another call
    /// already replaced it; the next call reconnects.
    pub(super) fn forget(&self, id: &NodeId, cell: Connection) {
        self.connections.forget(id, cell);
    }

    /// Drops connections to workers no longer in `registry`'s pool (left,
    /// failed, or replaced by a new generation), once per pool change.
    pub(super) fn prune(&self, registry: &WorkerRegistry) {
        let version = registry.version();
        // A read first: a write on every call would bounce the cache line
        // between the threads making calls.
        if self.pruned_at.load(Ordering::Relaxed) == version
            || self.pruned_at.swap(version, Ordering::Relaxed) == version
        {
            return;
        }
        self.connections.retain(|id| registry.contains(id));
    }
}
