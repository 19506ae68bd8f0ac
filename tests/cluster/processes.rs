//! Real processes on loopback: `rpcnet-node` binaries with the default
//! configuration, killed with SIGKILL or stopped with SIGTERM.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// docs/CLUSTER.md's bound for every other node to report a killed node
/// failed, default configuration.
const DETECTION_BOUND: Duration = Duration::from_secs(15);

struct Proc {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Proc {
    async fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rpcnet-node"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rpcnet-node");
        let stdout = child.stdout.take().unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.recv())
            .await
            .expect("node started")
            .expect("READY line");
        let addr = ready
            .strip_prefix("READY ")
            .expect("READY first")
            .parse()
            .unwrap();
        Proc {
            child,
            addr,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until a line satisfying `pred` has been printed (now or before).
    async fn wait_line(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> bool {
        if self.seen.iter().any(|l| pred(l)) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let hit = pred(&line);
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                _ => return false,
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

fn event_about(kind: &'static str, addr: SocketAddr) -> impl Fn(&str) -> bool {
    let needle = format!("EVENT {kind} {addr} ");
    move |line: &str| line.starts_with(&needle)
}

async fn five_processes() -> Vec<Proc> {
    let seed = Proc::spawn(&["--listen", "127.0.0.1:0"]).await;
    let seed_addr = seed.addr.to_string();
    let mut procs = vec![seed];
    for _ in 0..4 {
        procs.push(Proc::spawn(&["--listen", "127.0.0.1:0", "--seed", &seed_addr]).await);
    }
    let addrs: Vec<SocketAddr> = procs.iter().map(|p| p.addr).collect();
    for p in &mut procs {
        let me = p.addr;
        for &other in addrs.iter().filter(|&&a| a != me) {
            assert!(
                p.wait_line(Duration::from_secs(30), event_about("joined", other))
                    .await,
                "{me} never saw {other} join"
            );
        }
    }
    procs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_through_one_seed_see_a_kill_as_failed_and_a_stop_as_left() {
    let mut procs = five_processes().await;

    // kill -9 one member.
    let mut victim = procs.remove(4);
    let victim_addr = victim.addr;
    let killed_at = Instant::now();
    victim.child.start_kill().unwrap(); // SIGKILL
    let _ = victim.child.wait().await;
    for p in &mut procs {
        let left = DETECTION_BOUND.saturating_sub(killed_at.elapsed());
        assert!(
            p.wait_line(left, event_about("failed", victim_addr)).await,
            "{} did not report {victim_addr} failed within {DETECTION_BOUND:?}",
            p.addr
        );
    }
    eprintln!(
        "kill -9 reported failed by all 4 others in {:?}",
        killed_at.elapsed()
    );

    // SIGTERM: a graceful stop.
    let mut stopped = procs.remove(3);
    let stopped_addr = stopped.addr;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &stopped.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        stopped
            .wait_line(Duration::from_secs(10), |l| l == "LEFT")
            .await,
        "the stopped node did not leave"
    );
    for p in &mut procs {
        assert!(
            p.wait_line(Duration::from_secs(20), |l| l
                .starts_with(&format!("EVENT left {stopped_addr} "))
                || l.starts_with(&format!("EVENT failed {stopped_addr} ")))
                .await,
            "{} saw nothing of the stop",
            p.addr
        );
        assert!(
            p.seen
                .iter()
                .any(|l| l.starts_with(&format!("EVENT left {stopped_addr} "))),
            "{} reported the graceful stop as a failure",
            p.addr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_with_a_certificate_from_another_ca_is_refused() {
    let mut member = Proc::spawn(&["--listen", "127.0.0.1:0"]).await;
    let seed = member.addr.to_string();
    let mut outsider = Proc::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--seed",
        &seed,
        "--cert",
        "certs/other-member.pem",
        "--key",
        "certs/other-member-key.pem",
        "--ca",
        "certs/other-member-ca.pem",
    ])
    .await;
    assert!(
        outsider
            .wait_line(Duration::from_secs(20), |l| l.starts_with("JOIN-FAILED"))
            .await,
        "the outsider joined"
    );
    let outsider_addr = outsider.addr;
    assert!(
        !member
            .wait_line(Duration::from_secs(1), event_about("joined", outsider_addr))
            .await
    );
    let seen: HashSet<&String> = member.seen.iter().collect();
    assert!(
        seen.iter().all(|l| !l.contains(&outsider_addr.to_string())),
        "{seen:?}"
    );
}
