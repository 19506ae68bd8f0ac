//! A pool of connections keyed by peer: at most one [`RpcClient`] per key,
//! opened lazily by the first caller that needs it (later callers wait for
//! that connect instead of opening their own), dropped when a caller finds
//! it broken. The gossip transport keys it by member address,
//! `ClusterClient` by worker identity.
//!
//! Connections go to [`MemberAddr`]esses: a name is resolved where the
//! pool runs, at every connect (so a member that moved is found at its new
//! address once its old connection fails), and the server's certificate is
//! verified against the name the pool dials ([`ServerNames`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::cluster::MemberAddr;
use crate::sync::lock;
use crate::{RpcClient, RpcConfig, RpcError};

/// Which name a pool verifies a server's certificate against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerNames {
    /// The member's own host, its DNS name or its IP address: members
    /// dialing members, so each peer is held to its own name.
    Member,
    /// The configured server name ([`RpcConfig::with_server_name`]) for a
    /// member named by an IP address, the member's DNS name for one named
    /// by DNS: application clients (`ClusterClient`) verify the name they
    /// dial.
    Dialed,
}

/// Connects to the member at `to` with `config`, verifying its
/// certificate against the name `names` gives.
///
/// # Errors
/// [`RpcError::ConnectionError`] when `to`'s name does not resolve; what
/// [`RpcClient::connect`] returns.
pub(crate) async fn dial(
    to: MemberAddr,
    config: &RpcConfig,
    names: ServerNames,
) -> Result<RpcClient, RpcError> {
    let ipv6 = config.parsed_bind_address()?.is_ipv6();
    let addr = to
        .resolve(ipv6)
        .await
        .map_err(|e| RpcError::ConnectionError(format!("{to} does not resolve: {e}")))?;
    let config = match (names, to.name()) {
        (ServerNames::Member, _) => config.clone().with_server_name(to.host()),
        (ServerNames::Dialed, Some(name)) => config.clone().with_server_name(name),
        (ServerNames::Dialed, None) => config.clone(),
    };
    RpcClient::connect(addr, config).await
}

/// One pooled connection, or the connect in progress. Callers hold it to
/// [`forget`](ConnectionPool::forget) exactly the connection they used.
pub(crate) type Slot = Arc<OnceCell<RpcClient>>;

/// Connections keyed by `K`, all opened with one configuration.
pub(crate) struct ConnectionPool<K> {
    config: RpcConfig,
    names: ServerNames,
    slots: Mutex<HashMap<K, Slot>>,
}

impl<K: Eq + Hash + Copy> ConnectionPool<K> {
    /// An empty pool whose connections use `config`, verifying servers
    /// against `names`.
    pub(crate) fn new(config: RpcConfig, names: ServerNames) -> Self {
        Self {
            config,
            names,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration connections are opened with.
    pub(crate) fn config(&self) -> &RpcConfig {
        &self.config
    }

    /// The connection for `key` to `addr`, opened now if there is none,
    /// within `within` (resolving included). Returns the slot used, for
    /// [`forget`](Self::forget).
    ///
    /// # Errors
    /// What [`dial`] returns; [`RpcError::Timeout`] when connecting takes
    /// longer than `within`.
    pub(crate) async fn get(
        &self,
        key: K,
        addr: MemberAddr,
        within: Duration,
    ) -> (Slot, Result<RpcClient, RpcError>) {
        let slot = lock(&self.slots).entry(key).or_default().clone();
        let connect = slot.get_or_try_init(|| dial(addr, &self.config, self.names));
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
