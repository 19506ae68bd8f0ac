//! A pool of connections keyed by peer: at most one [`RpcClient`] per key,
//! opened lazily by the first caller that needs it (later callers wait for
//! that connect instead of opening their own), dropped when a caller finds
//! it broken. The gossip transport keys it by address, `ClusterClient` by
//! worker identity.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::sync::lock;
use crate::{RpcClient, RpcConfig, RpcError};

/// One pooled connection, or the connect in progress. Callers hold it to
/// [`forget`](ConnectionPool::forget) exactly the connection they used.
pub(crate) type Slot = Arc<OnceCell<RpcClient>>;

/// Connections keyed by `K`, all opened with one configuration.
pub(crate) struct ConnectionPool<K> {
    config: RpcConfig,
    slots: Mutex<HashMap<K, Slot>>,
}

impl<K: Eq + Hash + Copy> ConnectionPool<K> {
    /// An empty pool whose connections use `config`.
    pub(crate) fn new(config: RpcConfig) -> Self {
        Self {
            config,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration connections are opened with.
    pub(crate) fn config(&self) -> &RpcConfig {
        &self.config
    }

    /// The connection for `key` to `addr`, opened now if there is none,
    /// within `within`. Returns the slot used, for [`forget`](Self::forget).
    ///
    /// # Errors
    /// What [`RpcClient::connect`] returns; [`RpcError::Timeout`] when
    /// connecting takes longer than `within`.
    pub(crate) async fn get(
        &self,
        key: K,
        addr: SocketAddr,
        within: Duration,
    ) -> (Slot, Result<RpcClient, RpcError>) {
        let slot = lock(&self.slots).entry(key).or_default().clone();
        let connect = slot.get_or_try_init(|| RpcClient::connect(addr, self.config.clone()));
        let client = match tokio::time::timeout(within, connect).await {
            Ok(Ok(client)) => Ok(client.clone()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RpcError::Timeout),
        };
        (slot, client)
    }

    /// Drops the connection in `slot` for `key` (it failed) unless another
    /// caller already replaced it; the next caller reconnects.
    pub(crate) fn forget(&self, key: &K, slot: &Slot) {
        let mut slots = lock(&self.slots);
        if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(key);
        }
    }

    /// Keeps only the connections whose key satisfies `keep`.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        lock(&self.slots).retain(|key, _| keep(key));
    }
}
