//! The README's first command: a director, two workers (`worker-a` with
//! failure simulation on) and a client on free loopback ports, as separate
//! processes (this same binary started with `--role <name>`). After the
//! client has streamed for a while, the worker serving it is killed with
//! SIGKILL; once the director has dropped it from the pool it is
//! restarted with the same label and address. The demo stops by itself
//! after `DEMO_DURATION_MS` (default 45 s) or on Ctrl+C, stops every
//! process it started, and prints the client's summary.
//!
//! Exits with an error if the client lost or repeated a token, if no
//! failover happened, or if a process could not be started.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::director::{pool_lists, PoolStatusReader};
use crate::settings;
use crate::supervise::{free_ports, Line, Processes};

/// How long the demo runs unless `DEMO_DURATION_MS` says otherwise.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(45);
/// Streaming time before the serving worker is killed.
const KILL_AFTER: Duration = Duration::from_secs(6);
/// Time for each start-up step before the demo gives up.
const STARTUP: Duration = Duration::from_secs(30);
/// Wait for a process to stop after SIGTERM before killing it.
const GRACE: Duration = Duration::from_secs(8);

/// Runs one of the example's programs in this process, for `--role`.
///
/// # Errors
/// The program's own errors; an unknown role.
pub async fn run_role(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    match role {
        "director" => crate::director::run().await,
        "worker" => crate::worker::run().await,
        "client" => crate::client::run().await,
        other => Err(format!("unknown role {other:?} (director, worker, client)").into()),
    }
}

/// Where the demo is in its script.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    /// Streaming; the serving worker is killed at the given time.
    Streaming { kill_at: Instant },
    /// The worker was killed; waiting for the client's first token elsewhere.
    Killed { label: String, at: Instant },
    /// The client resumed; waiting for the director to drop the worker.
    Resumed { label: String },
    /// Restarted; waiting to see it back in the director's pool.
    Restarted { label: String },
    /// The script is done; streaming until the end.
    Done,
}

struct Demo {
    processes: Processes,
    exe: PathBuf,
    director: String,
    workers: Vec<(String, String, bool)>,
    /// The worker the client is connected to.
    serving: Option<String>,
    summary: Option<String>,
    kill_to_first_token: Option<(String, Duration)>,
    back_in_pool: bool,
    tokens_seen: u64,
    pool: PoolStatusReader,
}

/// Runs the demo.
///
/// # Errors
/// When a process cannot be started or does not come up in time, or when
/// the run shows lost or repeated tokens or no failover.
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let duration = settings::millis("DEMO_DURATION_MS", DEFAULT_DURATION)?;
    let ports = free_ports(3)?;
    let director = format!("127.0.0.1:{}", ports[0]);
    let (processes, mut lines) = Processes::new();
    let mut demo = Demo {
        processes,
        exe: std::env::current_exe()?,
        director: director.clone(),
        workers: vec![
            ("worker-a".into(), format!("127.0.0.1:{}", ports[1]), true),
            ("worker-b".into(), format!("127.0.0.1:{}", ports[2]), false),
        ],
        serving: None,
        summary: None,
        kill_to_first_token: None,
        back_in_pool: false,
        tokens_seen: 0,
        pool: PoolStatusReader::default(),
    };
    println!(
        "🎬 demo: director at {director}, worker-a (failure simulation on) and worker-b, one client; \
         stops after {} s or on Ctrl+C",
        duration.as_secs()
    );
    let started = Instant::now();
    let end = started + duration;
    let outcome = async {
        demo.start("director", &[("DIRECTOR_ADDR", director.clone())])?;
        demo.expect(&mut lines, "director", "🚀 Director ready")
            .await?;
        for i in 0..demo.workers.len() {
            demo.start_worker(i)?;
        }
        // In whatever order they get there.
        let mut starting: Vec<String> = demo.workers.iter().map(|w| w.0.clone()).collect();
        while !starting.is_empty() {
            let ready = demo
                .expect_any(&mut lines, &starting, "is running and ready")
                .await?;
            starting.retain(|name| *name != ready);
        }
        demo.start("client", &[("DIRECTOR_ADDR", director.clone())])?;
        demo.expect(&mut lines, "client", "📦 received token")
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    if let Err(e) = outcome {
        demo.processes.stop_all(GRACE).await;
        return Err(e);
    }

    let mut stage = Stage::Streaming {
        kill_at: Instant::now() + KILL_AFTER,
    };
    let signal = crate::shutdown_signal();
    tokio::pin!(signal);
    loop {
        let wake = match &stage {
            Stage::Streaming { kill_at } => (*kill_at).min(end),
            _ => end,
        };
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                demo.show(&line);
                stage = demo.advance(stage, &line).await?;
            }
            () = tokio::time::sleep_until(wake) => {
                if Instant::now() >= end {
                    break;
                }
                stage = demo.advance_on_time(stage).await;
            }
            _ = &mut signal => {
                println!("🎬 demo: Ctrl+C - stopping");
                break;
            }
        }
    }

    // The client first, so it prints its summary.
    demo.processes.terminate("client");
    let summary_deadline = Instant::now() + GRACE;
    while demo.summary.is_none() {
        match tokio::time::timeout_at(summary_deadline, lines.recv()).await {
            Ok(Some(line)) => demo.show(&line),
            _ => break,
        }
    }
    let killed = demo.processes.stop_all(GRACE).await;
    while let Ok(line) = lines.try_recv() {
        demo.show(&line);
    }
    println!(
        "🎬 demo finished after {:.0} s; every process stopped{}",
        started.elapsed().as_secs_f64(),
        if killed.is_empty() {
            String::new()
        } else {
            format!(" ({} needed SIGKILL)", killed.join(", "))
        }
    );
    demo.verdict()
}

impl Demo {
    fn start(
        &mut self,
        name: &str,
        envs: &[(&str, String)],
    ) -> Result<(), Box<dyn std::error::Error>> {
        let role = if name.starts_with("worker") {
            "worker"
        } else {
            name
        };
        // The processes' logs are shown at `error` unless RUST_LOG says otherwise.
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into());
        let pid = self.processes.spawn(
            name,
            &self.exe,
            &["--role", role],
            envs.iter()
                .map(|(k, v)| (*k, v.as_str()))
                .chain([("RUST_LOG", log.as_str())]),
        )?;
        println!("🎬 demo: started {name} (pid {pid})");
        Ok(())
    }

    fn start_worker(&mut self, index: usize) -> Result<(), Box<dyn std::error::Error>> {
        let (label, addr, failures) = self.workers[index].clone();
        self.start(
            &label,
            &[
                ("WORKER_LABEL", label.clone()),
                ("WORKER_ADDR", addr),
                ("DIRECTOR_ADDR", self.director.clone()),
                ("WORKER_FAILURE_ENABLED", failures.to_string()),
            ],
        )
    }

    /// Shows lines until `who` prints one containing `needle`.
    async fn expect(
        &mut self,
        lines: &mut tokio::sync::mpsc::UnboundedReceiver<Line>,
        who: &str,
        needle: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        self.expect_any(lines, &[who.to_owned()], needle)
            .await
            .map(drop)
    }

    /// Shows lines until one of `who` prints `needle`; returns which one.
    async fn expect_any(
        &mut self,
        lines: &mut tokio::sync::mpsc::UnboundedReceiver<Line>,
        who: &[String],
        needle: &str,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + STARTUP;
        loop {
            match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => {
                    self.show(&line);
                    if who.contains(&line.who) && line.text.contains(needle) {
                        return Ok(line.who);
                    }
                }
                _ => {
                    let who = who.join(", ");
                    return Err(format!("{who} did not print {needle:?} within {STARTUP:?}").into());
                }
            }
        }
    }

    /// Prints a child's line (tokens: every tenth, and the first after a switch).
    fn show(&mut self, line: &Line) {
        if line.who == "client" {
            if let Some(label) = connected_worker(&line.text) {
                self.serving = Some(label);
            }
            if line.text.starts_with("📋 summary") {
                self.summary = Some(line.text.clone());
            }
            if line.text.starts_with("📦 received token") {
                self.tokens_seen += 1;
                if self.tokens_seen % 10 != 1 {
                    return;
                }
            }
        }
        let stream = if line.stderr { " (log)" } else { "" };
        println!("[{}{stream}] {}", line.who, line.text);
    }

    async fn advance(
        &mut self,
        stage: Stage,
        line: &Line,
    ) -> Result<Stage, Box<dyn std::error::Error>> {
        let pool = if line.who == "director" {
            self.pool.feed(&line.text)
        } else {
            None
        };
        let token = line.who == "client" && line.text.starts_with("📦 received token");
        Ok(match stage {
            Stage::Killed { label, at }
                if token && self.serving.as_deref() != Some(label.as_str()) =>
            {
                let took = line.at.duration_since(at);
                println!(
                    "🎬 demo: the client's first token from {} arrived {} ms after the kill",
                    self.serving.as_deref().unwrap_or("?"),
                    took.as_millis()
                );
                self.kill_to_first_token = Some((label.clone(), took));
                Stage::Resumed { label }
            }
            Stage::Resumed { label } if pool.as_ref().is_some_and(|p| !pool_lists(p, &label)) => {
                println!("🎬 demo: the director dropped {label}; restarting it with the same label and address");
                let index = self.workers.iter().position(|w| w.0 == label).unwrap_or(0);
                self.start_worker(index)?;
                Stage::Restarted { label }
            }
            Stage::Restarted { label } if pool.as_ref().is_some_and(|p| pool_lists(p, &label)) => {
                println!("🎬 demo: {label} is back in the director's pool");
                self.back_in_pool = true;
                Stage::Done
            }
            other => other,
        })
    }

    async fn advance_on_time(&mut self, stage: Stage) -> Stage {
        match stage {
            Stage::Streaming { kill_at } if Instant::now() >= kill_at => {
                let Some(label) = self.serving.clone() else {
                    return Stage::Streaming {
                        kill_at: Instant::now() + Duration::from_secs(1),
                    };
                };
                let pid = self.processes.pid(&label).unwrap_or(0);
                println!("🎬 demo: kill -9 {label} (pid {pid}), the worker serving the client");
                let at = Instant::now();
                self.processes.kill(&label).await;
                Stage::Killed { label, at }
            }
            other => other,
        }
    }

    fn verdict(&self) -> Result<(), Box<dyn std::error::Error>> {
        let Some(summary) = &self.summary else {
            return Err("the client printed no summary".into());
        };
        println!(
            "🎬 demo summary (from the client): {}",
            summary.trim_start_matches("📋 summary: ")
        );
        match &self.kill_to_first_token {
            Some((label, took)) => println!(
                "🎬 kill -9 of {label}: the client's next token came {} ms later from another worker; {label} {} the pool after its restart",
                took.as_millis(),
                if self.back_in_pool { "was back in" } else { "was not yet back in" }
            ),
            None => println!("🎬 the kill -9 did not happen or the client did not resume before the end"),
        }
        if !summary.contains("missing/duplicated=0/0") {
            return Err(format!("tokens were lost or repeated: {summary}").into());
        }
        if summary.contains("failovers=0,") {
            return Err("no failover happened".into());
        }
        Ok(())
    }
}

/// `worker-b` from the client's "direct connection established to worker worker-b at ...".
pub fn connected_worker(text: &str) -> Option<String> {
    let rest = text
        .split("direct connection established to worker ")
        .nth(1)?;
    Some(rest.split(" at ").next()?.to_owned())
}
