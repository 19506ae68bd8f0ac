//! Failure detection: kills judged within the bound, and no false verdict under loss.

use super::*;

/// Before `992b475` the first kill right after five nodes converged took 4.02 s
/// on real hosts (4.07 s here before the fix, 3.55 s worst now): a just-seen member's history held the
/// interval from "learned it is up" to its first heartbeat, and every
/// SWIM packet's arrival, which widened the distribution. Only periodic
/// heartbeats are samples now.
#[test]
fn a_member_killed_right_after_the_cluster_formed_is_failed_everywhere_within_4_s() {
    let n = 5;
    for seed in 0..20u64 {
        let mut sim = cluster(500 + seed, n, &config(n));
        sim.run_until(Duration::from_secs(120), STEP, Sim::converged)
            .expect("converged");
        let took = kill_and_time(&mut sim, 1 + (seed as usize % (n - 1)));
        assert!(took <= 4 * SEC, "seed {seed}: detection took {took:?}");
    }
}

#[test]
fn a_killed_node_is_marked_failed_by_every_other_node() {
    let took = detect_kill(11, 10, 4);
    // docs/CLUSTER.md: every other node within 4 s (φ, default configuration).
    let bound = 4 * SEC;
    assert!(took <= bound, "detection took {took:?}, bound {bound:?}");
}

#[test]
fn a_cluster_under_five_percent_loss_for_an_hour_stays_converged() {
    let n = 10;
    let (mut sim, _) = converge(21, n, true);
    sim.loss = 0.05;
    sim.run_for(Duration::from_secs(3600));
    sim.loss = 0.0;
    sim.run_until(Duration::from_secs(30), STEP, Sim::converged)
        .expect("converged after an hour of 5% loss");
}

/// No false verdict at 5% loss, on three seeded hours; `cluster_report` checks
/// 20 more hours with φ on and 20 with SWIM alone (docs/CLUSTER.md).
#[test]
fn no_live_node_is_marked_failed_at_five_percent_loss_in_three_seeded_hours() {
    let n = 10;
    for seed in 0..3 {
        let (mut sim, _) = converge(400 + seed, n, true);
        sim.loss = 0.05;
        sim.run_for(Duration::from_secs(3600));
        for subject in 0..n {
            assert_eq!(
                sim.failed_reports(subject),
                0,
                "seed {seed}: node {subject} falsely reported failed"
            );
        }
        // No live member was told it had been declared down (foca's
        // courtesy TurnUndead after a refuted suspicion is filtered).
        let renewals: u64 = sim.running().map(|(_, c)| c.stats.renewals).sum();
        assert_eq!(
            renewals, 0,
            "seed {seed}: live members renewed their identity"
        );
    }
}

/// Two members killed in the same second look like a partition from here:
/// their verdicts wait for `partition_grace`, then come everywhere.
#[test]
fn two_members_killed_together_are_failed_everywhere_after_the_partition_grace() {
    let n = 6;
    let (mut sim, _) = converge(70, n, true);
    sim.run_for(10 * SEC);
    sim.kill(2);
    sim.kill(4);
    let others = [0, 1, 3, 5];
    let all_failed = |s: &Sim| {
        others.iter().all(|&i| {
            s.status_of(i, 2) == Some(NodeStatus::Failed)
                && s.status_of(i, 4) == Some(NodeStatus::Failed)
        })
    };
    sim.run_for(5 * SEC);
    assert!(
        others.iter().all(|&i| verdicts_by(&sim, i).is_empty()),
        "a shared silence was judged before the grace ended"
    );
    let took = sim
        .run_until(
            Duration::from_secs(60),
            Duration::from_millis(10),
            all_failed,
        )
        .expect("both kills detected");
    let grace = ClusterConfig::default().partition_grace;
    assert!(
        5 * SEC + took <= grace + SEC,
        "detected after {:?}",
        5 * SEC + took
    );
}

/// A crash 1.5 s after another's is its own: the first is judged before
/// the second has been silent for an acceptable pause, and a member
/// already judged is not paired with, so each is failed in about 3.5 s.
#[test]
fn a_kill_a_second_and_a_half_after_another_is_judged_on_its_own() {
    let n = 6;
    let (mut sim, _) = converge(75, n, true);
    sim.run_for(10 * SEC);
    sim.kill(2);
    sim.run_for(Duration::from_millis(1500));
    let took = kill_and_time(&mut sim, 4);
    assert!(took <= 4 * SEC, "the second kill took {took:?}");
}

#[test]
fn phi_follows_a_member_and_rises_when_it_goes_silent() {
    let n = 4;
    let (mut sim, _) = converge(91, n, true);
    sim.run_for(20 * SEC);
    let phi = sim.nodes[0].core.as_ref().unwrap().phi(&addr(1)).unwrap();
    assert!(phi < 1.0, "phi of a live member is {phi}");
    sim.partition = Some(vec![0, 1, 0, 0]);
    sim.run_for(8 * SEC);
    let phi = sim.nodes[0].core.as_ref().unwrap().phi(&addr(1)).unwrap();
    assert!(phi > 8.0, "phi of a silent member is {phi}");
}
