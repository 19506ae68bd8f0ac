//! `rpcnet-node` processes inside lab hosts, with every line they print
//! time-stamped on arrival, and the signals the scenarios send them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::net::{run, Host};
use crate::pki::{Identity, Pki};

/// The port every node listens on, on its host's address.
pub const PORT: u16 = 7000;

/// Where the binaries and certificates are.
pub struct Binaries {
    /// `rpcnet-node`.
    pub node: PathBuf,
    /// `rpcnet-worker`.
    pub worker: PathBuf,
    /// This harness (for its `load` role).
    pub harness: PathBuf,
    /// The repository root (working directory of every process, so the
    /// default `certs/...` paths resolve).
    pub root: PathBuf,
    /// The lab's certificates.
    pub pki: Pki,
}

impl Binaries {
    /// Finds `rpcnet-node` and `rpcnet-worker` beside this executable (the
    /// same cargo profile), building them first; `RPCNET_BIN_DIR` names
    /// another directory (then nothing is built).
    pub fn locate(pki: Pki) -> Result<Binaries, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("faults/ has a parent")
            .to_path_buf();
        let harness = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = match std::env::var_os("RPCNET_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                // Always ask cargo: a no-op when up to date, and a stale
                // binary would measure old code.
                let mut args = vec![
                    "build",
                    "--quiet",
                    "--bin",
                    "rpcnet-node",
                    "--bin",
                    "rpcnet-worker",
                ];
                if !cfg!(debug_assertions) {
                    args.push("--release");
                }
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let status = Command::new(cargo)
                    .args(&args)
                    .current_dir(&root)
                    .status()
                    .map_err(|e| format!("cargo build: {e}"))?;
                if !status.success() {
                    return Err("could not build rpcnet-node and rpcnet-worker".into());
                }
                harness.parent().expect("exe has a directory").to_path_buf()
            }
        };
        let (node, worker) = (dir.join("rpcnet-node"), dir.join("rpcnet-worker"));
        for bin in [&node, &worker] {
            if !bin.exists() {
                return Err(format!("{} is missing", bin.display()));
            }
        }
        Ok(Binaries {
            node,
            worker,
            harness,
            root,
            pki,
        })
    }
}

type Lines = Arc<(Mutex<Vec<(Instant, String)>>, Condvar)>;

/// One `rpcnet-node` in a lab host. Killed (SIGKILL, by pid) when dropped.
pub struct Node {
    /// The address it listens on: its RPC (and gossip) address, unless it
    /// advertises another (see `member`).
    pub addr: SocketAddr,
    /// The address it printed with `READY`: the one it is known by (the
    /// advertised one, when it advertises one).
    pub member: String,
    child: Child,
    lines: Lines,
    /// What it printed on stderr (warnings), time-stamped likewise.
    errors: Lines,
}

/// How a process that was expected to exit ended.
pub struct Exited {
    /// Its exit code (`None`: killed after the deadline, or by a signal).
    pub code: Option<i32>,
    /// How long it ran.
    pub took: Duration,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// Collects the lines of `from` into `sink`, stamped on arrival (echoed
/// to stderr with `RPCNET_FAULTS_ECHO`).
fn collect(from: impl std::io::Read + Send + 'static, sink: Lines, tag: String) {
    let echo = std::env::var_os("RPCNET_FAULTS_ECHO").is_some();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if echo {
                eprintln!("    [{tag}] {line}");
            }
            let (store, cv) = &*sink;
            store.lock().unwrap().push((Instant::now(), line));
            cv.notify_all();
        }
    });
}

fn new_lines() -> Lines {
    Arc::new((Mutex::new(Vec::new()), Condvar::new()))
}

/// Waits until `deadline` for a line of `lines` printed at or after
/// `since` that satisfies `pred`; returns when it arrived.
fn wait_in(
    lines: &Lines,
    since: Instant,
    deadline: Instant,
    pred: impl Fn(&str) -> bool,
) -> Option<Instant> {
    let (store, cv) = &**lines;
    let mut lines = store.lock().unwrap();
    loop {
        if let Some((at, _)) = lines.iter().find(|(at, l)| *at >= since && pred(l)) {
            return Some(*at);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
    }
}

/// `ip netns exec <ns> <program> <args>` as a command, run from the
/// repository root.
fn in_netns(bins: &Binaries, ns: &str, program: &Path, args: &[String]) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .current_dir(&bins.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `program` with `args` in namespace `ns` until it exits, at most
/// `within` (then it is killed by pid); returns how it ended and what it
/// printed.
pub fn run_to_exit(
    bins: &Binaries,
    ns: &str,
    program: &Path,
    args: &[String],
    within: Duration,
) -> Result<Exited, String> {
    let started = Instant::now();
    let mut child = in_netns(bins, ns, program, args)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", program.display()))?;
    let (stdout, stderr) = (new_lines(), new_lines());
    let tag = format!("{ns} {}", program.display());
    collect(
        child.stdout.take().expect("piped"),
        stdout.clone(),
        tag.clone(),
    );
    collect(child.stderr.take().expect("piped"), stderr.clone(), tag);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < within => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let took = started.elapsed();
    // The readers finish at end of file; give them a moment.
    std::thread::sleep(Duration::from_millis(100));
    let text = |lines: &Lines| {
        let (store, _) = &**lines;
        let lines = store.lock().unwrap();
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(Exited {
        code: status.and_then(|s| s.code()),
        took,
        stdout: text(&stdout),
        stderr: text(&stderr),
    })
}

impl Node {
    /// Starts an `rpcnet-node` on `host` with the host's member
    /// certificate, seeded with `seeds`; returns once it printed `READY`.
    pub fn start(bins: &Binaries, host: &Host, seeds: &[SocketAddr]) -> Result<Node, String> {
        let identity = bins.pki.member(host.index());
        Node::spawn(bins, host, &bins.node, &[], seeds, Some(&identity), &[])
    }

    /// Starts `program` (`rpcnet-node`, `rpcnet-worker` or this harness in
    /// a role) in `host` with `--listen <host>:PORT`, a `--seed` per seed,
    /// the identity's `--cert/--key/--ca`, then `extra`; `role` goes first
    /// (the harness's subcommand).
    pub fn spawn(
        bins: &Binaries,
        host: &Host,
        program: &Path,
        role: &[&str],
        seeds: &[SocketAddr],
        identity: Option<&Identity>,
        extra: &[&str],
    ) -> Result<Node, String> {
        let addr = SocketAddr::from((host.ip, PORT));
        let mut args: Vec<String> = role.iter().map(|s| s.to_string()).collect();
        args.push("--listen".into());
        args.push(addr.to_string());
        for s in seeds {
            args.push("--seed".into());
            args.push(s.to_string());
        }
        args.extend(identity.map(Identity::args).unwrap_or_default());
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::launch(bins, &host.ns, program, &args, addr)
    }

    /// Starts `program` with exactly `args` in namespace `ns`, listening on
    /// `addr`; returns once it printed `READY`.
    pub fn launch(
        bins: &Binaries,
        ns: &str,
        program: &Path,
        args: &[String],
        addr: SocketAddr,
    ) -> Result<Node, String> {
        // `ip netns exec` execs the program, so the child's pid is the node's.
        let mut child = in_netns(bins, ns, program, args)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", program.display()))?;
        let (lines, errors) = (new_lines(), new_lines());
        let tag = format!("{ns} {addr}");
        collect(
            child.stdout.take().expect("piped"),
            lines.clone(),
            tag.clone(),
        );
        collect(child.stderr.take().expect("piped"), errors.clone(), tag);
        let mut node = Node {
            addr,
            member: addr.to_string(),
            child,
            lines,
            errors,
        };
        let now = Instant::now();
        node.wait_for(now, now + Duration::from_secs(20), |l| {
            l.starts_with("READY")
        })
        .ok_or_else(|| {
            format!(
                "{} in {ns} did not print READY within 20 s",
                program.display()
            )
        })?;
        if let Some(ready) = node
            .lines_between(now, Instant::now() + Duration::from_secs(1), |l| {
                l.starts_with("READY ")
            })
            .first()
        {
            node.member = ready["READY ".len()..].trim().to_string();
        }
        Ok(node)
    }

    /// The pid (the node's own, see [`Node::start`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let _ = run("kill", &[&format!("-{sig}"), &self.pid().to_string()]);
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `deadline` for a line printed at or after `since` that
    /// satisfies `pred`; returns when it arrived.
    pub fn wait_for(
        &self,
        since: Instant,
        deadline: Instant,
        pred: impl Fn(&str) -> bool,
    ) -> Option<Instant> {
        wait_in(&self.lines, since, deadline, pred)
    }

    /// [`wait_for`](Self::wait_for) on what it printed on stderr.
    pub fn wait_for_stderr(
        &self,
        since: Instant,
        deadline: Instant,
        pred: impl Fn(&str) -> bool,
    ) -> Option<Instant> {
        wait_in(&self.errors, since, deadline, pred)
    }

    /// Every line it printed on stderr so far that satisfies `pred`.
    pub fn stderr_lines(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let (store, _) = &*self.errors;
        store
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| pred(l))
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Lines printed in `[from, to)` that satisfy `pred`.
    pub fn lines_between(
        &self,
        from: Instant,
        to: Instant,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let (store, _) = &*self.lines;
        store
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, l)| *at >= from && *at < to && pred(l))
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Whether, by its latest event about `subject`, this node believes it
    /// is up (joined or recovered) rather than failed or left. `None` when
    /// it never printed an event about it.
    pub fn believes_up(&self, subject: impl std::fmt::Display) -> Option<bool> {
        let (store, _) = &*self.lines;
        let prefix_for = |kind: &str| format!("EVENT {kind} {subject} ");
        store.lock().unwrap().iter().rev().find_map(|(_, l)| {
            if l.starts_with(&prefix_for("joined")) || l.starts_with(&prefix_for("recovered")) {
                Some(true)
            } else if l.starts_with(&prefix_for("failed")) || l.starts_with(&prefix_for("left")) {
                Some(false)
            } else {
                None
            }
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A predicate for `EVENT <kind> <addr> ...` lines (`addr` as printed:
/// `ip:port` or `name:port`).
pub fn event(kind: &'static str, about: impl std::fmt::Display) -> impl Fn(&str) -> bool {
    let needle = format!("EVENT {kind} {about} ");
    move |l: &str| l.starts_with(&needle)
}

/// A predicate for any failure verdict (`EVENT failed ...`) or partition
/// report (`EVENT partition ...`).
pub fn any_verdict(l: &str) -> bool {
    l.starts_with("EVENT failed ") || l.starts_with("EVENT partition")
}
