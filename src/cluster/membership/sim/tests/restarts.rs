//! Restarts and trust: new generations are seen, and a member speaks only for itself.

use super::*;

#[test]
fn a_restarted_node_comes_back_under_a_new_generation() {
    let n = 6;
    let (mut sim, _) = converge(41, n, true);
    sim.kill(5);
    sim.run_until(Duration::from_secs(60), STEP, |s| {
        (0..5).all(|i| s.status_of(i, 5) == Some(NodeStatus::Failed))
    })
    .expect("kill detected");
    sim.restart(5, 0);
    sim.run_until(Duration::from_secs(60), STEP, Sim::converged)
        .expect("restarted node rejoined");
    let generation = sim.nodes[5].core.as_ref().unwrap().id().generation;
    assert_eq!(generation, 2);
    for i in 0..5 {
        assert!(sim.nodes[i].events.iter().any(
            |(_, e)| matches!(e, ClusterEvent::NodeJoined { node, .. } if node.addr == addr(5) && node.generation == 2)
        ));
    }
}

#[test]
fn a_restart_faster_than_detection_is_reported_as_a_join() {
    let n = 5;
    let (mut sim, _) = converge(42, n, true);
    let old = sim.nodes[3].core.as_ref().unwrap().id().generation;
    sim.kill(3);
    sim.run_for(Duration::from_millis(300));
    sim.restart(3, 0);
    sim.run_until(Duration::from_secs(10), STEP, |s| all_saw_join(s, 3, old))
        .expect("every node saw the quick restart as a join");
    assert_eq!(sim.failed_reports(3), 0, "nobody had time to see it fail");
}

#[test]
fn five_restarts_under_lower_generations_are_each_seen_by_every_node() {
    // The worst case for a clock-based generation: every life starts
    // below the one before. The cluster tells the node, and it moves above.
    let n = 4;
    let (mut sim, _) = converge(43, n, true);
    let mut generation = 1_000_000;
    sim.kill(2);
    sim.restart_as(2, 0, generation);
    sim.run_until(Duration::from_secs(30), STEP, Sim::converged)
        .expect("converged");
    for restart in 0..5 {
        let before = sim.nodes[2].core.as_ref().unwrap().id().generation;
        sim.kill(2);
        sim.run_until(Duration::from_secs(30), STEP, |s| {
            (0..n)
                .filter(|&i| i != 2)
                .all(|i| s.status_of(i, 2) == Some(NodeStatus::Failed))
        })
        .expect("kill detected");
        generation -= 1000;
        sim.restart_as(2, 0, generation);
        sim.run_until(Duration::from_secs(5), STEP, |s| all_saw_join(s, 2, before))
            .unwrap_or_else(|| panic!("restart {restart} not seen by every node within 5 s"));
        let core = sim.nodes[2].core.as_ref().unwrap();
        assert!(core.id().generation > before);
        assert!(
            core.stats.generation_jumps + core.stats.renewals <= 2,
            "no renewal loop: {:?}",
            core.stats
        );
    }
}

#[test]
fn a_member_cannot_speak_for_another_address() {
    let n = 3;
    let (mut sim, _) = converge(44, n, true);
    let victim = sim.nodes[1].core.as_ref().unwrap().id();
    // Node 2's credential names only node 2's address. It announces a
    // later life of node 1 (which would replace it), and node 1's tags.
    let announce = later_life_announce(&sim, victim, n, addr(0));
    let mut forged_tags =
        MembershipCore::new(victim, config(n).with_tag("role", "evil"), 9, sim.now);
    let heartbeat = forged_tags.heartbeat_packet();
    let _ = forged_tags.drain_sends();
    sim.inject(addr(2), 0, announce.clone());
    sim.inject(addr(2), 0, heartbeat.clone());
    sim.run_for(2 * SEC);
    let seen = |sim: &Sim| seen_by(sim, 0, &victim.addr);
    assert_eq!(seen(&sim), victim, "node 1 was replaced by a forgery");
    let tags = sim.nodes[0].core.as_ref().unwrap().tags_of(&victim);
    assert!(
        !tags.unwrap_or_default().contains_key("role"),
        "forged tags accepted"
    );
    assert!(sim.nodes[0].core.as_ref().unwrap().stats.packets_forged >= 2);
    // Control: the same announce under a credential for node 1's address is taken.
    sim.inject(victim.addr, 0, announce);
    sim.run_for(2 * SEC);
    assert_ne!(
        seen(&sim),
        victim,
        "the control announce should have been accepted"
    );
}
