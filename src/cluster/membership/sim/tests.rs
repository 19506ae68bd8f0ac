//! The cluster's behaviour, specified as deterministic simulations.

use std::time::Duration;

use super::*;

const SEC: Duration = Duration::from_secs(1);
const STEP: Duration = Duration::from_millis(100);

fn config(n: usize) -> ClusterConfig {
    ClusterConfig::default().with_expected_cluster_size(n as u32)
}

fn converge(seed: u64, n: usize, phi: bool) -> (Sim, Duration) {
    let mut sim = cluster(seed, n, &config(n).with_phi_monitoring(phi));
    let took = sim
        .run_until(Duration::from_secs(120), STEP, Sim::converged)
        .unwrap_or_else(|| panic!("{n} nodes did not converge in 120 s"));
    (sim, took)
}

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

/// Kills `victim`; returns how long (to 10 ms) until every other running
/// node had marked it failed. Panics if that takes over 60 s.
fn kill_and_time(sim: &mut Sim, victim: usize) -> Duration {
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
fn detect_kill(seed: u64, n: usize, victim: usize) -> Duration {
    let (mut sim, _) = converge(seed, n, true);
    sim.run_for(5 * SEC);
    kill_and_time(&mut sim, victim)
}

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

/// A 2|3 partition shorter than `partition_grace`
/// gives no verdict on either side, although one member's silence of the
/// same length would (φ alone: about 3 s).
#[test]
fn a_five_second_two_three_partition_causes_no_verdict_anywhere() {
    let n = 5;
    for seed in 0..5u64 {
        let (mut sim, _) = converge(60 + seed, n, true);
        sim.run_for(10 * SEC);
        sim.partition = Some(vec![0, 0, 1, 1, 1]);
        sim.run_for(5 * SEC);
        sim.partition = None;
        sim.run_for(30 * SEC);
        for i in 0..n {
            assert!(
                verdicts_by(&sim, i).is_empty(),
                "seed {seed}, node {i}: {:?}",
                sim.nodes[i].events
            );
        }
    }
}

/// After a healed 5 s partition the cluster judges a single kill as fast
/// as before it: the partition's silence is not an interval sample, and
/// the shared-silence marks are gone once the members are heard again.
#[test]
fn a_kill_after_a_healed_five_second_partition_is_judged_within_4_s() {
    let n = 5;
    for seed in 0..5u64 {
        let (mut sim, _) = converge(80 + seed, n, true);
        sim.run_for(10 * SEC);
        sim.partition = Some(vec![0, 0, 1, 1, 1]);
        sim.run_for(5 * SEC);
        sim.partition = None;
        sim.run_for(10 * SEC);
        let took = kill_and_time(&mut sim, 1 + seed as usize % (n - 1));
        assert!(took <= 4 * SEC, "seed {seed}: detection took {took:?}");
    }
}

/// After a long 2|3 partition each side holds the other down and tells it
/// so when the network is back; a member that hears it renews its
/// identity, after which foca drops what is addressed to the old identity
/// and has cancelled its own timers. When every member renewed before any
/// heard another's new identity, nobody spoke again: 1 seed in 200 (31
/// here, before the fix). Renewals now announce themselves.
#[test]
fn a_long_partition_heals_whatever_the_order_of_renewals() {
    let n = 5;
    for seed in 0..40u64 {
        let (mut sim, _) = converge(seed, n, true);
        sim.partition = Some(vec![0, 0, 1, 1, 1]);
        sim.run_for(Duration::from_secs(120));
        sim.partition = None;
        assert!(
            sim.run_until(Duration::from_secs(60), STEP, Sim::converged)
                .is_some(),
            "seed {seed}: the cluster did not heal within 60 s"
        );
    }
}

/// Lifeguard's buddy system, its guards: a current member's suspicion makes
/// the suspect refute (a higher incarnation everywhere), once per
/// incarnation; a suspicion sent under another member's name, by a
/// non-member, about someone else, or at the highest incarnation changes
/// nothing.
#[test]
fn only_a_members_current_suspicion_makes_a_node_refute() {
    let n = 3;
    let (mut sim, _) = converge(90, n, true);
    sim.run_for(5 * SEC);
    let id = |sim: &Sim, i: usize| sim.nodes[i].core.as_ref().unwrap().id();
    let (a, b, c) = (id(&sim, 0), id(&sim, 1), id(&sim, 2));
    let incarnation_at_0 = |sim: &Sim| {
        sim.nodes[0]
            .core
            .as_ref()
            .unwrap()
            .incarnation_of(&c.addr)
            .expect("node 2 is a member")
    };
    assert_eq!(incarnation_at_0(&sim), 0);
    let outsider = NodeId::new(addr(9), 1);
    let ignored = [
        // Node 1 speaking for node 0 (its credential covers only itself).
        (b.addr, MembershipCore::suspicion_packet(a, c, 0)),
        // Not a member.
        (
            outsider.addr,
            MembershipCore::suspicion_packet(outsider, c, 0),
        ),
        // About someone else.
        (b.addr, MembershipCore::suspicion_packet(b, a, 0)),
        // The highest incarnation (foca would renew the identity).
        (b.addr, MembershipCore::suspicion_packet(b, c, u16::MAX)),
    ];
    for (credential, packet) in ignored {
        sim.inject(credential, 2, packet);
    }
    sim.run_for(3 * SEC);
    assert_eq!(incarnation_at_0(&sim), 0, "a guard let a suspicion through");
    assert_eq!(id(&sim, 2), c, "node 2 renewed its identity");
    // A member's genuine suspicion: refuted; the same news again: not again.
    sim.inject(b.addr, 2, MembershipCore::suspicion_packet(b, c, 0));
    sim.inject(a.addr, 2, MembershipCore::suspicion_packet(a, c, 0));
    sim.run_until(Duration::from_secs(10), STEP, |s| incarnation_at_0(s) == 1)
        .expect("node 2 refuted");
    sim.run_for(3 * SEC);
    assert_eq!(incarnation_at_0(&sim), 1, "refuted twice for one suspicion");
    assert_eq!(id(&sim, 2), c);
    let refutations = |sim: &Sim| sim.nodes[2].core.as_ref().unwrap().stats.refutations;
    assert_eq!(
        refutations(&sim),
        1,
        "one suspicion, two notices: one refutation"
    );
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
fn a_two_three_partition_of_120_s_heals_on_its_own() {
    let n = 5;
    let (mut sim, _) = converge(31, n, true);
    sim.partition = Some(vec![0, 0, 1, 1, 1]);
    sim.run_for(Duration::from_secs(120));
    // Each side has declared the other side unreachable...
    assert_eq!(sim.status_of(0, 3), Some(NodeStatus::Failed));
    assert_eq!(sim.status_of(3, 0), Some(NodeStatus::Failed));
    for i in 0..n {
        assert!(
            sim.nodes[i]
                .events
                .iter()
                .any(|(_, e)| matches!(e, ClusterEvent::PartitionDetected { .. })),
            "node {i} did not detect the partition"
        );
    }
    // ...and after the network heals, so does the cluster, without restarts.
    sim.partition = None;
    let took = sim.run_until(Duration::from_secs(120), STEP, Sim::converged);
    if took.is_none() {
        for i in 0..n {
            let c = sim.nodes[i].core.as_ref().unwrap();
            eprintln!(
                "node {i} id {} peers {:?}",
                c.id(),
                c.peers()
                    .map(|p| (p.id.to_string(), p.status))
                    .collect::<Vec<_>>()
            );
        }
    }
    let took = took.expect("partition did not heal within 120 s");
    assert!(took <= Duration::from_secs(60), "healing took {took:?}");
    // Partition state is evaluated on each health-check tick.
    sim.run_for(2 * SEC);
    for i in 0..n {
        assert!(
            sim.nodes[i]
                .events
                .iter()
                .any(|(_, e)| matches!(e, ClusterEvent::PartitionHealed)),
            "node {i} did not report the partition healed"
        );
    }
}

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

/// Whether every node but `subject` reported a `NodeJoined` for `subject`
/// with a generation above `above`.
fn all_saw_join(sim: &Sim, subject: usize, above: u64) -> bool {
    sim.running().filter(|&(i, _)| i != subject).all(|(i, _)| {
        sim.nodes[i].events.iter().any(|(_, e)| {
            matches!(e, ClusterEvent::NodeJoined { node, .. }
                if node.addr == addr(subject) && node.generation > above)
        })
    })
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
    let mut fake = MembershipCore::new(
        NodeId::new(victim.addr, victim.generation + 100),
        config(n).with_tag("role", "evil"),
        9,
        sim.now,
    );
    fake.join(addr(0), sim.now);
    let announce = fake.drain_sends().remove(0).1;
    let mut forged_tags =
        MembershipCore::new(victim, config(n).with_tag("role", "evil"), 9, sim.now);
    let heartbeat = forged_tags.heartbeat_packet();
    let _ = forged_tags.drain_sends();
    sim.inject(addr(2), 0, announce.clone());
    sim.inject(addr(2), 0, heartbeat.clone());
    sim.run_for(2 * SEC);
    let seen = |sim: &Sim| {
        sim.nodes[0]
            .core
            .as_ref()
            .unwrap()
            .peer(&victim.addr)
            .unwrap()
            .id
    };
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

fn tag_events(sim: &Sim, observer: usize) -> usize {
    sim.nodes[observer]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, ClusterEvent::NodeTagsUpdated { .. }))
        .count()
}

#[test]
fn tag_events_mean_changed_tags() {
    let n = 5;
    let (mut sim, _) = converge(45, n, true);
    // No one has tags; several refresh intervals pass.
    sim.run_for(3 * ClusterConfig::default().tag_refresh_interval);
    for i in 0..n {
        assert_eq!(
            tag_events(&sim, i),
            0,
            "node {i}: {:?}",
            sim.nodes[i].events
        );
    }
    // One change: one event at every other node, and refreshes add none.
    sim.with_core(1, |c, now| c.set_tag("role".into(), "worker".into(), now));
    sim.run_for(3 * ClusterConfig::default().tag_refresh_interval);
    for i in (0..n).filter(|&i| i != 1) {
        assert_eq!(
            tag_events(&sim, i),
            1,
            "node {i}: {:?}",
            sim.nodes[i].events
        );
    }
    // Setting the same value again is no change either.
    sim.with_core(1, |c, now| c.set_tag("role".into(), "worker".into(), now));
    sim.with_core(1, |c, now| c.remove_tag("role", now));
    sim.run_for(10 * SEC);
    for i in (0..n).filter(|&i| i != 1) {
        assert_eq!(
            tag_events(&sim, i),
            2,
            "node {i}: {:?}",
            sim.nodes[i].events
        );
    }
}

fn verdicts_by(sim: &Sim, observer: usize) -> Vec<&ClusterEvent> {
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

#[test]
fn tags_reach_every_node() {
    let n = 20;
    let (mut sim, _) = converge(51, n, true);
    sim.with_core(7, |c, now| c.set_tag("role".into(), "worker".into(), now));
    sim.with_core(7, |c, now| {
        c.set_tag("label".into(), "worker-a".into(), now)
    });
    let id = sim.nodes[7].core.as_ref().unwrap().id();
    let spread = sim.run_until(Duration::from_secs(30), STEP, |s| {
        s.running().all(|(_, c)| {
            c.tags_of(&id).is_some_and(|t| {
                t.get("role").map(String::as_str) == Some("worker")
                    && t.get("label").map(String::as_str) == Some("worker-a")
            })
        })
    });
    if spread.is_none() {
        for (i, c) in sim.running() {
            eprintln!("node {i} sees {:?}", c.tags_of(&id));
        }
    }
    spread.expect("tags spread to every node");
    // A node that joins later learns them too.
    let late = sim.add(config(n + 1));
    sim.join(late, 3);
    sim.run_until(Duration::from_secs(60), STEP, |s| {
        s.nodes[late]
            .core
            .as_ref()
            .unwrap()
            .tags_of(&id)
            .is_some_and(|t| t.contains_key("role"))
    })
    .expect("late joiner learned existing tags");
}

#[test]
fn tags_given_at_start_are_known_on_join() {
    let mut sim = Sim::new(61);
    sim.add(config(3));
    sim.add(config(3).with_tag("gpu", "true"));
    sim.add(config(3));
    sim.join(1, 0);
    sim.join(2, 0);
    let id = sim.nodes[1].core.as_ref().unwrap().id();
    sim.run_until(Duration::from_secs(30), STEP, |s| {
        [0, 2].iter().all(|&i| {
            s.nodes[i]
                .core
                .as_ref()
                .unwrap()
                .tags_of(&id)
                .is_some_and(|t| t.contains_key("gpu"))
        })
    })
    .expect("start tags spread");
}

#[test]
fn graceful_leave_is_reported_as_left_not_failed() {
    let n = 6;
    let (mut sim, _) = converge(71, n, true);
    sim.with_core(2, |c, now| c.announce_leaving(now));
    sim.run_for(2 * SEC);
    sim.with_core(2, |c, now| c.leave(now));
    sim.run_for(SEC);
    sim.kill(2);
    sim.run_until(Duration::from_secs(30), STEP, |s| {
        (0..n)
            .filter(|&i| i != 2)
            .all(|i| s.status_of(i, 2) == Some(NodeStatus::Left))
    })
    .expect("everyone saw the departure");
    assert_eq!(sim.failed_reports(2), 0);
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

/// The figures in docs/CLUSTER.md:
/// `cargo test --release --lib cluster_report -- --ignored --nocapture`
#[test]
#[ignore]
fn cluster_report() {
    fn pct(v: &mut [f64], q: f64) -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() - 1) as f64 * q).round() as usize]
    }
    println!("| nodes | φ monitoring | convergence (s, median of 3 seeds) | gossip bytes / node / s (steady state) |");
    println!("|---:|---|---:|---:|");
    let shapes = [
        (10, false, 3),
        (50, false, 3),
        (200, false, 3),
        (1000, false, 1),
        (10, true, 3),
        (50, true, 3),
        (200, true, 1),
    ];
    for (n, phi, seeds) in shapes {
        let mut times = Vec::new();
        let mut rate = 0.0;
        for seed in 0..seeds {
            let mut sim = cluster(100 + seed, n, &config(n).with_phi_monitoring(phi));
            let took = sim
                .run_until(Duration::from_secs(300), STEP, Sim::converged)
                .unwrap_or_else(|| panic!("{n} nodes did not converge"));
            times.push(took.as_secs_f64());
            if seed == 0 {
                // Past the joins' dissemination and several tag refreshes.
                sim.run_for(Duration::from_secs(60));
                let before = sim.bytes_sent();
                sim.run_for(Duration::from_secs(120));
                rate = (sim.bytes_sent() - before) as f64 / 120.0 / n as f64;
            }
        }
        println!(
            "| {n} | {} | {:.1} | {:.0} |",
            if phi { "on" } else { "off" },
            pct(&mut times, 0.5),
            rate
        );
    }
    println!();
    let default = ClusterConfig::default();
    println!(
        "Default configuration (health check {:?}, acceptable pause {:?}, φ threshold {}):",
        default.health_check_interval, default.phi.acceptable_pause, default.phi.threshold
    );
    println!();
    println!("| detection of a killed node by every other node (10 nodes, 20 kills) | p50 (s) | p99 (s) | max (s) |");
    println!("|---|---:|---:|---:|");
    for phi in [true, false] {
        let mut samples = detection_samples(&default.clone().with_phi_monitoring(phi), 20);
        let label = if phi {
            "φ monitoring on (φ verdicts, SWIM confirms)"
        } else {
            "SWIM only"
        };
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} |",
            pct(&mut samples, 0.5),
            pct(&mut samples, 0.99),
            pct(&mut samples, 1.0)
        );
    }
    println!();
    println!("| 10 nodes, 5% random loss, 20 seeds × 1 simulated hour | φ on | SWIM only |");
    println!("|---|---:|---:|");
    let mut rows = [[0usize; 2]; 3];
    for (col, phi) in [true, false].into_iter().enumerate() {
        let (reports, hours, renewals) =
            false_verdicts(&default.clone().with_phi_monitoring(phi), 20);
        rows[0][col] = reports;
        rows[1][col] = hours;
        rows[2][col] = renewals;
    }
    println!(
        "| false `NodeFailed` reports (all observers) | {} | {} |",
        rows[0][0], rows[0][1]
    );
    println!(
        "| hours with any false report | {} of 20 | {} of 20 |",
        rows[1][0], rows[1][1]
    );
    println!(
        "| identity renewals after being told \"you are down\" | {} | {} |",
        rows[2][0], rows[2][1]
    );
    println!();
    println!(
        "2 s pauses (SIGSTOP) of one of 10 nodes, 20 seeds: verdicts anywhere: {}",
        pause_verdicts(&default, Duration::from_secs(2), 20)
    );
    println!();
    println!("Trade-off (φ on; 10 nodes; detection over 20 kills; false reports over 5 simulated hours at 5% loss; verdicts from 20 pauses of 2 s):");
    println!();
    println!("| health check | acceptable pause | detection p50 (s) | p99 (s) | false reports / 5 h | 2 s pause verdicts |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for hc in [Duration::from_millis(500), Duration::from_secs(1)] {
        for pause_ms in [1000u64, 1500, 2000, 3000, 5000] {
            let mut c = ClusterConfig {
                health_check_interval: hc,
                ..ClusterConfig::default()
            };
            c.phi.acceptable_pause = Duration::from_millis(pause_ms);
            let mut samples = detection_samples(&c, 20);
            let (reports, _, _) = false_verdicts(&c, 5);
            println!(
                "| {hc:?} | {:?} | {:.1} | {:.1} | {reports} | {} |",
                c.phi.acceptable_pause,
                pct(&mut samples, 0.5),
                pct(&mut samples, 0.99),
                pause_verdicts(&c, Duration::from_secs(2), 20)
            );
        }
    }
}

/// Seconds until every other node of 10 marked a killed node failed, one sample per seed.
fn detection_samples(c: &ClusterConfig, kills: u64) -> Vec<f64> {
    (0..kills)
        .map(|seed| {
            let n = 10;
            let mut sim = cluster(200 + seed, n, c);
            sim.run_until(Duration::from_secs(120), STEP, Sim::converged)
                .unwrap();
            sim.run_for(Duration::from_secs(5));
            kill_and_time(&mut sim, 1 + (seed as usize % (n - 1))).as_secs_f64()
        })
        .collect()
}

/// (false `NodeFailed` reports, hours with any, renewals) over `hours`
/// seeded simulated hours of 10 nodes at 5% loss.
fn false_verdicts(c: &ClusterConfig, hours: u64) -> (usize, usize, usize) {
    let (mut reports, mut bad_hours, mut renewals) = (0, 0, 0);
    for seed in 0..hours {
        let n = 10;
        let mut sim = cluster(300 + seed, n, c);
        sim.run_until(Duration::from_secs(120), STEP, Sim::converged)
            .unwrap();
        sim.loss = 0.05;
        sim.run_for(Duration::from_secs(3600));
        let r: usize = (0..n).map(|s| sim.failed_reports(s)).sum();
        reports += r;
        bad_hours += usize::from(r > 0);
        renewals += sim
            .running()
            .map(|(_, c)| c.stats.renewals as usize)
            .sum::<usize>();
    }
    (reports, bad_hours, renewals)
}

/// `NodeFailed` and `PartitionDetected` events anywhere after one node of
/// 10 is paused for `pause`, over `trials` seeds.
fn pause_verdicts(c: &ClusterConfig, pause: Duration, trials: u64) -> usize {
    (0..trials)
        .map(|seed| {
            let n = 10;
            let mut sim = cluster(400 + seed, n, c);
            sim.run_until(Duration::from_secs(120), STEP, Sim::converged)
                .unwrap();
            sim.run_for(Duration::from_secs(10));
            sim.pause(1 + seed as usize % (n - 1), pause);
            sim.run_for(Duration::from_secs(30));
            (0..n).map(|i| verdicts_by(&sim, i).len()).sum::<usize>()
        })
        .sum()
}
