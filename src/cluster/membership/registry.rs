//! [`NodeRegistry`] (members by tag) and [`HealthChecker`] (φ per member).

use std::net::SocketAddr;

use super::ClusterConfig;
use super::{ClusterMembership, NodeInfo};
use crate::cluster::NodeStatus;

/// Every member with its address, tags and status; filter by tag.
#[derive(Debug, Clone)]
pub struct NodeRegistry {
    cluster: ClusterMembership,
}

impl NodeRegistry {
    /// A registry over `cluster`'s membership.
    pub fn new(cluster: ClusterMembership) -> Self {
        Self { cluster }
    }

    /// Alive members carrying `tag`: either a key (`"gpu"`, any value) or
    /// `"key=value"`.
    pub async fn nodes_with_tag(&self, tag: &str) -> Vec<NodeInfo> {
        self.cluster
            .members()
            .into_iter()
            .filter(|n| n.status == NodeStatus::Alive && n.has_tag(tag))
            .collect()
    }

    /// Every member ever seen, any status.
    pub async fn nodes(&self) -> Vec<NodeInfo> {
        self.cluster.members()
    }

    /// The member at `addr`, if known.
    pub async fn node(&self, addr: SocketAddr) -> Option<NodeInfo> {
        self.cluster
            .members()
            .into_iter()
            .find(|n| n.addr() == addr)
    }
}

/// Phi Accrual health of every member. The detectors run inside the
/// membership: the heartbeats every `health_check_interval` make their
/// interval history, and any other packet from a member is a sign of life
/// that only moves the point silence is measured from. Their verdicts
/// (after `partition_grace` for a silence several members share) change
/// member status and emit `NodeFailed` / `NodeRecovered` events.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    cluster: ClusterMembership,
    threshold: f64,
}

impl HealthChecker {
    /// A health view of `cluster` using `config`'s φ threshold.
    pub fn new(cluster: ClusterMembership, config: ClusterConfig) -> Self {
        Self {
            cluster,
            threshold: config.phi.threshold,
        }
    }

    /// Checks that φ monitoring is on for this membership (it is by
    /// default; `ClusterConfig::with_phi_monitoring(false)` turns it off,
    /// and then this logs a warning, since only SWIM verdicts apply).
    pub async fn start(&self) {
        if !self.cluster.config().phi_monitoring {
            tracing::warn!("HealthChecker started on a membership without phi monitoring; only SWIM verdicts apply");
        }
    }

    /// φ of the member at `addr` when the snapshot was taken.
    pub fn phi(&self, addr: SocketAddr) -> Option<f64> {
        self.cluster
            .members()
            .into_iter()
            .find(|n| n.addr() == addr)
            .map(|n| n.phi)
    }

    /// Members whose φ is below the threshold and that are not failed.
    pub fn healthy(&self) -> Vec<NodeInfo> {
        self.cluster
            .members()
            .into_iter()
            .filter(|n| n.status == NodeStatus::Alive && n.phi < self.threshold)
            .collect()
    }
}
