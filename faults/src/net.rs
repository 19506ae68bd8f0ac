//! The lab: test hosts as network namespaces on one bridge, and nftables
//! rules inside each host for loss and partitions.
//!
//! Every host is a namespace `rpcf-<i>` with one veth (`eth0`, address
//! `198.18.0.<i>/24`, from RFC 2544's benchmarking range, so it cannot
//! collide with a real network) plugged into the bridge `rpcf-br`. The
//! bridge has no address: hosts reach each other and nothing else. Each
//! host has its own nftables table `inet rpcf` with an `input` and an
//! `output` chain; faults are rules in those chains, so deleting the
//! namespace deletes them too.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Prefix of every namespace and link the lab creates.
pub const PREFIX: &str = "rpcf";
const BRIDGE: &str = "rpcf-br";

/// Names created by live labs, for the interrupt handler.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Runs a command; `Err` carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Why the suite cannot run here, if it cannot (not root, no `ip netns`,
/// no nftables and no way to install it).
pub fn preflight() -> Result<(), String> {
    if output("id", &["-u"]).trim() != "0" {
        return Err("needs root (network namespaces and nftables)".into());
    }
    run("ip", &["netns", "list"]).map_err(|e| format!("no `ip netns`: {e}"))?;
    // Root in a container may lack the capability to create namespaces
    // (`ip netns list` works anyway): that is a missing `ip netns` too.
    // Only this is probed; anything failing later in building a lab is the
    // suite's own failure, not a reason to skip.
    let probe = format!("{PREFIX}-preflight");
    let created = run("ip", &["netns", "add", &probe]);
    let _ = run("ip", &["netns", "del", &probe]);
    created.map_err(|e| format!("cannot create a network namespace: {e}"))?;
    if run("nft", &["--version"]).is_err() {
        eprintln!("nftables missing: installing it with apt-get");
        let _ = run("apt-get", &["update", "-qq"]);
        run("apt-get", &["install", "-y", "-qq", "nftables"])
            .map_err(|e| format!("nftables is missing and could not be installed: {e}"))?;
    }
    Ok(())
}

/// Removes every namespace and link with the lab's prefix, killing the
/// processes inside first. Safe to call at any time.
pub fn sweep() {
    let names: Vec<String> = output("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .map(str::to_owned)
        .collect();
    for ns in &names {
        remove_host(ns);
    }
    // Host-side veth ends whose namespace is already gone.
    for line in output("ip", &["-o", "link", "show"]).lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim();
        let name = name.split('@').next().unwrap_or("");
        if name.starts_with(&format!("{PREFIX}-")) && name.ends_with("-h") {
            let _ = run("ip", &["link", "del", name]);
        }
    }
    let _ = run("ip", &["link", "del", BRIDGE]);
}

/// Kills every process in host namespace `ns` (by pid), removes its veth
/// pair (synchronously, by the host-side end: the kernel frees a deleted
/// namespace's devices later, and the next lab would find the name taken),
/// then the namespace with its rules.
fn remove_host(ns: &str) {
    for pid in output("ip", &["netns", "pids", ns]).split_whitespace() {
        let _ = run("kill", &["-KILL", pid]);
    }
    let _ = run("ip", &["link", "del", &format!("{ns}-h")]);
    let _ = run("ip", &["netns", "del", ns]);
}

/// Cleans up whatever live labs created (for the interrupt handler).
pub fn cleanup_live() {
    let names = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for ns in names {
        remove_host(&ns);
    }
    let _ = run("ip", &["link", "del", BRIDGE]);
}

/// One test host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
}

impl Host {
    /// Its number: `i` in `rpcf-<i>` and `198.18.0.<i>`.
    pub fn index(&self) -> usize {
        usize::from(self.ip.octets()[3])
    }

    fn nft(&self, script: &str) -> Result<(), String> {
        run("ip", &["netns", "exec", &self.ns, "nft", script])
    }
}

/// A set of hosts on one bridge; dropping it removes them, their rules and
/// every process in them.
pub struct Lab {
    /// The hosts, index 0 = `198.18.0.1`.
    pub hosts: Vec<Host>,
}

impl Lab {
    /// Creates `n` hosts (1 ≤ n ≤ 250).
    pub fn new(n: usize) -> Result<Lab, String> {
        assert!((1..=250).contains(&n));
        sweep();
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        let mut lab = Lab { hosts: Vec::new() };
        for i in 1..=n {
            let ns = format!("{PREFIX}-{i}");
            LIVE.lock().unwrap().push(ns.clone());
            let ip = Ipv4Addr::new(198, 18, 0, i as u8);
            let hostside = format!("{PREFIX}-{i}-h");
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &[
                    "link", "add", &hostside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &hostside, "master", BRIDGE, "up"])?;
            let exec = |args: &[&str]| {
                let mut all = vec!["netns", "exec", ns.as_str()];
                all.extend_from_slice(args);
                run("ip", &all)
            };
            exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            exec(&["ip", "link", "set", "eth0", "up"])?;
            exec(&["ip", "link", "set", "lo", "up"])?;
            let host = Host { ns, ip };
            host.nft(
                "add table inet rpcf; \
                 add chain inet rpcf input { type filter hook input priority 0; policy accept; }; \
                 add chain inet rpcf output { type filter hook output priority 0; policy accept; }",
            )?;
            lab.hosts.push(host);
        }
        Ok(lab)
    }

    /// Drops `percent`% of the packets every host receives (nftables
    /// `numgen random`).
    pub fn random_loss(&self, percent: u32) -> Result<(), String> {
        for h in &self.hosts {
            h.nft(&format!(
                "add rule inet rpcf input ip saddr 198.18.0.0/24 numgen random mod 100 < {percent} counter drop"
            ))?;
        }
        Ok(())
    }

    /// Packets the random-loss rules dropped so far on all hosts (their
    /// `counter`s; 0 when none can be read).
    pub fn dropped(&self) -> u64 {
        self.hosts
            .iter()
            .map(|h| {
                let listing = output(
                    "ip",
                    &[
                        "netns", "exec", &h.ns, "nft", "list", "chain", "inet", "rpcf", "input",
                    ],
                );
                listing
                    .split_whitespace()
                    .skip_while(|w| *w != "packets")
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Hosts in `a` and hosts in `b` stop hearing each other (both ways).
    pub fn partition(&self, a: &[usize], b: &[usize]) -> Result<(), String> {
        for &x in a {
            for &y in b {
                self.one_way(y, x)?;
                self.one_way(x, y)?;
            }
        }
        Ok(())
    }

    /// Host `to` stops hearing host `from` (packets from `from` are dropped
    /// on arrival at `to`; the other direction still works).
    pub fn one_way(&self, from: usize, to: usize) -> Result<(), String> {
        self.hosts[to].nft(&format!(
            "add rule inet rpcf input ip saddr {} drop",
            self.hosts[from].ip
        ))
    }

    /// Removes every fault rule on every host.
    pub fn heal(&self) -> Result<(), String> {
        for h in &self.hosts {
            h.nft("flush chain inet rpcf input; flush chain inet rpcf output")?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for h in &self.hosts {
            remove_host(&h.ns);
        }
        let _ = run("ip", &["link", "del", BRIDGE]);
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| !self.hosts.iter().any(|h| &h.ns == n));
    }
}
