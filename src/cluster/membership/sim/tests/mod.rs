//! The cluster's behaviour, specified as deterministic simulations.

mod connections;
mod convergence;
mod detection;
mod local_health;
mod names;
mod partitions;
mod pauses;
mod report;
mod restarts;
mod ring;
mod tags;

use std::time::Duration;

use super::*;

pub(super) const SEC: Duration = Duration::from_secs(1);
pub(super) const STEP: Duration = Duration::from_millis(100);

pub(super) fn config(n: usize) -> ClusterConfig {
    ClusterConfig::default().with_expected_cluster_size(n as u32)
}

pub(super) fn converge(seed: u64, n: usize, phi: bool) -> (Sim, Duration) {
    let mut sim = cluster(seed, n, &config(n).with_phi_monitoring(phi));
    let took = sim
        .run_until(Duration::from_secs(120), STEP, Sim::converged)
        .unwrap_or_else(|| panic!("{n} nodes did not converge in 120 s"));
    (sim, took)
}

/// Kills `victim`; returns how long (to 10 ms) until every other running
/// node had marked it failed. Panics if that takes over 60 s.
pub(super) fn kill_and_time(sim: &mut Sim, victim: usize) -> Duration {
    sim.kill(victim);
    let others: Vec<usize> = sim.running().map(|(i, _)| i).collect();
    sim.run_until(Duration::from_secs(60), Duration::from_millis(10), |s| {
        others
            .iter()
            .all(|&i| s.status_of(i, victim) == Some(NodeStatus::Failed))
    })
    .unwrap_or_else(|| panic!("kill of node {victim} not detected by everyone within 60 s"))
}

/// Kills one node of a converged cluster; returns how long until every
/// other node had marked it failed.
pub(super) fn detect_kill(seed: u64, n: usize, victim: usize) -> Duration {
    let (mut sim, _) = converge(seed, n, true);
    sim.run_for(5 * SEC);
    kill_and_time(&mut sim, victim)
}

/// A genuine announce of a later life of `victim` (generation + 100,
/// tagged `role=evil`), addressed to `to`: what an impostor would send.
pub(super) fn later_life_announce(sim: &Sim, victim: NodeId, n: usize, to: MemberAddr) -> Vec<u8> {
    let mut impostor = MembershipCore::new(
        NodeId::new(victim.addr, victim.generation + 100),
        config(n).with_tag("role", "evil"),
        9,
        sim.now,
    );
    impostor.join(to, sim.now);
    impostor.drain_sends().remove(0).1
}

/// The identity node `observer` holds for the member at `addr`.
pub(super) fn seen_by(sim: &Sim, observer: usize, addr: &MemberAddr) -> NodeId {
    sim.nodes[observer]
        .core
        .as_ref()
        .unwrap()
        .peer(addr)
        .unwrap()
        .id
}

/// Whether every node but `subject` reported a `NodeJoined` for `subject`
/// with a generation above `above`.
pub(super) fn all_saw_join(sim: &Sim, subject: usize, above: u64) -> bool {
    sim.running().filter(|&(i, _)| i != subject).all(|(i, _)| {
        sim.nodes[i].events.iter().any(|(_, e)| {
            matches!(e, ClusterEvent::NodeJoined { node, .. }
                if node.addr == addr(subject) && node.generation > above)
        })
    })
}

pub(super) fn tag_events(sim: &Sim, observer: usize) -> usize {
    sim.nodes[observer]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, ClusterEvent::NodeTagsUpdated { .. }))
        .count()
}

pub(super) fn verdicts_by(sim: &Sim, observer: usize) -> Vec<&ClusterEvent> {
    sim.nodes[observer]
        .events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| {
            matches!(
                e,
                ClusterEvent::NodeFailed(_) | ClusterEvent::PartitionDetected { .. }
            )
        })
        .collect()
}
