//! The heartbeat ring where it matters (more members than
//! `phi_monitors + 1`): heartbeat load per node that does not grow with
//! the cluster, and verdicts that every member learns from a subject's
//! monitors and follows when they are taken back or stop counting.

use super::*;
use crate::cluster::membership::ring::Ring;

/// Gossip payload bytes per node per second over `secs`, after a minute
/// of steady state.
fn steady_rate(seed: u64, n: usize, secs: u64) -> f64 {
    let (mut sim, _) = converge(seed, n, true);
    sim.run_for(60 * SEC);
    let before = sim.bytes_sent();
    sim.run_for(Duration::from_secs(secs));
    (sim.bytes_sent() - before) as f64 / secs as f64 / n as f64
}

/// The index of a monitor of `subject` (its first successor on the ring).
fn a_monitor_of(n: usize, subject: usize) -> usize {
    let mut ring = Ring::default();
    (0..n).for_each(|i| ring.insert(addr(i)));
    let monitor = ring.successors(&addr(subject), 1)[0];
    (0..n).find(|&i| addr(i) == monitor).unwrap()
}

/// Thirty converged members in which `subject`'s packets to one of its
/// monitors are dropped from 5 s on; returns once every other member holds
/// it failed (the time that took) and the monitor.
fn one_monitor_cut_off(seed: u64, subject: usize) -> (Sim, usize, Duration) {
    let n = 30;
    let (mut sim, _) = converge(seed, n, true);
    sim.run_for(5 * SEC);
    let monitor = a_monitor_of(n, subject);
    sim.cut.insert((subject, monitor));
    let failed = sim
        .run_until(10 * SEC, STEP, |s| {
            everyone_else_sees(s, subject, NodeStatus::Failed)
        })
        .expect("one monitor's verdict reached every member");
    (sim, monitor, failed)
}

fn everyone_else_sees(sim: &Sim, subject: usize, status: NodeStatus) -> bool {
    sim.running()
        .filter(|&(i, _)| i != subject)
        .all(|(i, _)| sim.status_of(i, subject) == Some(status))
}

/// All-to-all heartbeats cost 24·(n − 1) B/node/s: 263 at 10 nodes, 1,230
/// at 50. On the ring each node heartbeats `phi_monitors` members.
#[test]
fn heartbeat_load_per_node_does_not_grow_with_the_cluster() {
    let small = steady_rate(31, 10, 60);
    let large = steady_rate(32, 60, 60);
    assert!(
        large < 1.5 * small,
        "10 nodes: {small:.0} B/node/s, 60 nodes: {large:.0} B/node/s"
    );
}

/// Only a kill's monitors judge it; every other member learns the verdict
/// by gossip, within the same 4 s bound.
#[test]
fn in_fifty_members_a_kill_is_failed_everywhere_within_4_s() {
    let n = 50;
    for seed in 0..3u64 {
        let (mut sim, _) = converge(610 + seed, n, true);
        sim.run_for(5 * SEC);
        let took = kill_and_time(&mut sim, 1 + seed as usize * 13);
        assert!(took <= 4 * SEC, "seed {seed}: detection took {took:?}");
    }
}

/// One monitor that stops hearing a member holds it unreachable for
/// everyone (Akka's rule: unreachable while any observer says so); when
/// the monitor hears it again, every member takes it back.
#[test]
fn one_monitors_verdict_reaches_everyone_and_is_taken_back_when_it_hears_again() {
    let subject = 7;
    let (mut sim, _, failed) = one_monitor_cut_off(620, subject);
    assert!(failed <= 5 * SEC, "took {failed:?}");
    sim.cut.clear();
    let back = sim
        .run_until(10 * SEC, STEP, |s| {
            everyone_else_sees(s, subject, NodeStatus::Alive)
        })
        .expect("the verdict was taken back everywhere");
    assert!(back <= 2 * SEC, "took {back:?}");
    for (i, _) in sim.running().filter(|&(i, _)| i != subject) {
        assert!(
            sim.nodes[i].events.iter().any(
                |(_, e)| matches!(e, ClusterEvent::NodeRecovered(id) if id.addr == addr(subject))
            ),
            "node {i} reported no recovery"
        );
    }
}

/// A verdict whose observer is then declared down stops counting: the
/// subject, alive all along, recovers everywhere.
#[test]
fn a_verdict_stops_counting_when_its_observer_is_declared_down() {
    let subject = 11;
    let (mut sim, monitor, _) = one_monitor_cut_off(630, subject);
    sim.kill(monitor);
    // Until SWIM declares the monitor down, its verdict holds.
    sim.run_for(4 * SEC);
    assert!(everyone_else_sees(&sim, subject, NodeStatus::Failed));
    sim.run_until(60 * SEC, STEP, |s| {
        everyone_else_sees(s, subject, NodeStatus::Alive)
    })
    .expect("recovered once its only observer was declared down");
    for (i, core) in sim.running().filter(|&(i, _)| i != subject) {
        assert!(
            core.peer(&addr(monitor)).is_some_and(|p| p.swim_down),
            "node {i} let the verdict go before SWIM declared its observer down"
        );
    }
}

/// A member stopped for 6 s (past φ, short of SWIM's suspicion timeout)
/// is failed by every member through its monitors' verdicts, and
/// recovered by all once it resumes.
#[test]
fn a_long_pause_fails_and_then_recovers_a_member_everywhere() {
    let n = 40;
    let (mut sim, _) = converge(640, n, true);
    sim.run_for(5 * SEC);
    let subject = 17;
    let life = seen_by(&sim, 0, &addr(subject));
    sim.pause(subject, 6 * SEC);
    sim.run_until(6 * SEC, STEP, |s| {
        everyone_else_sees(s, subject, NodeStatus::Failed)
    })
    .expect("failed everywhere during the pause");
    sim.run_until(10 * SEC, STEP, |s| {
        everyone_else_sees(s, subject, NodeStatus::Alive)
    })
    .expect("recovered everywhere after it");
    // The same life came back (no renewal), and everyone said so.
    for (i, _) in sim.running().filter(|&(i, _)| i != subject) {
        assert_eq!(seen_by(&sim, i, &addr(subject)), life, "node {i}");
        assert!(
            sim.nodes[i]
                .events
                .iter()
                .any(|(_, e)| matches!(e, ClusterEvent::NodeRecovered(id) if *id == life)),
            "node {i} reported no recovery"
        );
    }
}

/// Kills re-form the ring: when SWIM takes a dead member off it, the
/// members after it gain a subject, one they may have watched long ago.
/// A heartbeat from back then must not arm their judgement (it did: a
/// live member failed everywhere about 5 s after the kills).
#[test]
fn members_re_forming_the_ring_after_kills_judge_no_live_member() {
    let n = 60;
    let (mut sim, _) = converge(650, n, true);
    sim.run_for(30 * SEC);
    let mark = sim.now;
    for k in 0..12 {
        sim.kill(1 + (k * 7919) % (n - 1));
        sim.run_for(8 * SEC);
    }
    sim.run_for(30 * SEC);
    let running: Vec<MemberAddr> = sim.running().map(|(i, _)| addr(i)).collect();
    for (i, node) in sim.nodes.iter().enumerate() {
        for (at, e) in &node.events {
            if let ClusterEvent::NodeFailed(id) = e {
                assert!(
                    *at < mark || !running.contains(&id.addr),
                    "node {i} reported live {id} failed at {at:?}"
                );
            }
        }
    }
}

/// A member that missed a verdict's retraction (it heard nothing for a
/// few seconds, longer than the retraction's retransmissions lasted) is
/// told again: observers repeat their recent verdicts every
/// `tag_refresh_interval`, so no member holds a live member failed for good.
#[test]
fn a_member_that_missed_a_retraction_learns_it_at_the_next_refresh() {
    let (n, subject) = (30, 5);
    let (mut sim, monitor, _) = one_monitor_cut_off(660, subject);
    let deaf = (0..n).find(|&i| i != subject && i != monitor).unwrap();
    // `deaf` hears nothing while the monitor takes its verdict back.
    sim.cut
        .extend((0..n).filter(|&i| i != deaf).map(|i| (i, deaf)));
    sim.cut.remove(&(subject, monitor));
    sim.run_for(4 * SEC);
    sim.cut.clear();
    sim.run_for(2 * SEC);
    assert_eq!(
        sim.status_of(deaf, subject),
        Some(NodeStatus::Failed),
        "the retraction's retransmissions should have been spent while it was deaf"
    );
    let refresh = ClusterConfig::default().tag_refresh_interval;
    sim.run_until(refresh + 5 * SEC, STEP, |s| {
        s.status_of(deaf, subject) == Some(NodeStatus::Alive)
    })
    .expect("the deaf member learned the retraction");
}
