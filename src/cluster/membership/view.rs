//! Snapshots of the membership for readers: [`ClusterView`] and [`NodeInfo`].

use crate::cluster::MemberAddr;

use crate::cluster::{NodeId, NodeStatus, Tags};

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Identity (address and generation).
    pub id: NodeId,
    /// Status here.
    pub status: NodeStatus,
    /// Its tags.
    pub tags: Tags,
    /// Its φ at the time of the snapshot, as this node judges it: 0 for the
    /// local node and for members this node does not monitor (with more
    /// than [`phi_monitors`](super::ClusterConfig::phi_monitors) + 1
    /// members, each member is monitored by that many others).
    pub phi: f64,
}

impl NodeInfo {
    /// The member's RPC address.
    pub fn addr(&self) -> MemberAddr {
        self.id.addr
    }

    /// Whether its tags match `filter`, in the language of worker filters:
    /// a key (`"gpu"`, any value), `"key=value"`, or several that must all
    /// hold (`"role=worker,zone=eu"`). False for a malformed filter.
    pub fn has_tag(&self, filter: &str) -> bool {
        crate::cluster::WorkerFilter::parse(Some(filter)).is_ok_and(|f| f.matches(&self.tags))
    }
}

/// A snapshot of the membership, refreshed after every change.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// This node.
    pub local: Option<NodeInfo>,
    /// Every other member ever seen (any status).
    pub members: Vec<NodeInfo>,
    /// This node's Lifeguard local health score (0 = healthy, up to 8):
    /// its probe and suspicion timeouts are multiplied by 1 + this.
    pub local_health: u32,
}
