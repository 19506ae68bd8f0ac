//! A pool of connections keyed by peer: at most one [`RpcClient`] per key,
//! opened lazily by the first caller that needs it (later callers wait for
//! that connect instead of opening their own), dropped when a caller finds
//! it broken. The gossip transport keys it by member address and bounds
//! it ([`with_retention`](ConnectionPool::with_retention): at most so many
//! connections, idle ones closed); `ClusterClient` keys it by worker
//! identity, unbounded (one connection per worker it routes to).
//!
//! Connections go to [`MemberAddr`]esses: a name is resolved where the
//! pool runs, at every connect (so a member that moved is found at its new
//! address once its old connection fails), and the server's certificate is
//! verified against the name the pool dials ([`ServerNames`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::sync::Snapshot;
use tokio::time::Instant;

use super::retention::Retention;

use crate::cluster::MemberAddr;
use crate::{RpcClient, RpcConfig, RpcError};

/// Which name a pool verifies a server's certificate against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerNames {
    /// The member's own host, its DNS name or its IP address, and the
    /// member role: the server's certificate must be a member certificate
    /// that speaks for the address dialed (members dialing members, so
    /// each peer is held to its own name, and a certificate that merely
    /// carries the name for TLS is not enough).
    Member,
    /// The configured server name ([`RpcConfig::with_server_name`]) for a
    /// member named by an IP address, the member's DNS name for one named
    /// by DNS: application clients (`ClusterClient`) verify the name they
    /// dial.
    Dialed,
    /// As the configuration says, unchanged: the gossip transport's seed
    /// connections, whose configuration accepts any member certificate of
    /// the cluster CA (the seed's name is not known yet).
    Configured,
}

/// Connects to the member at `to` with `config`, verifying its
/// certificate as `names` says. A name that resolves to several
/// addresses is tried at each in turn, until one connects.
///
/// # Errors
/// [`RpcError::ConnectionError`] when `to`'s name does not resolve; what
/// [`RpcClient::connect`] returns for the last address tried.
pub(crate) async fn dial(
    to: MemberAddr,
    config: &RpcConfig,
    names: ServerNames,
) -> Result<RpcClient, RpcError> {
    let ipv6 = config.parsed_bind_address()?.is_ipv6();
    let addrs = to
        .resolve(ipv6)
        .await
        .map_err(|e| RpcError::ConnectionError(format!("{to} does not resolve: {e}")))?;
    let config = match (names, to.name()) {
        (ServerNames::Member, _) => {
            let mut config = config.clone().with_server_name(to.host());
            config.expected_member = Some(crate::config::ExpectedMember::At(to));
            config
        }
        (ServerNames::Dialed, Some(name)) => config.clone().with_server_name(name),
        (ServerNames::Dialed, None) | (ServerNames::Configured, _) => config.clone(),
    };
    let mut last = None;
    for addr in addrs {
        match RpcClient::connect(addr, config.clone()).await {
            Ok(client) => return Ok(client),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| RpcError::ConnectionError(format!("{to}: no address"))))
}

/// Which pooled connection a caller used, so that
/// [`forget`](ConnectionPool::forget) drops exactly that one: a later
/// connection under the same key has another (identities are never
/// reused within a process). A copy, not a reference: a call holds no
/// count on the pool's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotId(u64);

/// One pooled connection, or the connect in progress.
#[derive(Debug)]
struct Slot {
    id: SlotId,
    client: OnceCell<RpcClient>,
}

impl Default for Slot {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            id: SlotId(NEXT.fetch_add(1, Ordering::Relaxed)),
            client: OnceCell::new(),
        }
    }
}

type Slots<K> = HashMap<K, Arc<Slot>, foldhash::fast::RandomState>;

/// Connections keyed by `K`, all opened with one configuration.
pub(crate) struct ConnectionPool<K> {
    config: RpcConfig,
    names: ServerNames,
    /// Looked up on every routed call: foldhash (seeded per process), not
    /// std's SipHash, which cost about 250 of the ~3,400 instructions
    /// routing added to a call (callgrind). Its keys are members'
    /// identities, which only members introduce, so SipHash's resistance
    /// to chosen collisions buys nothing here.
    ///
    /// Read without a lock (a process-wide lock, even taken for reading,
    /// moves its cache line between the threads making calls twice per
    /// call); the rare changes (a connect, a failed connection, a worker
    /// gone) replace the map, one writer at a time.
    slots: Snapshot<Slots<K>>,
    /// Which keys to keep, for a bounded pool.
    retention: Option<Mutex<Retention<K>>>,
    /// The origin of the times handed to `retention`.
    epoch: Instant,
}

impl<K: Eq + Hash + Copy> ConnectionPool<K> {
    /// An empty pool whose connections use `config`, verifying servers
    /// against `names`.
    pub(crate) fn new(config: RpcConfig, names: ServerNames) -> Self {
        Self {
            config,
            names,
            slots: Snapshot::default(),
            retention: None,
            epoch: Instant::now(),
        }
    }

    /// Bounds the pool: at most `max` connections (at least 1), the least
    /// recently used closed when [`get`](Self::get) needs room for
    /// another, and each closed once unused for `idle` (by
    /// [`sweep`](Self::sweep)). A connection still carrying a call closes
    /// when that call ends.
    pub(crate) fn with_retention(mut self, max: usize, idle: Duration) -> Self {
        self.retention = Some(Mutex::new(Retention::new(max, idle)));
        self
    }

    /// Closes the connections a bounded pool no longer keeps: those unused
    /// for its idle timeout, and any it does not hold (a caller that
    /// reopened a key another caller's eviction had just closed). Does
    /// nothing for an unbounded pool.
    pub(crate) fn sweep(&self) {
        let Some(retention) = &self.retention else {
            return;
        };
        // Locks are always taken in this order: the retention, then the
        // slots' writer.
        let mut retention = crate::sync::lock(retention);
        retention.sweep(self.epoch.elapsed());
        if self.slots.load().keys().all(|key| retention.holds(key)) {
            return; // nothing to close: the map is not copied
        }
        self.slots
            .update(|slots| slots.retain(|key, _| retention.holds(key)));
    }

    /// How many connections the pool holds (a connect in progress counts).
    pub(crate) fn len(&self) -> usize {
        self.slots.load().len()
    }

    fn close(&self, keys: &[K]) {
        if keys.is_empty() {
            return;
        }
        self.slots.update(|slots| {
            for key in keys {
                slots.remove(key);
            }
        });
    }

    /// The configuration connections are opened with.
    pub(crate) fn config(&self) -> &RpcConfig {
        &self.config
    }

    /// The open connection for `key`, if there is one: no lock held while
    /// it is cloned, nothing to await.
    fn ready(&self, key: &K) -> Option<(SlotId, RpcClient)> {
        let (client, slot) = self.with_open(key, RpcClient::clone)?;
        Some((slot, client))
    }

    /// `f` applied to the open connection for `key`, borrowed in place,
    /// and which connection it was; `None` when `key` has none open. The
    /// call path: no lock, and the entry's reference count does not move
    /// (`f` makes a call's future, which holds what it needs of the
    /// connection).
    pub(crate) fn with_open<R>(
        &self,
        key: &K,
        f: impl FnOnce(&RpcClient) -> R,
    ) -> Option<(R, SlotId)> {
        let slots = self.slots.load();
        let slot = slots.get(key)?;
        Some((f(slot.client.get()?), slot.id))
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
        key: &K,
        addr: MemberAddr,
        within: Duration,
    ) -> (SlotId, Result<RpcClient, RpcError>) {
        if let Some(retention) = &self.retention {
            let mut retention = crate::sync::lock(retention);
            let touched = retention.touch(*key, self.epoch.elapsed());
            self.close(&touched.evicted);
        }
        if let Some((slot, client)) = self.ready(key) {
            return (slot, Ok(client));
        }
        // A connect in progress is joined without copying the map.
        let pending = self.slots.load().get(key).cloned();
        let slot = match pending {
            Some(slot) => slot,
            None => self
                .slots
                .update(|slots| slots.entry(*key).or_default().clone()),
        };
        let connect = slot
            .client
            .get_or_try_init(|| dial(addr, &self.config, self.names));
        let client = match tokio::time::timeout(within, connect).await {
            Ok(Ok(client)) => Ok(client.clone()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RpcError::Timeout),
        };
        (slot.id, client)
    }

    /// Drops the connection `slot` for `key` (it failed) unless another
    /// caller already replaced it; the next caller reconnects.
    pub(crate) fn forget(&self, key: &K, slot: SlotId) {
        if !self.slots.load().get(key).is_some_and(|s| s.id == slot) {
            return; // already replaced or gone: the map is not copied
        }
        let mut retention = self.retention.as_ref().map(crate::sync::lock);
        self.slots.update(|slots| {
            if slots.get(key).is_some_and(|s| s.id == slot) {
                slots.remove(key);
                if let Some(retention) = &mut retention {
                    retention.forget(key);
                }
            }
        });
    }

    /// Keeps only the connections whose key satisfies `keep`.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K) -> bool) {
        let mut retention = self.retention.as_ref().map(crate::sync::lock);
        self.slots.update(|slots| {
            slots.retain(|key, _| {
                let kept = keep(key);
                if let (false, Some(retention)) = (kept, &mut retention) {
                    retention.forget(key);
                }
                kept
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rpcnet_certs::{CaDir, CertSpec};

    use super::*;
    use crate::RpcServer;

    /// A CA and certificates for the server roles below, in a fresh
    /// directory (removed on drop).
    struct Pki(PathBuf);

    impl Pki {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("rpcnet-dial-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            CaDir::create(&dir, "dial test CA")
                .unwrap()
                .issue(&[
                    CertSpec::member("caller", ["10.0.0.8"]),
                    CertSpec::member("member", ["127.0.0.1"]),
                    // Another member that carries 127.0.0.1 for TLS only.
                    CertSpec::member("other", ["10.0.0.9"]).with_tls_sans(["127.0.0.1"]),
                    // 127.0.0.1 for TLS, no member role.
                    CertSpec::node("node", ["127.0.0.1"]),
                ])
                .unwrap();
            Self(dir)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn dial_server_with(pki: &Pki, cert: &str) -> Result<RpcClient, RpcError> {
        let mut server = RpcServer::new(
            RpcConfig::new(pki.file(&format!("{cert}.pem")), "127.0.0.1:0")
                .with_key_path(pki.file(&format!("{cert}-key.pem")))
                .with_optional_client_ca_path(pki.file("ca.pem")),
        );
        let quic = server.bind().unwrap();
        let addr = server.handle().socket_addr().unwrap();
        let serving = tokio::spawn(async move { server.start(quic).await });
        let caller = RpcConfig::new(pki.file("ca.pem"), "127.0.0.1:0")
            .with_client_identity(pki.file("caller.pem"), pki.file("caller-key.pem"));
        let dialed = dial(addr.into(), &caller, ServerNames::Member).await;
        serving.abort();
        dialed
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_is_reached_only_through_a_member_certificate_for_its_address() {
        let pki = Pki::new();
        dial_server_with(&pki, "member")
            .await
            .expect("the member's own certificate");
        for impostor in ["other", "node"] {
            let refused = dial_server_with(&pki, impostor).await.unwrap_err();
            assert!(
                matches!(&refused, RpcError::TlsError(m) if m.contains("not a member certificate")),
                "{impostor}: {refused:?}"
            );
        }
    }
}
