//! The figures in docs/CLUSTER.md (`cargo test --release --lib cluster_report -- --ignored --nocapture`).

use super::*;

/// The `q` quantile of `v` (nearest rank), sorting `v`.
fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The figures in docs/CLUSTER.md:
/// `cargo test --release --lib cluster_report -- --ignored --nocapture`
#[test]
#[ignore]
fn cluster_report() {
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
        (1000, true, 1),
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
pub(super) fn detection_samples(c: &ClusterConfig, kills: u64) -> Vec<f64> {
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

/// φ on the heartbeat ring at 10, 100 and 1,000 members (10,000 with
/// `RPCNET_SCALE_10K=1`): convergence, gossip bytes per node, detection
/// over 20 kills, false verdicts at 5% loss (docs/CLUSTER.md, "Scale").
/// `cargo test --release --lib scale_report -- --ignored --nocapture`
#[test]
#[ignore]
fn scale_report() {
    let minutes: u64 = std::env::var("RPCNET_SCALE_LOSS_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(60);
    let mut sizes = vec![10, 100, 1000];
    if std::env::var("RPCNET_SCALE_10K").is_ok() {
        sizes.push(10_000);
    }
    println!("| nodes | convergence (s) | gossip B/node/s | detection p50 (s) | p99 (s) | max (s) | false verdicts, {minutes} min at 5% loss | sim wall time (s) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let wall = std::time::Instant::now();
        let mut sim = cluster(700, n, &config(n));
        let converged = sim
            .run_until(Duration::from_secs(300), STEP, Sim::converged)
            .unwrap_or_else(|| panic!("{n} nodes did not converge"));
        sim.run_for(Duration::from_secs(60));
        let before = sim.bytes_sent();
        sim.run_for(Duration::from_secs(60));
        let rate = (sim.bytes_sent() - before) as f64 / 60.0 / n as f64;
        eprintln!(
            "{n}: converged in {converged:?}, {rate:.0} B/node/s, {:?} wall",
            wall.elapsed()
        );
        // 20 kills. Ten members: one kill in each of 20 seeded clusters
        // (`detection_samples`). Larger: 20 members killed one after
        // another in this cluster, 15 s apart (SWIM declares each down and
        // the ring re-forms before the next).
        let mut samples = if n <= 20 {
            detection_samples(&config(n), 20)
        } else {
            (0..20)
                .map(|k| {
                    let victim = 1 + (k * 7919) % (n - 1);
                    let took = kill_and_time(&mut sim, victim).as_secs_f64();
                    sim.run_for(Duration::from_secs(15));
                    took
                })
                .collect()
        };
        eprintln!("{n}: kills {samples:?}, {:?} wall", wall.elapsed());
        // False verdicts: `NodeFailed` about a member that is running,
        // counted once per (subject, observer) pair.
        let mark = sim.now;
        sim.loss = 0.05;
        sim.run_for(Duration::from_secs(60 * minutes));
        sim.loss = 0.0;
        let running: Vec<NodeId> = sim.running().map(|(_, c)| c.id()).collect();
        let mut false_reports = 0;
        let mut subjects = std::collections::HashSet::new();
        for node in &sim.nodes {
            for (at, e) in &node.events {
                if let ClusterEvent::NodeFailed(id) = e {
                    if *at >= mark && running.contains(id) {
                        false_reports += 1;
                        subjects.insert(id.addr);
                    }
                }
            }
        }
        println!(
            "| {n} | {:.1} | {rate:.0} | {:.2} | {:.2} | {:.2} | {} ({false_reports} reports) | {:.0} |",
            converged.as_secs_f64(),
            pct(&mut samples, 0.5),
            pct(&mut samples, 0.99),
            pct(&mut samples, 1.0),
            subjects.len(),
            wall.elapsed().as_secs_f64(),
        );
    }
}

/// The gossip connection figures in docs/CLUSTER.md ("Gossip
/// connections"): every node's connection pool modelled under several
/// retention policies at once, fed the same packets.
/// `cargo test --release --lib connection_report -- --ignored --nocapture`
#[test]
#[ignore]
fn connection_report() {
    let minute = Duration::from_secs(60);
    let default = ClusterConfig::default();
    let policies = [
        ("kept open, no bound", usize::MAX, Duration::MAX),
        ("no bound, closed after 60 s idle", usize::MAX, minute),
        (
            "128, closed after 60 s idle (default)",
            default.gossip_max_connections,
            default.gossip_idle_timeout,
        ),
        ("64, closed after 60 s idle", 64, minute),
        ("32, closed after 60 s idle", 32, minute),
    ];
    let window = Duration::from_secs(240);
    println!(
        "Steady state, {} s after convergence plus a minute; connections per node \
         (mean / max) and connections opened per node per second over the window.",
        window.as_secs()
    );
    println!();
    println!(
        "| members | policy | dialed (outbound) | dialed by peers (inbound) | opened / node / s |"
    );
    println!("|---:|---|---:|---:|---:|");
    for n in [10, 100, 200, 1000] {
        let wall = std::time::Instant::now();
        let mut sim = cluster(900, n, &config(n));
        sim.links = policies
            .iter()
            .map(|(_, max, idle)| LinkModel::new(*max, *idle))
            .collect();
        sim.run_until(Duration::from_secs(300), STEP, Sim::converged)
            .unwrap_or_else(|| panic!("{n} nodes did not converge"));
        sim.run_for(minute);
        let before: Vec<u64> = sim.links.iter().map(|m| m.opened).collect();
        sim.run_for(window);
        for ((name, ..), (model, before)) in policies.iter().zip(sim.links.iter().zip(before)) {
            let out: Vec<usize> = (0..n).map(|i| model.outbound(i)).collect();
            let inb: Vec<usize> = (0..n).map(|i| model.inbound(i)).collect();
            let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / n as f64;
            let max = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
            println!(
                "| {n} | {name} | {:.1} / {} | {:.1} / {} | {:.2} |",
                mean(&out),
                max(&out),
                mean(&inb),
                max(&inb),
                (model.opened - before) as f64 / window.as_secs_f64() / n as f64,
            );
        }
        eprintln!("{n}: {:?} wall", wall.elapsed());
    }
}
