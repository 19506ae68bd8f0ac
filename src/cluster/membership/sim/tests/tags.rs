//! Tags and graceful leave.

use super::*;

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
