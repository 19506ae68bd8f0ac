//! rpcnet-faults: the fault suite on real hosts.
//!
//! Starts real `rpcnet-node` processes in separate network namespaces
//! (one host each, joined by veth pairs and a bridge), injects faults with
//! nftables rules inside the hosts (random loss, partitions, one-way
//! partitions) and with signals (SIGSTOP/SIGCONT, SIGKILL), and checks what
//! every node reported against the targets in `docs/RELIABILITY.md`.
//!
//! ```text
//! rpcnet-faults [all|converge|kill|failover|rolling|hostile|pause|partition|foreign|names|loss]...
//!               [--short] [--report FILE]
//! rpcnet-faults clean
//! ```
//!
//! `--short` is the CI version (2 minutes of loss, a 30 s long partition,
//! a 15 s one-way partition, kill -9 detection asserted at 8 s instead of
//! 4 s for a loaded CI machine).
//! `clean` removes whatever an earlier run left behind (a run killed with
//! SIGKILL cannot clean up after itself); `.ci/run` calls it on exit.
//! Certificates are issued per run into a temporary directory (see `pki`).
//! Needs root and `ip netns`; installs nftables with apt-get when missing;
//! where that is impossible it prints `SKIPPED: <reason>` and exits 0.
//! Exits 1 when a target is missed. Every run cleans up its namespaces,
//! rules and processes, also when a scenario fails or the run is
//! interrupted (Ctrl+C, SIGTERM).

mod args;
mod hostile;
mod intruder;
mod load;
mod names;
mod net;
mod node;
mod pki;
mod scenarios;

use std::time::{Duration, Instant};

use scenarios::{Durations, Outcome};

const ALL: [&str; 10] = [
    "converge",
    "kill",
    "failover",
    "rolling",
    "hostile",
    "pause",
    "partition",
    "foreign",
    "names",
    "loss",
];

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let role = argv.first().map(String::as_str).unwrap_or("");
    if ["load", "serve", "probe", "attack", "gossip"].contains(&role) {
        let result = match role {
            "load" => load::main(&argv[1..]),
            "gossip" => intruder::main(&argv[1..]),
            _ => hostile::main(role, &argv[1..]),
        };
        if let Err(e) = result {
            eprintln!("{role}: {e}");
            std::process::exit(1);
        }
        return;
    }
    if role == "clean" {
        net::sweep();
        pki::sweep();
        return;
    }
    let mut names: Vec<String> = Vec::new();
    let mut short = false;
    let mut report: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--short" => short = true,
            "--report" => report = args.next(),
            "all" => names.extend(ALL.iter().map(|s| s.to_string())),
            s if ALL.contains(&s) => names.push(s.into()),
            other => {
                eprintln!("unknown argument {other}\nusage: rpcnet-faults [all|{}]... [--short] [--report FILE]", ALL.join("|"));
                std::process::exit(2);
            }
        }
    }
    if names.is_empty() {
        names.extend(ALL.iter().map(|s| s.to_string()));
    }
    if let Err(why) = net::preflight() {
        println!("SKIPPED: {why}");
        return;
    }
    let pki = match pki::Pki::issue() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    on_interrupt_clean_up(pki.dir().to_path_buf());
    let bins = match node::Binaries::locate(pki) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let durations = if short {
        Durations {
            loss: Duration::from_secs(120),
            long_partition: Duration::from_secs(30),
            one_way: Duration::from_secs(15),
            detection_bound: Duration::from_secs(8),
        }
    } else {
        Durations {
            loss: Duration::from_secs(600),
            long_partition: Duration::from_secs(120),
            one_way: Duration::from_secs(30),
            detection_bound: Duration::from_secs(4),
        }
    };

    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for name in &names {
        println!("== {name}");
        let scenario_started = Instant::now();
        let result = match name.as_str() {
            "converge" => scenarios::converge(&bins),
            "kill" => scenarios::kill(&bins, durations),
            "failover" => scenarios::failover(&bins, durations),
            "rolling" => scenarios::rolling(&bins),
            "hostile" => scenarios::hostile(&bins),
            "loss" => scenarios::loss(&bins, durations),
            "pause" => scenarios::pause(&bins),
            "partition" => scenarios::partition(&bins, durations),
            "foreign" => scenarios::foreign(&bins),
            "names" => names::names(&bins, durations),
            _ => unreachable!("checked above"),
        };
        println!("  ({name} took {} s)", scenario_started.elapsed().as_secs());
        match result {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                println!("  [FAIL] could not run: {e}");
                errors.push(format!("{name}: {e}"));
            }
        }
    }
    net::sweep();
    drop(bins);

    let checks = outcomes.iter().flat_map(|o| &o.checks);
    let failed = checks.clone().filter(|c| !c.ok).count() + errors.len();
    let passed = checks.filter(|c| c.ok).count();
    if let Some(path) = report {
        let command = format!(
            "cargo run --release -p rpcnet-faults -- {}{}",
            if names.len() == ALL.len() {
                "all".to_string()
            } else {
                names.join(" ")
            },
            if short { " --short" } else { "" }
        );
        let text = markdown(&outcomes, &errors, &command, started.elapsed());
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("could not write {path}: {e}");
        } else {
            println!("report written to {path}");
        }
    }
    println!("faults: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

fn markdown(outcomes: &[Outcome], errors: &[String], command: &str, took: Duration) -> String {
    let mut s = String::new();
    s.push_str("## Latest run\n\n");
    s.push_str(&format!("`{command}` ({} s)\n\n", took.as_secs()));
    for o in outcomes {
        s.push_str(&format!(
            "### {}\n\n{}\n\n| target | measured | met |\n|---|---|---|\n",
            o.name, o.setup
        ));
        for c in &o.checks {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                c.target,
                c.measured.replace('|', "/"),
                if c.ok { "yes" } else { "**no**" }
            ));
        }
        for (what, value) in &o.figures {
            s.push_str(&format!(
                "| {what} | {} | (figure) |\n",
                value.replace('|', "/")
            ));
        }
        s.push('\n');
    }
    for e in errors {
        s.push_str(&format!("- could not run: {e}\n"));
    }
    s
}

/// Ctrl+C or SIGTERM: remove the lab (namespaces, rules, the processes in
/// them) before exiting.
fn on_interrupt_clean_up(certificates: std::path::PathBuf) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("interrupted: cleaning up the lab");
        net::cleanup_live();
        net::sweep();
        let _ = std::fs::remove_dir_all(&certificates);
        std::process::exit(130);
    });
}
