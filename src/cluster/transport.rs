//! Gossip over the nodes' RPC endpoints. Each packet is a unary call to
//! [`GOSSIP_METHOD`] on the peer's RPC address, over a connection that
//! presents this node's certificate: peers accept only clients with a
//! certificate from the cluster CA, so outsiders can neither join nor
//! inject anything.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};

use crate::{RpcClient, RpcConfig};

/// The method gossip packets are sent to.
pub const GOSSIP_METHOD: &str = "rpcnet.cluster/gossip";

/// Sends one packet at most this long before giving up (SWIM tolerates loss).
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Packets in flight at once; more are dropped, as a lossy network would.
const MAX_IN_FLIGHT: usize = 256;

type Slot = Arc<OnceCell<RpcClient>>;

#[derive(Clone)]
pub(crate) struct Transport {
    config: RpcConfig,
    clients: Arc<Mutex<HashMap<SocketAddr, Slot>>>,
    in_flight: Arc<Semaphore>,
}

impl Transport {
    pub(crate) fn new(config: RpcConfig) -> Self {
        Self {
            config,
            clients: Arc::default(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    fn slot(&self, addr: SocketAddr) -> Slot {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(addr)
            .or_default()
            .clone()
    }

    fn forget(&self, addr: SocketAddr, slot: &Slot) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.get(&addr).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            clients.remove(&addr);
        }
    }

    /// Sends `packet` to `addr` in the background; failures drop the packet
    /// and the connection (the next packet reconnects).
    pub(crate) fn send(&self, addr: SocketAddr, packet: Vec<u8>) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "gossip send queue full; dropping packet");
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let slot = this.slot(addr);
            let client = slot
                .get_or_try_init(|| async {
                    tokio::time::timeout(
                        SEND_TIMEOUT,
                        RpcClient::connect(addr, this.config.clone()),
                    )
                    .await
                    .unwrap_or(Err(crate::RpcError::Timeout))
                })
                .await;
            let result = match client {
                Ok(client) => client
                    .call_with_timeout(GOSSIP_METHOD, packet, SEND_TIMEOUT)
                    .await
                    .map(drop),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::debug!(%addr, "gossip send failed: {e}");
                this.forget(addr, &slot);
            }
        });
    }
}
