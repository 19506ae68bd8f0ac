//! Node identity: the RPC address plus a generation that changes on every
//! restart, so a restarted node is a new identity that wins over the old.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A cluster member: its RPC address (the one address a node has) and a
/// generation. The generation grows when the node restarts or is renewed
/// after being declared down, so stale information about an earlier life of
/// the same address loses every conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    /// The node's RPC (and gossip) address.
    pub addr: SocketAddr,
    /// Restart counter; higher wins.
    pub generation: u64,
}

impl NodeId {
    /// An identity for `addr` with the given generation.
    pub fn new(addr: SocketAddr, generation: u64) -> Self {
        Self { addr, generation }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.addr, self.generation)
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            addr: self.addr,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}
