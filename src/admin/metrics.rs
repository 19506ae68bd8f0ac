//! What the admin endpoint measures, through the [`metrics`] facade.
//!
//! Names follow OpenTelemetry's style (dotted, lower case, the unit kept
//! out of the name); the Prometheus recorder the admin endpoint installs
//! translates them as Prometheus expects (dots to underscores, `_total` on
//! counters), so `rpcnet.cluster.events` is scraped as
//! `rpcnet_cluster_events_total`. `docs/OPERATIONS.md` lists every metric.
//!
//! The functions here record one sample; [`AdminServer`](super::AdminServer)
//! calls them from its own tasks (the view every sample interval, each event
//! as it arrives). An application with a recorder of its own can call them
//! too. With no recorder installed every call is a no-op.

use metrics::{counter, describe_counter, describe_gauge, gauge};

use crate::cluster::{ClusterEvent, ClusterView, NodeStatus, WorkerState, WorkerStatus};

/// Gauge: members by status as this node sees them, this node included
/// (label `state`: `alive`, `suspect`, `failed`, `left`).
pub const CLUSTER_MEMBERS: &str = "rpcnet.cluster.members";
/// Gauge: φ of each other member as this node computes it (label `peer`:
/// its address; the newest generation seen at that address).
pub const CLUSTER_MEMBER_PHI: &str = "rpcnet.cluster.member.phi";
/// Gauge: this node's Lifeguard local health score (0 healthy, up to 8).
pub const CLUSTER_LOCAL_HEALTH: &str = "rpcnet.cluster.local_health";
/// Counter: membership events this node observed (label `kind`: `joined`,
/// `left`, `failed`, `recovered`, `tags`, `partition`, `healed`).
pub const CLUSTER_EVENTS: &str = "rpcnet.cluster.events";
/// Counter: membership events the admin endpoint missed because it fell
/// behind the event stream.
pub const CLUSTER_EVENTS_MISSED: &str = "rpcnet.cluster.events.missed";
/// Gauge: 1 while `/ready` answers 200, else 0.
pub const NODE_READY: &str = "rpcnet.node.ready";
/// Gauge: workers in an attached `WorkerRegistry`'s pool by rotation state
/// (label `state`: `available`, `suspect`, `draining`, `ejected`).
pub const ROUTING_WORKERS: &str = "rpcnet.routing.workers";
/// Gauge: calls in flight to each worker from an attached `WorkerRegistry`
/// (labels `worker`: its address; `label`: its `label` tag, or empty).
pub const ROUTING_WORKER_IN_FLIGHT: &str = "rpcnet.routing.worker.in_flight";

/// Registers the help text of every metric above with the current recorder.
pub fn describe() {
    crate::telemetry::describe();
    describe_gauge!(
        CLUSTER_MEMBERS,
        "Cluster members by status as this node sees them, this node included"
    );
    describe_gauge!(
        CLUSTER_MEMBER_PHI,
        "Phi accrual suspicion of each other member, as this node computes it"
    );
    describe_gauge!(
        CLUSTER_LOCAL_HEALTH,
        "Lifeguard local health score of this node (0 healthy, up to 8)"
    );
    describe_counter!(
        CLUSTER_EVENTS,
        "Membership events this node observed, by kind"
    );
    describe_counter!(
        CLUSTER_EVENTS_MISSED,
        "Membership events the admin endpoint missed because it fell behind"
    );
    describe_gauge!(NODE_READY, "1 while this node's /ready answers 200");
    describe_gauge!(
        ROUTING_WORKERS,
        "Workers in the attached registry's pool by rotation state"
    );
    describe_gauge!(
        ROUTING_WORKER_IN_FLIGHT,
        "Calls in flight to each worker from the attached registry"
    );
}

const STATES: [(NodeStatus, &str); 4] = [
    (NodeStatus::Alive, "alive"),
    (NodeStatus::Suspect, "suspect"),
    (NodeStatus::Failed, "failed"),
    (NodeStatus::Left, "left"),
];

/// Records `view`: members by status (every status, zeros included), φ per
/// peer address and the local health.
pub fn record_view(view: &ClusterView) {
    for (status, name) in STATES {
        let mut count = view.members.iter().filter(|m| m.status == status).count();
        if status == NodeStatus::Alive && view.local.is_some() {
            count += 1;
        }
        gauge!(CLUSTER_MEMBERS, "state" => name).set(count as f64);
    }
    // A restarted member appears once per generation: report the newest.
    let mut newest: Vec<&crate::cluster::NodeInfo> = Vec::with_capacity(view.members.len());
    for member in &view.members {
        match newest.iter_mut().find(|n| n.id.addr == member.id.addr) {
            Some(seen) if seen.id.generation < member.id.generation => *seen = member,
            Some(_) => {}
            None => newest.push(member),
        }
    }
    for member in newest {
        // NaN and −0 (log10 of exactly 1) read as 0; +Inf stays.
        let phi = if member.phi > 0.0 { member.phi } else { 0.0 };
        gauge!(CLUSTER_MEMBER_PHI, "peer" => member.id.addr.to_string()).set(phi);
    }
    gauge!(CLUSTER_LOCAL_HEALTH).set(f64::from(view.local_health));
}

/// The kind of `event` as metrics and the status page name it: `joined`,
/// `left`, `failed`, `recovered`, `tags`, `partition` or `healed`.
pub fn event_kind(event: &ClusterEvent) -> &'static str {
    match event {
        ClusterEvent::NodeJoined { .. } => "joined",
        ClusterEvent::NodeLeft(_) => "left",
        ClusterEvent::NodeFailed(_) => "failed",
        ClusterEvent::NodeRecovered(_) => "recovered",
        ClusterEvent::NodeTagsUpdated { .. } => "tags",
        ClusterEvent::PartitionDetected { .. } => "partition",
        ClusterEvent::PartitionHealed => "healed",
    }
}

/// Counts `event` by kind.
pub fn record_event(event: &ClusterEvent) {
    counter!(CLUSTER_EVENTS, "kind" => event_kind(event)).increment(1);
}

/// Counts `missed` events the reader fell behind on.
pub fn record_missed_events(missed: u64) {
    counter!(CLUSTER_EVENTS_MISSED).increment(missed);
}

/// Records whether the node is ready.
pub fn record_ready(ready: bool) {
    gauge!(NODE_READY).set(if ready { 1.0 } else { 0.0 });
}

/// The lower-case name of a rotation state, as metrics and `/members` spell it.
pub fn worker_state_name(state: WorkerState) -> &'static str {
    match state {
        WorkerState::Available => "available",
        WorkerState::Suspect => "suspect",
        WorkerState::Draining => "draining",
        WorkerState::Ejected => "ejected",
    }
}

/// Records a registry's workers: how many are in each rotation state
/// (zeros included) and the calls in flight to each.
pub fn record_workers(workers: &[WorkerStatus]) {
    for state in [
        WorkerState::Available,
        WorkerState::Suspect,
        WorkerState::Draining,
        WorkerState::Ejected,
    ] {
        let count = workers.iter().filter(|w| w.state == state).count();
        gauge!(ROUTING_WORKERS, "state" => worker_state_name(state)).set(count as f64);
    }
    for worker in workers {
        gauge!(
            ROUTING_WORKER_IN_FLIGHT,
            "worker" => worker.id.addr.to_string(),
            "label" => worker.label.clone().unwrap_or_default()
        )
        .set(worker.in_flight as f64);
    }
}
