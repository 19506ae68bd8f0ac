//! Convergence, determinism and bounded tables under churn.

use super::*;

#[test]
fn ten_nodes_converge() {
    let (sim, took) = converge(1, 10, true);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    for (i, core) in sim.running() {
        assert_eq!(core.peers().count(), 9, "node {i}");
    }
}

#[test]
fn fifty_nodes_converge() {
    let (_, took) = converge(2, 50, true);
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn two_hundred_nodes_converge() {
    let (_, took) = converge(3, 200, false);
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let (mut sim, took) = converge(seed, 10, true);
        // Loss, a kill and tags too: every random draw must repeat.
        sim.loss = 0.05;
        sim.with_core(3, |c, now| c.set_tag("role".into(), "worker".into(), now));
        sim.run_for(60 * SEC);
        sim.kill(5);
        sim.run_for(60 * SEC);
        let events: Vec<_> = sim.nodes.iter().map(|n| n.events.clone()).collect();
        (took, sim.delivered, sim.bytes_sent(), events)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn churning_through_ten_times_max_members_keeps_admitting_with_bounded_tables() {
    let max_members = 16;
    let mut config = config(8);
    config.max_members = max_members;
    config.forget_after = Duration::from_secs(20);
    let stable = 4;
    let mut sim = cluster(52, stable, &config);
    sim.run_until(Duration::from_secs(30), STEP, Sim::converged)
        .expect("converged");
    let mut largest = [0; 4];
    for round in 0..10 * max_members {
        let newcomer = sim.add(config.clone());
        sim.join(newcomer, round % stable);
        sim.run_until(Duration::from_secs(10), STEP, |s| {
            s.sees_alive(0, &[newcomer])
        })
        .unwrap_or_else(|| panic!("newcomer {round} (node {newcomer}) not admitted"));
        sim.run_for(4 * SEC);
        sim.kill(newcomer);
        let sizes = sim.nodes[0].core.as_ref().unwrap().table_sizes();
        for (l, s) in largest.iter_mut().zip(sizes) {
            *l = (*l).max(s);
        }
    }
    let [members, generations, tags, foca] = largest;
    assert!(members <= max_members, "member table reached {members}");
    assert!(tags <= max_members + 1, "tag book reached {tags}");
    assert!(foca <= max_members, "foca's member list reached {foca}");
    assert!(
        generations <= 4 * max_members,
        "generation memory reached {generations}"
    );
}
