//! What the core knows about another member: its identity, status, φ
//! detector and the shared-silence mark.

use std::time::Duration;

use crate::cluster::membership::detector::PhiAccrualDetector;
use crate::cluster::{NodeId, NodeStatus, PhiConfig, Tags};

/// What the core knows about another member.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub id: NodeId,
    pub status: NodeStatus,
    pub detector: PhiAccrualDetector,
    /// SWIM (not only φ) has declared this identity down.
    pub swim_down: bool,
    /// The tags last reported in an event (`NodeJoined` or
    /// `NodeTagsUpdated`): the next event is due only when they change.
    pub reported_tags: Tags,
    /// When the status last became `Failed` or `Left` (a member SWIM
    /// declared down is forgotten `forget_after` later).
    pub since: Duration,
    /// The current silence is shared: this member and another have both
    /// been silent longer than an acceptable pause, their silences having
    /// begun within an acceptable pause of each other. That looks like the
    /// network's fault (a partition) more than like theirs, so φ's verdict
    /// waits for [`ClusterConfig::partition_grace`]. Cleared when heard from.
    pub shared_silence: bool,
    /// This node monitors it with φ (it is, or was when SWIM declared it
    /// down, one of this node's subjects on the heartbeat ring): its φ
    /// means something here.
    pub monitored: bool,
    /// It has heartbeated this node since it last became (or stopped
    /// being) one of its subjects: only then is it judged. Before, it may
    /// not know this node is its monitor (it has not heard of it, or of a
    /// member between them on the ring), and a heartbeat from an earlier
    /// time it was a subject says nothing about now. (On a ring of at most
    /// `phi_monitors + 1` members every member is judged from the moment
    /// it is known: see `all_to_all`.)
    pub armed: bool,
}

impl Peer {
    /// A new life of this member (or its return) is known at `now`: its φ
    /// history starts afresh from that sign of life, with no shared silence.
    pub(super) fn start_health(&mut self, phi: PhiConfig, now: Duration) {
        self.detector = PhiAccrualDetector::new(phi);
        self.detector.heard(now);
        self.shared_silence = false;
    }
}

/// How long `peer` has been silent at `now` (zero if never heard).
pub(super) fn silence(peer: &Peer, now: Duration) -> Duration {
    now.saturating_sub(peer.detector.last_seen().unwrap_or(now))
}
