//! Gossip connections as the transport's pool holds them: `LinkModel`
//! runs the transport's own retention policy on every packet a node sends.

use super::*;

/// The tag refresh goes to members in turn. When every member started its
/// turn at the first member in address order, each refresh round sent
/// every member's tags to the same three members, so they were the one
/// peer every member held a connection to (99 of 99 here, against 32 on
/// average).
#[test]
fn no_member_is_dialed_by_far_more_peers_than_the_average() {
    let n = 100;
    let bound = 32;
    let mut sim = cluster(31, n, &config(n));
    sim.links = vec![LinkModel::new(bound, Duration::from_secs(60))];
    sim.run_until(Duration::from_secs(60), STEP, Sim::converged)
        .expect("converged");
    sim.run_for(Duration::from_secs(60));
    // Three tag refresh intervals (30 s), sampled every 5 s.
    for _ in 0..18 {
        sim.run_for(5 * SEC);
        let model = &sim.links[0];
        let (most, who) = (0..n).map(|i| (model.inbound(i), i)).max().unwrap();
        let mean = (0..n).map(|i| model.outbound(i)).sum::<usize>() as f64 / n as f64;
        assert!(
            most <= 2 * bound,
            "at {:?} node {who} is dialed by {most} peers (the mean is {mean:.1})",
            sim.now
        );
    }
}
