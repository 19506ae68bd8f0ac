//! A [`ClusterClient`](super::ClusterClient)'s worker connections: opened
//! on a worker's first call, one per worker identity, dropped when the
//! connection fails or the identity leaves the registry's pool (left,
//! failed, or back under a new generation).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::lock;
use crate::cluster::{NodeId, Worker, WorkerRegistry};
use crate::{RpcClient, RpcConfig, RpcError};

/// One worker's pool entry: its connection once opened.
pub(super) type Connection = Arc<OnceCell<RpcClient>>;

/// Connections by worker identity.
pub(super) struct Pool {
    /// The RPC configuration of worker connections.
    rpc: RpcConfig,
    connections: Mutex<HashMap<NodeId, Connection>>,
    /// The registry version last pruned at.
    pruned_at: AtomicU64,
}

impl Pool {
    pub(super) fn new(rpc: RpcConfig) -> Self {
        Self {
            rpc,
            connections: Mutex::new(HashMap::new()),
            pruned_at: AtomicU64::new(0),
        }
    }

    /// The RPC configuration of worker connections.
    pub(super) fn rpc(&self) -> &RpcConfig {
        &self.rpc
    }

    /// The worker's pooled connection, opened on first use within
    /// `within`. `used` receives the pool entry, for [`forget`](Self::forget).
    pub(super) async fn connection(
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
    pub(super) fn forget(&self, id: &NodeId, cell: &Connection) {
        let mut pool = lock(&self.connections);
        if pool.get(id).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            pool.remove(id);
        }
    }

    /// Drops connections to workers no longer in `registry`'s pool (left,
    /// failed, or replaced by a new generation), once per pool change.
    pub(super) fn prune(&self, registry: &WorkerRegistry) {
        let version = registry.version();
        if self.pruned_at.swap(version, Ordering::Relaxed) == version {
            return;
        }
        lock(&self.connections).retain(|id, _| registry.contains(id));
    }
}
