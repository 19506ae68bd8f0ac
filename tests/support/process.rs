//! Child processes for the integration tests: a program started with its
//! stdout read line by line, waited on with a bound, and killed by pid
//! (SIGKILL, `kill_on_drop`) when its [`Proc`] is dropped, so nothing
//! outlives a test, even a failing one.
//!
//! Included by several test crates with `#[path]`; `rpcnet`'s own binaries
//! are started with `env!("CARGO_BIN_EXE_<name>")`.

// Each test crate including this file uses a subset of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A command for `program` as the tests run it: in the package's directory
/// (where `certs/` is), no stdin, stdout read by [`Proc`], stderr
/// discarded, killed when dropped.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The address in `READY <addr>`, which must be the program's first line
/// (`rpcnet-node`, `rpcnet-worker`).
pub fn ready_first(line: &str) -> Option<SocketAddr> {
    let addr = line.strip_prefix("READY ").expect("READY first");
    Some(addr.parse().expect("an address after READY"))
}

/// The address after `READY ` anywhere in a line, after any other lines: a
/// test binary run as a child prints libtest's lines first and the test's
/// name on the same line.
pub fn ready_anywhere(line: &str) -> Option<SocketAddr> {
    let (_, addr) = line.split_once("READY ")?;
    Some(addr.trim().parse().expect("an address after READY"))
}

/// A running child; killed (SIGKILL, by pid) when dropped.
pub struct Proc {
    pub child: Child,
    /// Where it serves, from its ready line.
    pub addr: SocketAddr,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every line the waits have read after the ready line, in order.
    pub seen: Vec<String>,
}

impl Proc {
    /// Starts `command` (made by [`command`]) and waits up to `within` for
    /// the line in which `ready` finds its address.
    pub async fn start(
        command: &mut Command,
        within: Duration,
        ready: impl Fn(&str) -> Option<SocketAddr>,
    ) -> Proc {
        let program = command.as_std().get_program().to_owned();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = tokio::time::timeout(within, async {
            loop {
                let line = lines.recv().await.expect("READY line");
                if let Some(addr) = ready(&line) {
                    break addr;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{program:?} not ready within {within:?}"));
        Proc {
            child,
            addr,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `within` for a line satisfying `pred` among those not
    /// read yet, and returns it; every line read is kept in `seen`.
    pub async fn wait_new_line(
        &mut self,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let hit = pred(&line);
                    self.seen.push(line);
                    if hit {
                        return self.seen.last().cloned();
                    }
                }
                _ => return None,
            }
        }
    }

    /// Waits up to `within` until a line satisfying `pred` has been printed
    /// (now or before).
    pub async fn wait_line(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> bool {
        self.seen.iter().any(|l| pred(l)) || self.wait_new_line(within, pred).await.is_some()
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends `signal` (`-TERM`, `-STOP`, `-CONT`, ...) to the child with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// `kill -9`, waiting until the child is gone.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill -9");
    }
}
