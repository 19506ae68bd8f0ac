//! Scenario `names`: members known by DNS names, one of them behind NAT
//! on another port, a member rescheduled under its name at a new IP, and
//! what a certificate lets its holder speak for.
//!
//! Hosts 1-4 on the bridge and host 5 behind a NAT router (router
//! `rpcf-5` at `198.18.0.5`, forwarding UDP 7100 to `10.5.0.2:7000` in
//! `rpcf-5p`). Every process binds `0.0.0.0:7000` and advertises
//! `node-<i>.lab:7000` (node 5: `node-5.lab:7100`); every host resolves
//! the names through its own `/etc/netns/<ns>/hosts` (node-5.lab: the
//! router's address). Members: `rpcnet-node`s on hosts 1 and 2,
//! `rpcnet-worker`s on hosts 3 and 5, the harness's `load` role (a
//! `ClusterClient` calling `whoami` on `role=worker`) on host 4. Each
//! member has a certificate of its own that names its DNS name only
//! (`CertSpec::member(name, [name])`, issued with `CaDir`).
//!
//! In turn: the five converge, every member seeing the four others by
//! name; the client's calls reach both workers; the worker node-3.lab is
//! killed with SIGKILL (every other member marks it failed) and
//! rescheduled on a new host, `198.18.0.6`, with the same certificate
//! and name, every hosts file rewritten in place (every member sees it
//! join with a higher generation; the client's calls reach it again); a
//! node started as node-2.lab with node-4.lab's certificate is refused at
//! start; an intruder holding node-4.lab's certificate sends every member
//! a genuine announcement claiming node-2.lab (recorded from a membership
//! under that name with a certificate from another CA), which changes
//! nothing and is counted as forged; a node whose certificate names three
//! hosts warns at start; `CaDir` refuses two members for one name.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::net::Lab;
use crate::node::{any_verdict, event, run_to_exit, Binaries, Node};
use crate::pki::{Identity, NamesPki};
use crate::scenarios::{secs, summary, Durations, Outcome};

/// The port every process binds (and advertises, but for node 5).
const PORT: u16 = 7000;
/// The NAT router's port forwarded to node 5.
const NAT_PORT: u16 = 7100;
/// Where members serve their admin endpoint, inside their own host.
const ADMIN: &str = "127.0.0.1:9090";
/// The warning of a node whose certificate names several hosts.
const SHARED_WARNING: &str = "also speaks for other hosts";

fn name(i: u8) -> String {
    format!("node-{i}.lab")
}

fn lab_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, i)
}

fn listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], PORT))
}

/// `--listen 0.0.0.0:7000 --advertise <advertise>`, a `--seed` per seed,
/// the identity, the admin endpoint, then `extra`.
fn member_args(advertise: &str, seeds: &[String], id: &Identity, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--listen".to_string(),
        listen().to_string(),
        "--advertise".into(),
        advertise.into(),
    ];
    for s in seeds {
        args.extend(["--seed".into(), s.clone()]);
    }
    args.extend(id.args());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Starts `program` in `ns` as the member advertising `advertise`.
fn start(
    bins: &Binaries,
    ns: &str,
    program: &Path,
    advertise: &str,
    seeds: &[String],
    id: &Identity,
    extra: &[&str],
) -> Result<Node, String> {
    let mut args = member_args(advertise, seeds, id, extra);
    args.extend(["--admin".into(), ADMIN.into()]);
    Node::launch(bins, ns, program, &args, listen())
}

/// The generation in the last `EVENT joined <member> <generation>` line
/// `node` printed before `by`.
fn joined_generation(node: &Node, member: &str, by: Instant) -> Option<u64> {
    node.lines_between(by - Duration::from_secs(3600), by, event("joined", member))
        .last()?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Answers per worker label, from the load's last `BY` line before `by`.
fn answers(load: &Node, by: Instant) -> BTreeMap<String, u64> {
    load.lines_between(by - Duration::from_secs(3600), by, |l| l.starts_with("BY "))
        .last()
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn show(answers: &BTreeMap<String, u64>) -> String {
    if answers.is_empty() {
        return "none".into();
    }
    answers
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The membership counter `rpcnet_membership_gossip_forged_total` of the
/// member whose admin endpoint is in `ns` (0 before its first count).
fn forged(ns: &str) -> Option<u64> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sf", "--max-time", "3"])
        .arg(format!("http://{ADMIN}/metrics"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .find(|l| l.starts_with("rpcnet_membership_gossip_forged_total"))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .map_or(0, |v| v as u64),
    )
}

/// `line` without terminal colour codes, cut at `max` characters.
fn plain(line: &str, max: usize) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    let out = out.trim().to_string();
    if out.chars().count() > max {
        format!("{}…", out.chars().take(max).collect::<String>())
    } else {
        out
    }
}

/// Waits (bounded) until every one of `observers` printed an event
/// satisfying `pred` at or after `since`; returns the latest arrival, or
/// the observers that did not.
fn at_every(
    observers: &[&Node],
    since: Instant,
    within: Duration,
    pred: &dyn Fn(&str) -> bool,
) -> Result<Duration, Vec<String>> {
    let deadline = since + within;
    let mut last = Duration::ZERO;
    let mut missed = Vec::new();
    for o in observers {
        match o.wait_for(since, deadline, pred) {
            Some(at) => last = last.max(at.saturating_duration_since(since)),
            None => missed.push(o.member.clone()),
        }
    }
    if missed.is_empty() {
        Ok(last)
    } else {
        Err(missed)
    }
}

/// The scenario.
pub fn names(bins: &Binaries, d: Durations) -> Result<Outcome, String> {
    let mut out = Outcome::new(
        "names",
        "5 members known by DNS names: every process binds 0.0.0.0:7000 and advertises node-<i>.lab:7000, resolved per host \
         through /etc/netns/<ns>/hosts; node 5 sits behind a NAT router (DNAT 198.18.0.5:7100 -> 10.5.0.2:7000, masquerade out) \
         and advertises node-5.lab:7100; nodes on hosts 1-2, workers on hosts 3 and 5, a ClusterClient (whoami, role=worker) on \
         host 4; the worker node-3.lab killed with SIGKILL and rescheduled at 198.18.0.6 under its name; node-4.lab's \
         certificate used to speak for node-2.lab; a certificate naming three hosts",
    );
    let members: Vec<String> = (1..=5).map(name).collect();
    let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let shared = [name(7), name(8), name(9)];
    let shared_refs: Vec<&str> = shared.iter().map(String::as_str).collect();
    let pki: NamesPki = bins.pki.names(&member_refs, &shared_refs, &name(2))?;

    let mut lab = Lab::new(4)?;
    let nat = lab.add_nat_host(5, NAT_PORT, PORT)?;
    // Names as every host resolves them: node-5.lab is the router.
    let mut resolved: Vec<(Ipv4Addr, String)> = (1..=4).map(|i| (lab_ip(i), name(i))).collect();
    resolved.push((nat.router.ip, name(5)));
    resolved.push((lab_ip(7), name(7)));
    lab.write_hosts(&resolved)?;

    let seed = vec![format!("{}:{PORT}", name(1))];
    let advertised = |i: u8| format!("{}:{PORT}", name(i));
    let nat_advertised = format!("{}:{NAT_PORT}", name(5));
    let host_ns: Vec<String> = lab.hosts.iter().map(|h| h.ns.clone()).collect();
    let ns = |i: usize| host_ns[i - 1].clone();
    let n1 = start(
        bins,
        &ns(1),
        &bins.node,
        &advertised(1),
        &[],
        &pki.member(&name(1)),
        &[],
    )?;
    let n2 = start(
        bins,
        &ns(2),
        &bins.node,
        &advertised(2),
        &seed,
        &pki.member(&name(2)),
        &[],
    )?;
    let w3 = start(
        bins,
        &ns(3),
        &bins.worker,
        &advertised(3),
        &seed,
        &pki.member(&name(3)),
        &["--label", "host3"],
    )?;
    let w5 = start(
        bins,
        &nat.inside.ns,
        &bins.worker,
        &nat_advertised,
        &seed,
        &pki.member(&name(5)),
        &["--label", "host5-nat"],
    )?;
    let mut load_args = vec!["load".to_string()];
    load_args.extend(member_args(
        &advertised(4),
        &seed,
        &pki.member(&name(4)),
        &[
            "--method",
            "whoami",
            "--min-workers",
            "2",
            "--concurrency",
            "2",
            "--secs",
            "300",
        ],
    ));
    let load = Node::launch(bins, &ns(4), &bins.harness, &load_args, listen())?;
    let last_ready = Instant::now();

    // 1. Converged, by name.
    let all: [&Node; 5] = [&n1, &n2, &w3, &load, &w5];
    let since = last_ready - Duration::from_secs(60);
    let mut full = last_ready;
    for a in all {
        for b in all.iter().filter(|b| b.member != a.member) {
            let at = a
                .wait_for(
                    since,
                    last_ready + Duration::from_secs(30),
                    event("joined", &b.member),
                )
                .ok_or_else(|| format!("{} never saw {} join within 30 s", a.member, b.member))?;
            full = full.max(at);
        }
    }
    let took = full.saturating_duration_since(last_ready);
    let by_ip: Vec<String> = all
        .iter()
        .flat_map(|n| {
            n.lines_between(since, Instant::now(), |l| {
                l.starts_with("EVENT ")
                    && l.split_whitespace()
                        .nth(2)
                        .is_some_and(|a| a.parse::<SocketAddr>().is_ok())
            })
            .into_iter()
            .map(move |l| format!("{}: {l}", n.member))
        })
        .collect();
    let readies: Vec<&str> = all.iter().map(|n| n.member.as_str()).collect();
    out.check(
        "every member sees the four others joined, by name (bound 10 s); no member known by an IP address",
        format!(
            "{} after the last READY; members {}; events naming an IP address: {}",
            secs(took),
            readies.join(", "),
            summary(&by_ip)
        ),
        took <= Duration::from_secs(10) && by_ip.is_empty() && w5.member == nat_advertised,
    );

    // 2. Calls through ClusterClient reach both workers, node 5 through NAT.
    let go = load
        .wait_for(since, Instant::now() + Duration::from_secs(30), |l| {
            l.starts_with("GO ")
        })
        .ok_or("the load never had both workers in its pool (30 s)")?;
    sleep(Duration::from_secs(3).saturating_sub(go.elapsed()));
    let before_kill = answers(&load, Instant::now());
    let early_errors = load.lines_between(go, Instant::now(), |l| l.starts_with("ERR "));
    let reached = |label: &str| before_kill.get(label).copied().unwrap_or(0) > 0;
    out.check(
        "ClusterClient calls (whoami, role=worker) reach both workers, node-5.lab:7100 through the NAT",
        format!(
            "answers in the first {}: {}; failed calls {}",
            secs(go.elapsed()),
            show(&before_kill),
            early_errors.len()
        ),
        reached("host3") && reached("host5-nat") && early_errors.is_empty(),
    );

    // 3. kill -9 of the worker node-3.lab: failed at every other member.
    let node3 = advertised(3);
    let old_generation = joined_generation(&n1, &node3, Instant::now())
        .ok_or("node 1 never printed node-3.lab's generation")?;
    let survivors: [&Node; 4] = [&n1, &n2, &load, &w5];
    let killed = Instant::now();
    w3.kill();
    let detected = at_every(
        &survivors,
        killed,
        Duration::from_secs(20),
        &event("failed", &node3),
    );
    out.check(
        format!(
            "kill -9 of node-3.lab -> failed at every other member (target 4 s; asserted {})",
            secs(d.detection_bound)
        ),
        match &detected {
            Ok(worst) => secs(*worst),
            Err(missed) => format!("never within 20 s at {}", missed.join(", ")),
        },
        detected.is_ok_and(|worst| worst <= d.detection_bound),
    );

    // 4. Rescheduled under its name at a new IP.
    let moved = lab.add_host(6)?;
    resolved[2].0 = moved.ip;
    lab.write_hosts(&resolved)?;
    let restarted = Instant::now();
    let w3 = start(
        bins,
        &moved.ns,
        &bins.worker,
        &node3,
        &seed,
        &pki.member(&name(3)),
        &["--label", "host6"],
    )?;
    let higher = |l: &str| {
        event("joined", &node3)(l)
            && l.split_whitespace()
                .nth(3)
                .and_then(|g| g.parse::<u64>().ok())
                .is_some_and(|g| g > old_generation)
    };
    let rejoined = at_every(&survivors, restarted, Duration::from_secs(15), &higher);
    let new_generation = joined_generation(&n1, &node3, Instant::now());
    out.check(
        "node-3.lab restarted at 198.18.0.6 (same certificate and name; every hosts file rewritten in place): \
         every other member reports it joined with a higher generation (bound 15 s)",
        match &rejoined {
            Ok(worst) => format!(
                "yes, last after {}; generation {old_generation} -> {}",
                secs(*worst),
                new_generation.map_or("?".into(), |g| g.to_string())
            ),
            Err(missed) => format!("not within 15 s at {}", missed.join(", ")),
        },
        rejoined.is_ok(),
    );
    let back = load.wait_for(restarted, restarted + Duration::from_secs(15), |l| {
        l.starts_with("BY ") && l.contains("host6=")
    });
    let after_move = answers(&load, Instant::now());
    out.check(
        "ClusterClient calls reach it again at its new IP (bound 15 s)",
        match back {
            Some(at) => format!(
                "first answers from host6 within {} of its restart; answers so far: {}",
                secs(at - restarted),
                show(&after_move)
            ),
            None => format!("none within 15 s; answers so far: {}", show(&after_move)),
        },
        back.is_some(),
    );
    let (dnat, masquerade) = nat.flows();
    out.figure(
        "flows the NAT router translated so far (DNAT in to node 5, masquerade out)",
        format!("{dnat} in, {masquerade} out"),
    );
    let failed_calls = load.lines_between(go, Instant::now(), |l| l.starts_with("ERR "));
    out.figure(
        "failed whoami calls through the kill and the move (idempotent, retried on the other worker)",
        summary(&failed_calls),
    );

    // 5a. Started as node-2.lab with node-4.lab's certificate: refused.
    let impersonation = Instant::now();
    let node2 = advertised(2);
    let mut args = member_args(&node2, &seed, &pki.member(&name(4)), &[]);
    args[1] = format!("0.0.0.0:{}", PORT + 1);
    let refused = run_to_exit(bins, &ns(4), &bins.node, &args, Duration::from_secs(15))?;
    let said = refused
        .stderr
        .lines()
        .chain(refused.stdout.lines())
        .find(|l| l.contains("not a member certificate"))
        .map(|l| plain(l, 200));
    out.check(
        "a node started as node-2.lab:7000 with node-4.lab's certificate is refused at start",
        format!(
            "{} after {}: {}",
            refused
                .code
                .map_or("killed (no exit)".into(), |c| format!("exit {c}")),
            secs(refused.took),
            said.clone().unwrap_or_else(|| plain(&refused.stderr, 200))
        ),
        refused.code.is_some_and(|c| c != 0) && said.is_some(),
    );

    // 5b. Gossip claiming node-2.lab over node-4.lab's certificate.
    let admin_hosts: [(&str, String); 4] = [
        ("node-1", ns(1)),
        ("node-2", ns(2)),
        ("node-3", moved.ns.clone()),
        ("node-5", nat.inside.ns.clone()),
    ];
    let forged_before: Vec<Option<u64>> = admin_hosts.iter().map(|(_, ns)| forged(ns)).collect();
    let generation_of_2: Vec<Option<u64>> = [&n1, &w3, &load, &w5]
        .iter()
        .map(|n| joined_generation(n, &node2, Instant::now()))
        .collect();
    let own = pki.member(&name(4));
    let forge = pki.forged(&name(2));
    let mut args: Vec<String> = vec![
        "gossip".into(),
        "--listen".into(),
        format!("{}:{}", lab_ip(4), PORT + 10),
    ];
    args.extend(own.args());
    for (flag, value) in [
        ("--forge-cert", &forge.cert),
        ("--forge-key", &forge.key),
        ("--forge-ca", &forge.ca),
    ] {
        args.extend([flag.to_string(), value.display().to_string()]);
    }
    args.extend(["--forge-advertise".into(), node2.clone()]);
    for target in [
        advertised(1),
        advertised(2),
        advertised(3),
        advertised(4),
        nat_advertised.clone(),
    ] {
        args.extend(["--target".into(), target]);
    }
    let t0 = Instant::now();
    let intruder = Node::launch(
        bins,
        &ns(4),
        &bins.harness,
        &args,
        SocketAddr::from((lab_ip(4), PORT + 10)),
    )?;
    let gossip = intruder
        .wait_for(t0, t0 + Duration::from_secs(30), |l| {
            l.starts_with("GOSSIP ")
        })
        .and_then(|_| {
            intruder
                .lines_between(t0, Instant::now() + Duration::from_secs(1), |l| {
                    l.starts_with("GOSSIP ")
                })
                .pop()
        });
    let sent = intruder.lines_between(t0, Instant::now(), |l| l.starts_with("SENT "));
    drop(intruder);
    // Time for a wrongly admitted announcement to show, and for the
    // counters to be exported (every health-check tick).
    sleep(Duration::from_secs(3));
    let forged_after: Vec<Option<u64>> = admin_hosts.iter().map(|(_, ns)| forged(ns)).collect();
    let observers: [&Node; 4] = [&n1, &w3, &load, &w5];
    let about_2: Vec<String> = observers
        .iter()
        .chain(std::iter::once(&&n2))
        .flat_map(|n| {
            n.lines_between(impersonation, Instant::now(), |l| {
                l.starts_with("EVENT ") && l.contains(&node2)
            })
            .into_iter()
            .map(move |l| format!("{}: {l}", n.member))
        })
        .collect();
    let generation_after: Vec<Option<u64>> = observers
        .iter()
        .map(|n| joined_generation(n, &node2, Instant::now()))
        .collect();
    let same_generation = generation_of_2.iter().all(|g| g.is_some())
        && generation_of_2.iter().all(|g| *g == generation_of_2[0])
        && generation_after == generation_of_2;
    let deltas: Vec<String> = admin_hosts
        .iter()
        .zip(forged_before.iter().zip(&forged_after))
        .map(|((who, _), (b, a))| match (b, a) {
            (Some(b), Some(a)) => format!("{who} +{}", a.saturating_sub(*b)),
            _ => format!("{who} unreadable"),
        })
        .collect();
    let all_counted = forged_before
        .iter()
        .zip(&forged_after)
        .all(|(b, a)| matches!((b, a), (Some(b), Some(a)) if a > b));
    let accepted = sent.iter().filter(|l| l.contains(" join accepted")).count();
    out.check(
        "announcements claiming node-2.lab:7000 (genuine, from a recorder under that name) sent to every member over \
         node-4.lab's certificate change nothing: node-2.lab keeps its generation everywhere, no event about it (target 0), \
         each member drops them as forged",
        format!(
            "{}; events about node-2.lab: {}; node-2.lab's generation at nodes 1, 3, 4, 5: {} before and after; \
             joins delivered at the RPC layer {accepted} of 5; counted as forged: {}",
            gossip.as_deref().map_or("the intruder did not finish within 30 s", |_| "sent"),
            summary(&about_2),
            generation_of_2
                .first()
                .copied()
                .flatten()
                .map_or("?".into(), |g| g.to_string()),
            deltas.join(", ")
        ),
        gossip.is_some() && about_2.is_empty() && same_generation && all_counted,
    );

    // 6. A certificate naming several nodes: a warning at start. And the
    // certificate tool refuses two members for one name.
    let spare = lab.add_host(7)?;
    lab.write_hosts(&resolved)?;
    let started = Instant::now();
    let shared_node = start(
        bins,
        &spare.ns,
        &bins.node,
        &advertised(7),
        &[],
        &pki.member("shared"),
        &[],
    )?;
    let warned = shared_node.wait_for_stderr(started, started + Duration::from_secs(5), |l| {
        l.contains(SHARED_WARNING)
    });
    let warning = shared_node
        .stderr_lines(|l| l.contains(SHARED_WARNING))
        .first()
        .map(|l| {
            let l = plain(l, usize::MAX);
            plain(l.find("WARN").map_or(l.as_str(), |at| &l[at..]), 200)
        });
    drop(shared_node);
    let one_name: [&Node; 5] = [&n1, &n2, &w3, &load, &w5];
    let others_warned: usize = one_name
        .iter()
        .map(|n| n.stderr_lines(|l| l.contains(SHARED_WARNING)).len())
        .sum();
    out.check(
        "a member certificate naming node-7.lab, node-8.lab and node-9.lab: the node warns at start (stderr); \
         the one-name members do not",
        format!(
            "{}; warnings from the five one-name members: {others_warned}",
            warning.unwrap_or_else(|| "no warning within 5 s".into())
        ),
        warned.is_some() && others_warned == 0,
    );
    // Nobody but the killed worker's first life was judged, at any time.
    let wrong: Vec<String> = one_name
        .iter()
        .flat_map(|n| {
            n.lines_between(since, Instant::now(), |l| {
                any_verdict(l) && !event("failed", &node3)(l)
            })
            .into_iter()
            .map(move |l| format!("{}: {l}", n.member))
        })
        .collect();
    out.check(
        "failure or partition verdicts on anyone but the killed worker, the whole run (target 0)",
        summary(&wrong),
        wrong.is_empty(),
    );
    let refusals = pki.refusals();
    let refusal = |r: &Result<(), String>| match r {
        Ok(()) => "issued".to_string(),
        Err(e) => format!("refused: {}", plain(e, 110)),
    };
    out.check(
        "rpcnet-certs (CaDir::issue) refuses two members for one name: in one request, and against a member already issued",
        format!(
            "twin-a + twin-b (twin.lab): {}; impostor (node-2.lab): {}",
            refusal(&refusals[0]),
            refusal(&refusals[1])
        ),
        refusals.iter().all(|r| r.is_err()),
    );
    Ok(out)
}
