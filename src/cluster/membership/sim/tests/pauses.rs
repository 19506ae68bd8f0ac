//! Pauses and slow members: no one is blamed for this node's own stalls.

use super::*;

#[test]
fn a_node_paused_for_eight_seconds_accuses_nobody_when_it_resumes() {
    for seed in [46, 47, 48] {
        let n = 4;
        let (mut sim, _) = converge(seed, n, true);
        sim.run_for(10 * SEC);
        sim.pause(2, 8 * SEC);
        sim.run_for(30 * SEC);
        assert!(
            verdicts_by(&sim, 2).is_empty(),
            "seed {seed}: the paused node accused: {:?}",
            verdicts_by(&sim, 2)
        );
        assert!(sim.nodes[2].core.as_ref().unwrap().stats.own_pauses > 0);
        // Others may have marked it failed; they see it back.
        sim.run_until(Duration::from_secs(30), STEP, Sim::converged)
            .expect("the cluster converges again");
    }
}

#[test]
fn a_two_second_pause_causes_no_verdict_anywhere() {
    for seed in [49, 50, 51] {
        let n = 4;
        let (mut sim, _) = converge(seed, n, true);
        sim.run_for(10 * SEC);
        sim.pause(1, 2 * SEC);
        sim.run_for(30 * SEC);
        for i in 0..n {
            assert!(
                verdicts_by(&sim, i).is_empty(),
                "seed {seed}, node {i}: {:?}",
                verdicts_by(&sim, i)
            );
        }
    }
}

#[test]
fn a_slow_node_raises_its_local_health_and_accuses_nobody() {
    let n = 6;
    let (mut sim, _) = converge(81, n, false);
    // Node 0's timers now run 600 ms late (an overloaded process).
    sim.nodes[0].slowness = Duration::from_millis(600);
    sim.run_for(Duration::from_secs(300));
    assert!(sim.nodes[0].core.as_ref().unwrap().local_health() > 0);
    for subject in 1..n {
        assert_eq!(
            sim.failed_reports(subject),
            0,
            "slow node accused node {subject}"
        );
    }
}
