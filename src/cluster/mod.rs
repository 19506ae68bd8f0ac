//! Clusters: membership (who is in the cluster and alive) and routing
//! (where a call goes). See `docs/CLUSTER.md` and `docs/ARCHITECTURE.md`.
//!
//! | module | concern |
//! |---|---|
//! | `membership` | SWIM gossip (foca), Phi Accrual health, tags, events: [`ClusterMembership`] |
//! | `routing` | [`WorkerRegistry`], [`LoadBalancingStrategy`], [`ClusterClient`]: selection, failover, ejection |
//!
//! This module also holds what both share: [`NodeStatus`] and [`ClusterEvent`].

pub(crate) mod membership;
mod routing;

pub use membership::detector;
pub use membership::{
    ClusterConfig, ClusterMembership, ClusterView, HealthChecker, MemberAddr, NodeId, NodeInfo,
    NodeRegistry, PhiAccrualDetector, PhiConfig, Tags, GOSSIP_METHOD, MAX_TAGS, MAX_TAG_LEN,
    MEMBER_URI_SCHEME, VIEW_METHOD,
};
pub use membership::{MemberReport, MembershipReport, MEMBERSHIP_REPORT_VERSION, MEMBERS_METHOD};
pub use routing::*;

/// A member's status as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    /// Reachable.
    Alive,
    /// Suspected by SWIM, not yet declared down.
    Suspect,
    /// Declared down by SWIM, or φ passed the threshold here.
    Failed,
    /// Departed gracefully.
    Left,
}

/// Membership changes, in the order this node observed them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A member appeared (or a known address came back with a new generation).
    NodeJoined {
        /// Who.
        node: NodeId,
        /// Its tags as known at that moment (they may follow in `NodeTagsUpdated`).
        tags: Tags,
    },
    /// A member departed gracefully.
    NodeLeft(NodeId),
    /// A member was declared down by SWIM, or its φ passed the threshold.
    NodeFailed(NodeId),
    /// A member that had failed is reachable again.
    NodeRecovered(NodeId),
    /// A member's tags changed.
    NodeTagsUpdated {
        /// Who.
        node: NodeId,
        /// Its whole tag map now.
        tags: Tags,
    },
    /// A large share of members became unreachable at once.
    PartitionDetected {
        /// The members this node cannot reach.
        unreachable: Vec<NodeId>,
    },
    /// The members counted in `PartitionDetected` are reachable again.
    PartitionHealed,
}

/// One line per event, for logs and for tools that read them: `joined`,
/// `left`, `failed`, `recovered` or `tags`, then the member's address and
/// generation (`failed 10.0.0.5:7000 17`); `partition <unreachable count>`;
/// `healed`.
impl std::fmt::Display for ClusterEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, id) = match self {
            ClusterEvent::NodeJoined { node, .. } => ("joined", node),
            ClusterEvent::NodeLeft(id) => ("left", id),
            ClusterEvent::NodeFailed(id) => ("failed", id),
            ClusterEvent::NodeRecovered(id) => ("recovered", id),
            ClusterEvent::NodeTagsUpdated { node, .. } => ("tags", node),
            ClusterEvent::PartitionDetected { unreachable } => {
                return write!(f, "partition {}", unreachable.len())
            }
            ClusterEvent::PartitionHealed => return f.write_str("healed"),
        };
        write!(f, "{kind} {} {}", id.addr, id.generation)
    }
}
