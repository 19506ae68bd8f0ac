//! Running the example's processes side by side (the demo and the
//! end-to-end tests): each child's output lines arrive on one channel,
//! tagged with its name and the time they were read; children are stopped
//! by pid (SIGTERM, then SIGKILL) and killed when the supervisor is
//! dropped, so nothing outlives it, even when a test fails.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::settings;

/// One line a child printed.
#[derive(Debug, Clone)]
pub struct Line {
    /// The child's name.
    pub who: String,
    /// The line, without its newline.
    pub text: String,
    /// When the supervisor read it.
    pub at: Instant,
    /// Whether it came from stderr (logs) rather than stdout.
    pub stderr: bool,
}

/// The children, by name.
#[derive(Debug)]
pub struct Processes {
    children: HashMap<String, Child>,
    /// Start order, so `stop_all` stops the last started first.
    order: Vec<String>,
    lines: mpsc::UnboundedSender<Line>,
}

impl Processes {
    /// No children yet; their lines will arrive on the receiver.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Line>) {
        let (lines, rx) = mpsc::unbounded_channel();
        (
            Self {
                children: HashMap::new(),
                order: Vec::new(),
                lines,
            },
            rx,
        )
    }

    /// Starts `program` as `name` (replacing a stopped child of that name),
    /// in its own process group (a Ctrl+C in the terminal reaches only the
    /// supervisor, which then stops the children in order). Returns its pid.
    ///
    /// The child inherits the supervisor's environment except the
    /// deployment variables ([`settings::DEPLOYMENT_VARS`]: an admin
    /// address or an advertised address is one process's), which it gets
    /// only from `envs`.
    ///
    /// # Errors
    /// When the program cannot be started.
    pub fn spawn<I, K, V>(
        &mut self,
        name: &str,
        program: &std::path::Path,
        args: &[&str],
        envs: I,
    ) -> std::io::Result<u32>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        for var in settings::DEPLOYMENT_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .args(args)
            .envs(envs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(name.to_owned(), out, false, self.lines.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(name.to_owned(), err, true, self.lines.clone()));
        }
        if let Some(mut old) = self.children.insert(name.to_owned(), child) {
            let _ = old.start_kill();
        }
        self.order.retain(|n| n != name);
        self.order.push(name.to_owned());
        Ok(pid)
    }

    /// The pid of `name`, if it is running.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.get(name).and_then(Child::id)
    }

    /// `kill -9` of `name`, waiting until it is gone.
    pub async fn kill(&mut self, name: &str) {
        if let Some(child) = self.children.get_mut(name) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM to `name` (a graceful stop), without waiting.
    pub fn terminate(&self, name: &str) {
        if let Some(pid) = self.pid(name) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Waits up to `within` for `name` to exit; kills it if it has not.
    /// Returns whether it exited by itself.
    pub async fn wait_or_kill(&mut self, name: &str, within: Duration) -> bool {
        let Some(child) = self.children.get_mut(name) else {
            return true;
        };
        match tokio::time::timeout(within, child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                false
            }
        }
    }

    /// Stops every child, the last started first: SIGTERM, then SIGKILL
    /// after `grace`. Returns the names of those that had to be killed.
    pub async fn stop_all(&mut self, grace: Duration) -> Vec<String> {
        let mut killed = Vec::new();
        for name in self.order.clone().into_iter().rev() {
            self.terminate(&name);
            if !self.wait_or_kill(&name, grace).await {
                killed.push(name);
            }
        }
        killed
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.start_kill();
        }
    }
}

async fn forward(
    who: String,
    from: impl AsyncRead + Unpin,
    stderr: bool,
    to: mpsc::UnboundedSender<Line>,
) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        let line = Line {
            who: who.clone(),
            text,
            at: Instant::now(),
            stderr,
        };
        if to.send(line).is_err() {
            return;
        }
    }
}

/// Every line received so far, and a way to wait for the next one that matters.
#[derive(Debug)]
pub struct Transcript {
    rx: mpsc::UnboundedReceiver<Line>,
    /// Every line received, in order.
    pub lines: Vec<Line>,
}

impl Transcript {
    /// Records the lines arriving on `rx`.
    pub fn new(rx: mpsc::UnboundedReceiver<Line>) -> Self {
        Self {
            rx,
            lines: Vec::new(),
        }
    }

    /// The index of the first line at or after `since` that satisfies
    /// `pred`, waiting up to `within` for it to arrive.
    pub async fn wait_for(
        &mut self,
        since: usize,
        within: Duration,
        pred: impl Fn(&Line) -> bool,
    ) -> Option<usize> {
        if let Some(i) = self.lines.iter().skip(since).position(&pred) {
            return Some(since + i);
        }
        let deadline = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(line)) => {
                    let hit = self.lines.len() >= since && pred(&line);
                    self.lines.push(line);
                    if hit {
                        return Some(self.lines.len() - 1);
                    }
                }
                _ => return None,
            }
        }
    }

    /// Takes in the lines that have already arrived, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.lines.push(line);
        }
    }
}

/// `n` distinct free loopback UDP ports (all bound at once, then released).
///
/// # Errors
/// When no UDP socket can be bound on 127.0.0.1.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let sockets = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    sockets.iter().map(|s| Ok(s.local_addr()?.port())).collect()
}
