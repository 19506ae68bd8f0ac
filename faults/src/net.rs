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
//!
//! Beyond the bridge: a host behind NAT (a router host on the bridge that
//! forwards one port to a namespace on a private network of its own, see
//! [`Lab::add_nat_host`]), and per-host name resolution: a hosts file
//! `/etc/netns/<ns>/hosts`, which `ip netns exec` mounts over `/etc/hosts`
//! for the processes it starts ([`Lab::write_hosts`]).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Prefix of every namespace and link the lab creates.
pub const PREFIX: &str = "rpcf";
const BRIDGE: &str = "rpcf-br";
/// Where `ip netns exec` finds a namespace's own `/etc` files.
const NETNS_ETC: &str = "/etc/netns";

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
    // Hosts files of namespaces that are gone (or were just removed).
    if let Ok(entries) = std::fs::read_dir(NETNS_ETC) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{PREFIX}-")) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    // `/etc/netns` itself, if nothing else is in it.
    let _ = std::fs::remove_dir(NETNS_ETC);
}

fn etc_dir(ns: &str) -> PathBuf {
    Path::new(NETNS_ETC).join(ns)
}

/// Kills every process in host namespace `ns` (by pid), removes its veth
/// pair (synchronously, by the host-side end: the kernel frees a deleted
/// namespace's devices later, and the next lab would find the name taken),
/// then the namespace with its rules, and its `/etc/netns/<ns>` files.
fn remove_host(ns: &str) {
    for pid in output("ip", &["netns", "pids", ns]).split_whitespace() {
        let _ = run("kill", &["-KILL", pid]);
    }
    let _ = run("ip", &["link", "del", &format!("{ns}-h")]);
    let _ = run("ip", &["netns", "del", ns]);
    let _ = std::fs::remove_dir_all(etc_dir(ns));
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
        self.exec(&["nft", script])
    }

    /// Runs a command inside the host.
    fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", self.ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

/// A host behind NAT: a router on the bridge forwards `public_port` of its
/// lab address to `private_port` of a host on a private network of its own
/// (`10.<i>.0.0/24`), and masquerades what that host sends out.
#[derive(Debug, Clone)]
pub struct NatHost {
    /// The router: `rpcf-<i>`, `198.18.0.<i>` on the bridge, `10.<i>.0.1`
    /// on the private network.
    pub router: Host,
    /// The host behind it: `rpcf-<i>p`, `10.<i>.0.2`, default route via
    /// the router; no other way in or out.
    pub inside: Host,
}

impl NatHost {
    /// Flows the router translated so far: (forwarded in through the
    /// DNAT rule, masqueraded out). NAT rules see the first packet of a
    /// flow only (conntrack translates the rest), so these count flows.
    pub fn flows(&self) -> (u64, u64) {
        let listing = output(
            "ip",
            &[
                "netns",
                "exec",
                &self.router.ns,
                "nft",
                "list",
                "table",
                "ip",
                "rpcf-nat",
            ],
        );
        let count = |action: &str| {
            listing
                .lines()
                .find(|l| l.contains(action))
                .and_then(|l| {
                    l.split_whitespace()
                        .skip_while(|w| *w != "packets")
                        .nth(1)?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        (count("dnat"), count("masquerade"))
    }
}

/// A set of hosts on one bridge; dropping it removes them, their rules and
/// every process in them.
pub struct Lab {
    /// The hosts on the bridge, in the order they were added
    /// ([`Lab::new`]'s: index 0 = `198.18.0.1`).
    pub hosts: Vec<Host>,
    /// Hosts off the bridge (behind a NAT router).
    inside: Vec<Host>,
}

impl Lab {
    /// Creates `n` hosts (1 ≤ n ≤ 250).
    pub fn new(n: usize) -> Result<Lab, String> {
        assert!((1..=250).contains(&n));
        sweep();
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        let mut lab = Lab {
            hosts: Vec::new(),
            inside: Vec::new(),
        };
        for i in 1..=n {
            lab.add_host(i as u8)?;
        }
        Ok(lab)
    }

    /// Adds host `rpcf-<i>` at `198.18.0.<i>` on the bridge (with its
    /// empty fault chains); returns it.
    pub fn add_host(&mut self, i: u8) -> Result<Host, String> {
        let ns = format!("{PREFIX}-{i}");
        LIVE.lock().unwrap().push(ns.clone());
        let ip = Ipv4Addr::new(198, 18, 0, i);
        let hostside = format!("{PREFIX}-{i}-h");
        run("ip", &["netns", "add", &ns])?;
        run(
            "ip",
            &[
                "link", "add", &hostside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        run("ip", &["link", "set", &hostside, "master", BRIDGE, "up"])?;
        let host = Host { ns, ip };
        host.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        host.exec(&["ip", "link", "set", "eth0", "up"])?;
        host.exec(&["ip", "link", "set", "lo", "up"])?;
        host.nft(
            "add table inet rpcf; \
             add chain inet rpcf input { type filter hook input priority 0; policy accept; }; \
             add chain inet rpcf output { type filter hook output priority 0; policy accept; }",
        )?;
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// Adds a host behind NAT ([`NatHost`]): router `rpcf-<i>` at
    /// `198.18.0.<i>` on the bridge, joined by a veth pair (`lan0` on the
    /// router, `eth0` inside) to `rpcf-<i>p` at `10.<i>.0.2`. The router
    /// forwards IPv4 and has an nftables table `ip rpcf-nat`: `udp dport
    /// <public_port>` arriving on `eth0` is DNATed to
    /// `10.<i>.0.2:<private_port>`, and whatever leaves by `eth0` is
    /// masqueraded (so the host inside is seen at the router's address).
    pub fn add_nat_host(
        &mut self,
        i: u8,
        public_port: u16,
        private_port: u16,
    ) -> Result<NatHost, String> {
        let router = self.add_host(i)?;
        let ns = format!("{PREFIX}-{i}p");
        LIVE.lock().unwrap().push(ns.clone());
        run("ip", &["netns", "add", &ns])?;
        let inside = Host {
            ns,
            ip: Ipv4Addr::new(10, i, 0, 2),
        };
        self.inside.push(inside.clone());
        let gateway = Ipv4Addr::new(10, i, 0, 1);
        router.exec(&[
            "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns",
            &inside.ns,
        ])?;
        router.exec(&["ip", "addr", "add", &format!("{gateway}/24"), "dev", "lan0"])?;
        router.exec(&["ip", "link", "set", "lan0", "up"])?;
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        inside.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", inside.ip),
            "dev",
            "eth0",
        ])?;
        inside.exec(&["ip", "link", "set", "eth0", "up"])?;
        inside.exec(&["ip", "link", "set", "lo", "up"])?;
        inside.exec(&["ip", "route", "add", "default", "via", &gateway.to_string()])?;
        router.nft(&format!(
            "add table ip rpcf-nat; \
             add chain ip rpcf-nat prerouting {{ type nat hook prerouting priority -100; }}; \
             add chain ip rpcf-nat postrouting {{ type nat hook postrouting priority 100; }}; \
             add rule ip rpcf-nat prerouting iifname \"eth0\" udp dport {public_port} counter dnat to {}:{private_port}; \
             add rule ip rpcf-nat postrouting oifname \"eth0\" counter masquerade",
            inside.ip
        ))?;
        Ok(NatHost { router, inside })
    }

    /// Writes `/etc/netns/<ns>/hosts` for every host of the lab (on the
    /// bridge and behind NAT): `localhost`, then `names` (address, name).
    /// A process started afterwards with `ip netns exec` resolves names
    /// from it. The file is rewritten in place (same inode): the bind
    /// mount of a process already running keeps pointing at it, so a
    /// changed address reaches running processes at their next lookup.
    pub fn write_hosts(&self, names: &[(Ipv4Addr, String)]) -> Result<(), String> {
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost\n");
        for (ip, name) in names {
            text.push_str(&format!("{ip} {name}\n"));
        }
        for host in self.hosts.iter().chain(&self.inside) {
            let dir = etc_dir(&host.ns);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join("hosts");
            let inode = |path: &Path| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(path).ok().map(|m| m.ino())
            };
            let before = inode(&path);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if before.is_some() && before != inode(&path) {
                return Err(format!("{} was replaced, not rewritten", path.display()));
            }
        }
        Ok(())
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
        for h in self.inside.iter().chain(&self.hosts) {
            remove_host(&h.ns);
        }
        let _ = run("ip", &["link", "del", BRIDGE]);
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| !self.hosts.iter().chain(&self.inside).any(|h| &h.ns == n));
    }
}
