//! The read-only membership query: a unary method, [`MEMBERS_METHOD`], on
//! every node's RPC endpoint that answers the node's current view as a
//! [`MembershipReport`] in JSON.
//!
//! Any client the node's TLS accepts may call it: one that only trusts the
//! cluster CA (no client certificate) as well as a member. Membership is
//! not secret inside the CA's trust domain (every member already learns it
//! through gossip), and the method can only read: it changes nothing, and
//! taking part in membership still requires a member certificate (see
//! [`GOSSIP_METHOD`](super::GOSSIP_METHOD)). `rpcnet members` and
//! `rpcnet health` read it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::view::{ClusterView, NodeInfo};
use crate::cluster::{NodeStatus, Tags};
use crate::{RpcError, ServerHandle};

/// The method that answers this node's view of the membership.
pub const MEMBERS_METHOD: &str = "rpcnet.cluster/members";

/// The version of [`MembershipReport`]'s encoding. Fields may be added
/// within a version (readers ignore fields they do not know); a field
/// removed or whose meaning changes moves the version.
pub const MEMBERSHIP_REPORT_VERSION: u32 = 1;

/// A node's view of the membership, as [`MEMBERS_METHOD`] answers it (JSON).
///
/// ```json
/// {"version":1,"local":{"addr":"127.0.0.1:7000","generation":1733000000000,"status":"alive",
///   "tags":{"role":"worker"},"phi":0.0},"members":[...],"local_health":0,"phi_threshold":8.0}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipReport {
    /// [`MEMBERSHIP_REPORT_VERSION`] of the encoding.
    pub version: u32,
    /// The answering node itself (`None` only before its membership started).
    pub local: Option<MemberReport>,
    /// Every other member it has seen, any status, by address.
    pub members: Vec<MemberReport>,
    /// Its Lifeguard local health score (0 = healthy, up to 8).
    pub local_health: u32,
    /// The φ above which it judges a member failed.
    pub phi_threshold: f64,
}

/// One member in a [`MembershipReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    /// Its RPC (and gossip) address.
    pub addr: crate::cluster::MemberAddr,
    /// Its generation (grows on every restart).
    pub generation: u64,
    /// `alive`, `suspect`, `failed` or `left`, as the answering node sees it.
    pub status: String,
    /// Its tags.
    pub tags: Tags,
    /// Its φ as the answering node computes it, at least 0 (0 for the node
    /// itself and for members it does not monitor on the heartbeat ring). An infinite φ (silent for far longer than its history allows) is
    /// reported as `f64::MAX`, since JSON has no infinity.
    pub phi: f64,
}

impl MemberReport {
    /// The lower-case name of a status, as reports spell it: `alive`,
    /// `suspect`, `failed` or `left`.
    pub fn status_name(status: NodeStatus) -> &'static str {
        match status {
            NodeStatus::Alive => "alive",
            NodeStatus::Suspect => "suspect",
            NodeStatus::Failed => "failed",
            NodeStatus::Left => "left",
        }
    }

    /// The report of `node`.
    pub fn from_info(node: &NodeInfo) -> Self {
        Self {
            addr: node.id.addr,
            generation: node.id.generation,
            status: Self::status_name(node.status).to_owned(),
            tags: node.tags.clone(),
            // NaN and −0 (log10 of exactly 1) read as 0.
            phi: if node.phi > 0.0 {
                node.phi.min(f64::MAX)
            } else {
                0.0
            },
        }
    }
}

impl MembershipReport {
    /// The report of `view`, with `phi_threshold` the node's φ threshold.
    pub fn from_view(view: &ClusterView, phi_threshold: f64) -> Self {
        Self {
            version: MEMBERSHIP_REPORT_VERSION,
            local: view.local.as_ref().map(MemberReport::from_info),
            members: view.members.iter().map(MemberReport::from_info).collect(),
            local_health: view.local_health,
            phi_threshold,
        }
    }

    /// Decodes an answer of [`MEMBERS_METHOD`].
    ///
    /// # Errors
    /// [`RpcError::ProtocolError`] when the answer is not such a report.
    pub fn decode(json: &[u8]) -> Result<Self, RpcError> {
        serde_json::from_slice(json)
            .map_err(|e| RpcError::ProtocolError(format!("not a membership report: {e}")))
    }

    /// The JSON encoding.
    pub fn encode(&self) -> Vec<u8> {
        // A report holds only strings, numbers and maps with string keys:
        // encoding cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Registers [`MEMBERS_METHOD`] on `server`, answering from `view`. The
/// request's payload is ignored (send it empty).
pub(super) fn serve(
    server: &ServerHandle,
    view: watch::Receiver<Arc<ClusterView>>,
    phi_threshold: f64,
) {
    // rpcnet's own method: the application's layers do not wrap it.
    server.register_internal(MEMBERS_METHOD, move |_request| {
        let view = view.borrow().clone();
        async move { Ok(MembershipReport::from_view(&view, phi_threshold).encode()) }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::NodeId;

    fn info(port: u16, status: NodeStatus, phi: f64) -> NodeInfo {
        NodeInfo {
            id: NodeId::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)), 7),
            status,
            tags: [("role".to_string(), "worker".to_string())]
                .into_iter()
                .collect(),
            phi,
        }
    }

    #[test]
    fn a_report_round_trips_and_spells_statuses_and_infinite_phi() {
        let view = ClusterView {
            local: Some(info(1, NodeStatus::Alive, 0.0)),
            members: vec![
                info(2, NodeStatus::Suspect, 1.5),
                info(3, NodeStatus::Failed, f64::INFINITY),
                info(4, NodeStatus::Left, f64::NAN),
            ],
            local_health: 2,
        };
        let report = MembershipReport::from_view(&view, 8.0);
        let json = report.encode();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.starts_with("{\"version\":1,"), "{text}");
        assert!(text.contains("\"status\":\"suspect\""), "{text}");
        let back = MembershipReport::decode(&json).unwrap();
        assert_eq!(back, report);
        let statuses: Vec<&str> = back.members.iter().map(|m| m.status.as_str()).collect();
        assert_eq!(statuses, ["suspect", "failed", "left"]);
        assert_eq!(back.members[1].phi, f64::MAX);
        assert_eq!(back.members[2].phi, 0.0);
        assert_eq!(back.local.unwrap().tags["role"], "worker");
        assert!(MembershipReport::decode(b"[1,2]").is_err());
    }
}
