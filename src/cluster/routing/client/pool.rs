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
    ///
    /// A worker can leave `registry`'s pool between the call's selection
    /// and this: a connection opened to it then serves this call only,
    /// and closes when the call is done. A prune by another call in that
    /// window found no connection to drop, and the next prune is at the
    /// pool's next change. The slot is put in the map before the registry
    /// is read here, and the first prune to read the registry's new version
    /// sees the pool stored before it (`WorkerRegistry::version`), so
    /// either that prune finds the slot or this check finds the worker
    /// gone.
    pub(super) async fn connection(
        &self,
        registry: &WorkerRegistry,
        worker: &Worker,
        within: Duration,
        used: &mut Option<Connection>,
    ) -> Result<RpcClient, RpcError> {
        // Boxed: connecting is rare, and its state machine (resolving,
        // the handshake) would otherwise make every call's future larger.
        let (slot, client) =
            Box::pin(self.connections.get(worker.id_ref(), worker.addr(), within)).await;
        if !registry.contains(worker.id_ref()) {
            self.connections.forget(worker.id_ref(), slot);
        }
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::time::Instant;

    use super::*;
    use crate::cluster::routing::remote::{RemoteView, ViewSource};
    use crate::cluster::{ClusterView, LoadBalancingStrategy, NodeInfo, NodeStatus, Tags};
    use crate::RpcServer;

    fn cert(name: &str) -> String {
        format!("{}/certs/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn one_worker_at(addr: SocketAddr) -> ClusterView {
        ClusterView {
            members: vec![NodeInfo {
                id: NodeId::new(addr, 1),
                status: NodeStatus::Alive,
                tags: Tags::new(),
                phi: 0.0,
            }],
            ..ClusterView::default()
        }
    }

    /// A call selected a worker; before its connection was opened the
    /// worker left the pool and another call pruned the connections. The
    /// connection this call then opens is its own: it closes once the call
    /// lets go of it, instead of staying open to a worker that left until
    /// the pool next changes. A worker still in the pool keeps its
    /// connection for the calls after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_opened_to_a_worker_that_just_left_closes_when_its_call_lets_go() {
        let mut server = RpcServer::new(
            RpcConfig::new(cert("server.pem"), "127.0.0.1:0").with_key_path(cert("server-key.pem")),
        );
        let mut quic = server.bind().unwrap();
        let addr = quic.local_addr().unwrap();
        let registry = WorkerRegistry::from_source(
            ViewSource::Remote(RemoteView::fixed(one_worker_at(addr))),
            LoadBalancingStrategy::LeastConnections,
            1,
        );
        let pool = Pool::new(RpcConfig::new(cert("ca.pem"), "127.0.0.1:0"));
        pool.prune(&registry);
        let worker = registry.select(None, &[], Instant::now()).unwrap();

        let mut used = None;
        let kept = pool
            .connection(&registry, &worker, Duration::from_secs(10), &mut used)
            .await
            .expect("the worker serves");
        let _first = quic.accept().await.expect("the first connection");
        drop(kept);
        assert!(
            pool.with_open(&worker, |_| ()).is_some(),
            "the next call to a worker in the pool reuses its connection"
        );

        registry.apply(&ClusterView::default());
        pool.prune(&registry);
        let mut used = None;
        let client = pool
            .connection(&registry, &worker, Duration::from_secs(10), &mut used)
            .await
            .expect("the worker still serves");
        let mut accepted = quic.accept().await.expect("the call's connection");
        drop(client);

        let closed = tokio::time::timeout(
            Duration::from_secs(5),
            accepted.accept_bidirectional_stream(),
        )
        .await;
        assert!(
            matches!(closed, Ok(Ok(None) | Err(_))),
            "the connection to the departed worker stayed open: {closed:?}"
        );
    }
}
