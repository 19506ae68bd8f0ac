//! Lifeguard's local health (Dadgar, Phillips, Currey, 2018): members that
//! process messages slowly, with local health on and off over the same
//! seeds. The figures in docs/CLUSTER.md, "Local health (Lifeguard)":
//! `cargo test --release --lib local_health_report -- --ignored --nocapture`

use super::report::detection_samples;
use super::*;

/// The `NodeFailed` events of a run in which every member stayed alive:
/// all of them false.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct FalseVerdicts {
    /// About healthy members, reported by healthy members.
    pub healthy_by_healthy: usize,
    /// About healthy members, reported by the slow ones.
    pub healthy_by_slow: usize,
    /// About the slow members (by anyone).
    pub about_slow: usize,
    /// Identity renewals (live members told the cluster had declared them down).
    pub renewals: u64,
}

impl FalseVerdicts {
    fn about_healthy(&self) -> usize {
        self.healthy_by_healthy + self.healthy_by_slow
    }

    fn total(&self) -> usize {
        self.about_healthy() + self.about_slow
    }

    fn add(&mut self, other: Self) {
        self.healthy_by_healthy += other.healthy_by_healthy;
        self.healthy_by_slow += other.healthy_by_slow;
        self.about_slow += other.about_slow;
        self.renewals += other.renewals;
    }
}

/// `n` nodes converge and run 10 s; then the last `slow` of them handle
/// every packet they receive late, by a delay drawn per packet from
/// `delay`, for `duration`. Nobody is killed.
pub(super) fn slow_members(
    seed: u64,
    n: usize,
    config: &ClusterConfig,
    slow: usize,
    delay: (Duration, Duration),
    duration: Duration,
) -> FalseVerdicts {
    let mut sim = cluster(seed, n, config);
    sim.run_until(Duration::from_secs(120), STEP, Sim::converged)
        .expect("converged");
    sim.run_for(10 * SEC);
    let is_slow = |i: usize| i >= n - slow;
    for i in (0..n).filter(|&i| is_slow(i)) {
        sim.nodes[i].processing = Some(delay);
    }
    sim.run_for(duration);
    let mut verdicts = FalseVerdicts::default();
    for (observer, node) in sim.nodes.iter().enumerate() {
        for (_, event) in &node.events {
            let ClusterEvent::NodeFailed(id) = event else {
                continue;
            };
            let subject = (0..n).find(|&i| addr(i) == id.addr).expect("a member");
            match (is_slow(subject), is_slow(observer)) {
                (true, _) => verdicts.about_slow += 1,
                (false, false) => verdicts.healthy_by_healthy += 1,
                (false, true) => verdicts.healthy_by_slow += 1,
            }
        }
    }
    verdicts.renewals = sim.running().map(|(_, c)| c.stats.renewals).sum();
    verdicts
}

/// Sums `slow_members` over `seeds` (seeds 600, 601, ...).
fn over_seeds(
    config: &ClusterConfig,
    slow: usize,
    delay: (Duration, Duration),
    seeds: u64,
    duration: Duration,
) -> FalseVerdicts {
    let mut total = FalseVerdicts::default();
    for seed in 0..seeds {
        total.add(slow_members(600 + seed, 10, config, slow, delay, duration));
    }
    total
}

/// One of ten members handles its packets 4–12 s late (often longer than
/// the 6 s suspicion timeout): without local health it suspects healthy
/// members whose acks it reads too late and declares them down before it
/// reads their refutations, which every member then reports. With it, the
/// slow member's failed probes raise its local health, which stretches
/// its probe and suspicion timers until the acks and refutations it
/// handles late count again. Three seeds × 5 simulated minutes: false
/// verdicts 408 → 21 with φ on (359 → 10 about healthy members), 286 → 0
/// with SWIM alone. Before local health took effect (foca refused the
/// scaled configuration) the two runs were identical.
#[test]
fn members_that_handle_messages_slowly_cause_far_fewer_false_verdicts_with_local_health() {
    let delay = (Duration::from_secs(4), Duration::from_secs(12));
    let minutes = Duration::from_secs(300);
    for phi in [true, false] {
        let config = config(10).with_phi_monitoring(phi);
        let off = over_seeds(
            &config.clone().with_local_health_awareness(false),
            1,
            delay,
            3,
            minutes,
        );
        let on = over_seeds(
            &config.with_local_health_awareness(true),
            1,
            delay,
            3,
            minutes,
        );
        eprintln!("φ {phi}: local health off {off:?}, on {on:?}");
        assert!(
            off.about_healthy() >= 100,
            "φ {phi}: without local health the slow member should cause false verdicts: {off:?}"
        );
        assert!(
            on.about_healthy() * 10 <= off.about_healthy() && on.total() * 10 <= off.total(),
            "φ {phi}: local health on {on:?}, off {off:?}"
        );
    }
}

/// The figures in docs/CLUSTER.md, "Local health (Lifeguard)":
/// `cargo test --release --lib local_health_report -- --ignored --nocapture`
#[test]
#[ignore]
fn local_health_report() {
    let ms = Duration::from_millis;
    let (seeds, duration) = (5, Duration::from_secs(600));
    println!(
        "10 nodes, default configuration with expected_cluster_size 10 (suspicion timeout \
         {:?}); the last 1 or 3 handle each packet late by a delay drawn uniformly from the \
         range; {seeds} seeds × {} simulated minutes each; every member alive throughout: \
         every NodeFailed is false.",
        config(10).suspicion_timeout(),
        duration.as_secs() / 60
    );
    println!();
    println!("| φ | delay per packet | slow members | local health | false `NodeFailed` about healthy members (by healthy / by slow) | about slow members | renewals |");
    println!("|---|---|---:|---|---:|---:|---:|");
    for phi in [true, false] {
        for (lo, hi) in [(1000, 3000), (2000, 6000), (4000, 12000), (8000, 16000)] {
            for slow in [1, 3] {
                for lh in [false, true] {
                    let c = config(10)
                        .with_phi_monitoring(phi)
                        .with_local_health_awareness(lh);
                    let v = over_seeds(&c, slow, (ms(lo), ms(hi)), seeds, duration);
                    println!(
                        "| {} | {:.0}–{:.0} s | {slow} | {} | {} ({} / {}) | {} | {} |",
                        if phi { "on" } else { "off" },
                        lo as f64 / 1000.0,
                        hi as f64 / 1000.0,
                        if lh { "on" } else { "off" },
                        v.about_healthy(),
                        v.healthy_by_healthy,
                        v.healthy_by_slow,
                        v.about_slow,
                        v.renewals
                    );
                }
            }
        }
    }
    println!();
    println!("Detection of a killed node by every other node (10 nodes, 20 kills):");
    println!();
    println!("| φ | local health | p50 (s) | p99 (s) |");
    println!("|---|---|---:|---:|");
    for phi in [true, false] {
        for lh in [false, true] {
            let c = ClusterConfig::default()
                .with_phi_monitoring(phi)
                .with_local_health_awareness(lh);
            let mut samples = detection_samples(&c, 20);
            samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
            println!(
                "| {} | {} | {:.1} | {:.1} |",
                if phi { "on" } else { "off" },
                if lh { "on" } else { "off" },
                at(0.5),
                at(0.99)
            );
        }
    }
}
