//! Members named by DNS: they join through any address that reaches a
//! member, a rescheduled member is the same member's new life, and a
//! member speaks only for its own name.

use super::*;

fn name(i: usize) -> MemberAddr {
    MemberAddr::named(&format!("node-{i}.members.sim.svc"), 7000).unwrap()
}

/// `n` nodes named by DNS, each joining through `service`, an address
/// that reaches node 0 but is not the address node 0 advertises (a
/// Kubernetes service's IP, or node 0's pod IP).
fn named_cluster(seed: u64, n: usize) -> Sim {
    let mut sim = Sim::new(seed);
    for i in 0..n {
        sim.add_at(config(n), name(i));
    }
    let service: MemberAddr = "10.96.0.10:7000".parse().unwrap();
    sim.alias(service, 0);
    for i in 1..n {
        sim.join_via(i, service);
    }
    sim
}

#[test]
fn members_named_by_dns_join_through_a_service_address_and_converge() {
    let mut sim = named_cluster(61, 5);
    sim.run_until(Duration::from_secs(30), STEP, Sim::converged)
        .expect("five named members converge through the service address");
    let core = sim.nodes[3].core.as_ref().unwrap();
    let mut seen: Vec<String> = core.peers().map(|p| p.id.addr.to_string()).collect();
    seen.sort();
    assert_eq!(
        seen,
        [0, 1, 2, 4].map(|i| name(i).to_string()),
        "members are known by their names, not by the address joined through"
    );
}

#[test]
fn a_rescheduled_member_is_the_same_name_under_a_new_generation() {
    let n = 5;
    let mut sim = named_cluster(62, n);
    sim.run_until(Duration::from_secs(30), STEP, Sim::converged)
        .expect("converged");
    let old = sim.nodes[3].core.as_ref().unwrap().id();
    sim.kill(3);
    sim.run_until(Duration::from_secs(60), STEP, |s| {
        (0..n)
            .filter(|&i| i != 3)
            .all(|i| s.status_of(i, 3) == Some(NodeStatus::Failed))
    })
    .expect("the kill is detected");
    // The pod comes back under its name (with another IP, which only the
    // resolver knows) and joins through the service again.
    sim.restart(3, 0);
    sim.run_until(Duration::from_secs(30), STEP, Sim::converged)
        .expect("the new life is seen by every member");
    for i in (0..n).filter(|&i| i != 3) {
        let events = &sim.nodes[i].events;
        assert!(
            events
                .iter()
                .any(|(_, e)| matches!(e, ClusterEvent::NodeJoined { node, .. }
                if node.addr == name(3) && node.generation > old.generation)),
            "node {i} saw the new life join"
        );
        let peers = sim.nodes[i].core.as_ref().unwrap().peers().count();
        assert_eq!(peers, n - 1, "node {i}: one member per name, not two");
    }
}

#[test]
fn a_member_cannot_speak_for_another_members_name() {
    let n = 3;
    let mut sim = named_cluster(63, n);
    sim.run_until(Duration::from_secs(30), STEP, Sim::converged)
        .expect("converged");
    let victim = sim.nodes[1].core.as_ref().unwrap().id();
    let announce = later_life_announce(&sim, victim, n, name(0));
    // Node 2's credential names node 2 only (and an IP is never a name).
    for credential in [name(2), "10.0.0.2:7000".parse().unwrap()] {
        sim.inject(credential, 0, announce.clone());
    }
    sim.run_for(2 * SEC);
    let seen = |sim: &Sim| seen_by(sim, 0, &victim.addr);
    assert_eq!(seen(&sim), victim, "node 1 was replaced by a forgery");
    assert!(sim.nodes[0].core.as_ref().unwrap().stats.packets_forged >= 2);
    // Control: under a credential for node 1's name, the announce is taken.
    sim.inject(victim.addr, 0, announce);
    sim.run_for(2 * SEC);
    assert_ne!(
        seen(&sim),
        victim,
        "the control announce should have been accepted"
    );
}
