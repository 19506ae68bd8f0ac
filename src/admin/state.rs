//! What the admin endpoint keeps between requests: the readiness phase,
//! a ring of recent membership events, and a ring of φ samples per member.

use crate::cluster::MemberAddr;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use super::metrics::event_kind;
use crate::cluster::{
    ClusterEvent, ClusterMembership, ClusterView, NodeStatus, WorkerRegistry, DRAINING_TAG,
};
use crate::sync::lock;

/// Milliseconds since the Unix epoch, the time base of every JSON document.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where a node stands, as the application tells its admin endpoint
/// (see [`AdminHandle::set_phase`](super::AdminHandle::set_phase)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Starting up or joining the cluster: `/ready` answers 503.
    Joining,
    /// Serving calls. `seedless`: the node started a cluster of its own
    /// (no seeds), so it is ready with no peer; a node that joined through
    /// seeds is ready while at least one other member is alive.
    Serving {
        /// Started without seeds.
        seedless: bool,
    },
    /// Shutting down or draining: `/ready` answers 503.
    Draining,
}

/// `/ready`'s verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Readiness {
    pub(crate) ready: bool,
    /// `serving`, `joining`, `draining` or `no live peer`.
    pub(crate) reason: &'static str,
}

/// One recorded membership event.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventRecord {
    /// Increases by one per event, from 1.
    pub(crate) seq: u64,
    /// When the admin endpoint received it (ms since the Unix epoch).
    pub(crate) at_ms: u64,
    /// `joined`, `left`, `failed`, `recovered`, `tags`, `partition`,
    /// `healed`, or `missed` (the reader fell behind; `text` says how far).
    pub(crate) kind: &'static str,
    /// The member it is about, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) addr: Option<MemberAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) generation: Option<u64>,
    /// The event's one-line form (`failed 127.0.0.1:7002 1733...`).
    pub(crate) text: String,
}

/// The recent events, newest last, with a counter long polls wait on.
pub(crate) struct EventLog {
    ring: Mutex<VecDeque<EventRecord>>,
    capacity: usize,
    latest: watch::Sender<u64>,
}

impl EventLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            latest: watch::channel(0).0,
        }
    }

    pub(crate) fn push_event(&self, event: &ClusterEvent) {
        let node = match event {
            ClusterEvent::NodeJoined { node, .. } | ClusterEvent::NodeTagsUpdated { node, .. } => {
                Some(*node)
            }
            ClusterEvent::NodeLeft(node)
            | ClusterEvent::NodeFailed(node)
            | ClusterEvent::NodeRecovered(node) => Some(*node),
            ClusterEvent::PartitionDetected { .. } | ClusterEvent::PartitionHealed => None,
        };
        self.push(
            event_kind(event),
            node.map(|n| n.addr),
            node.map(|n| n.generation),
            event.to_string(),
        );
    }

    pub(crate) fn push_missed(&self, missed: u64) {
        self.push("missed", None, None, format!("missed {missed} events"));
    }

    fn push(
        &self,
        kind: &'static str,
        addr: Option<MemberAddr>,
        generation: Option<u64>,
        text: String,
    ) {
        let mut ring = lock(&self.ring);
        let seq = *self.latest.borrow() + 1;
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(EventRecord {
            seq,
            at_ms: now_ms(),
            kind,
            addr,
            generation,
            text,
        });
        // Under the ring's lock, so sequence numbers follow ring order.
        self.latest.send_replace(seq);
    }

    /// Events with a sequence number above `after`, oldest first.
    pub(crate) fn after(&self, after: u64) -> Vec<EventRecord> {
        lock(&self.ring)
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect()
    }

    /// The newest sequence number (0 before any event).
    pub(crate) fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Waits up to `wait` for an event above `after`.
    pub(crate) async fn wait_after(&self, after: u64, wait: Duration) {
        let mut latest = self.latest.subscribe();
        let _ = tokio::time::timeout(wait, latest.wait_for(|seq| *seq > after)).await;
    }
}

/// φ of every member over the last minutes, one sample per interval.
pub(crate) struct PhiHistory {
    samples: Mutex<VecDeque<PhiSample>>,
    capacity: usize,
}

#[derive(Debug, Clone)]
struct PhiSample {
    at_ms: u64,
    points: Vec<(MemberAddr, f64, NodeStatus)>,
}

/// One member's φ series in `/history`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PhiSeries {
    pub(crate) addr: MemberAddr,
    /// `[at_ms, phi]` pairs, oldest first (φ capped at `f64::MAX`).
    pub(crate) points: Vec<(u64, f64)>,
    /// Its status in the newest sample.
    pub(crate) status: &'static str,
}

impl PhiHistory {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            samples: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
        }
    }

    /// Adds a sample of `view`: the newest generation at each address.
    pub(crate) fn push(&self, view: &ClusterView, at_ms: u64) {
        let mut points: Vec<(MemberAddr, f64, NodeStatus, u64)> = Vec::new();
        for m in &view.members {
            let phi = if m.phi > 0.0 {
                m.phi.min(f64::MAX)
            } else {
                0.0
            };
            match points.iter_mut().find(|p| p.0 == m.id.addr) {
                Some(p) if p.3 < m.id.generation => {
                    *p = (m.id.addr, phi, m.status, m.id.generation)
                }
                Some(_) => {}
                None => points.push((m.id.addr, phi, m.status, m.id.generation)),
            }
        }
        let mut samples = lock(&self.samples);
        if samples.len() == self.capacity {
            samples.pop_front();
        }
        samples.push_back(PhiSample {
            at_ms,
            points: points.into_iter().map(|(a, p, s, _)| (a, p, s)).collect(),
        });
    }

    /// Every member's series, by address.
    pub(crate) fn series(&self) -> Vec<PhiSeries> {
        let samples = lock(&self.samples);
        let mut series: Vec<PhiSeries> = Vec::new();
        for sample in samples.iter() {
            for &(addr, phi, status) in &sample.points {
                let name = crate::cluster::MemberReport::status_name(status);
                match series.iter_mut().find(|s| s.addr == addr) {
                    Some(s) => {
                        s.points.push((sample.at_ms, phi));
                        s.status = name;
                    }
                    None => series.push(PhiSeries {
                        addr,
                        points: vec![(sample.at_ms, phi)],
                        status: name,
                    }),
                }
            }
        }
        series.sort_by_key(|s| s.addr);
        series
    }
}

/// Everything the request handlers read.
pub(crate) struct AdminState {
    pub(crate) cluster: Option<ClusterMembership>,
    pub(crate) registry: Option<Arc<WorkerRegistry>>,
    pub(crate) phase: watch::Sender<Phase>,
    pub(crate) events: EventLog,
    pub(crate) history: PhiHistory,
    pub(crate) sample_interval: Duration,
    pub(crate) exporter: Option<&'static super::exporter::Exporter>,
}

impl AdminState {
    /// `/ready`'s verdict now.
    pub(crate) fn readiness(&self) -> Readiness {
        let phase = *self.phase.borrow();
        let view = self.cluster.as_ref().map(|c| c.view());
        let draining = view
            .as_ref()
            .and_then(|v| v.local.as_ref())
            .is_some_and(|l| l.tags.contains_key(DRAINING_TAG));
        let (ready, reason) = match phase {
            Phase::Joining => (false, "joining"),
            Phase::Draining => (false, "draining"),
            Phase::Serving { .. } if draining => (false, "draining"),
            Phase::Serving { seedless } => {
                let peer_alive = view
                    .as_ref()
                    .is_none_or(|v| v.members.iter().any(|m| m.status == NodeStatus::Alive));
                if seedless || peer_alive {
                    (true, "serving")
                } else {
                    (false, "no live peer")
                }
            }
        };
        Readiness { ready, reason }
    }
}
