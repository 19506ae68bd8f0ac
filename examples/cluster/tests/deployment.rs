//! The example deployed beyond the guide's commands: the admin endpoint
//! (`RPCNET_ADMIN_ADDR`), a director and a worker bound to the wildcard
//! address and advertising another (`DIRECTOR_ADVERTISE`,
//! `WORKER_ADVERTISE`), and the director reached by name
//! (`DIRECTOR_SEED`). The real binaries as separate processes, on
//! loopback; every process is killed by pid when the test ends, pass or
//! fail (`Processes` kills its children on drop).

#[path = "../../../tests/support/http.rs"]
mod http;

use std::net::SocketAddr;
use std::time::Duration;

use rpcnet_cluster_example::admin::admin_addr_in;
use rpcnet_cluster_example::director::{pool_lists, PoolStatusReader};
use rpcnet_cluster_example::supervise::{free_ports, Line, Processes, Transcript};
use tokio::time::Instant;

const DIRECTOR: &str = env!("CARGO_BIN_EXE_director");
const WORKER: &str = env!("CARGO_BIN_EXE_worker");
const CLIENT: &str = env!("CARGO_BIN_EXE_client");

/// Start-up of one process (a loaded 2-core machine, debug build).
const STARTUP: Duration = Duration::from_secs(30);
/// A step that needs no start-up: a stop, a few tokens.
const STEP: Duration = Duration::from_secs(10);

struct Run {
    processes: Processes,
    log: Transcript,
}

impl Run {
    fn new() -> Self {
        let (processes, rx) = Processes::new();
        Self {
            processes,
            log: Transcript::new(rx),
        }
    }

    fn start(&mut self, name: &str, program: &str, envs: &[(&str, &str)]) {
        self.processes
            .spawn(name, program.as_ref(), &[], envs.iter().copied())
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
    }

    /// The index of the first stdout line from `who` at or after `since`
    /// containing `needle`.
    async fn expect(&mut self, since: usize, within: Duration, who: &str, needle: &str) -> usize {
        match self
            .log
            .wait_for(since, within, |l| {
                l.who == who && !l.stderr && l.text.contains(needle)
            })
            .await
        {
            Some(i) => i,
            None => panic!(
                "{who} did not print {needle:?} within {within:?}; output:\n{}",
                self.dump()
            ),
        }
    }

    /// The admin endpoint `who` printed it serves.
    async fn admin_of(&mut self, who: &str) -> SocketAddr {
        let i = self.expect(0, STARTUP, who, "Admin endpoint at").await;
        admin_addr_in(&self.log.lines[i].text)
            .unwrap_or_else(|| panic!("no address in {:?}", self.log.lines[i].text))
    }

    /// Waits until the director prints a pool status satisfying `pred`.
    async fn expect_pool(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&[String]) -> bool,
    ) {
        let deadline = Instant::now() + within;
        let mut reader = PoolStatusReader::default();
        let mut next = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(i) = self
                .log
                .wait_for(next, left, |l| l.who == "director" && !l.stderr)
                .await
            else {
                panic!(
                    "the director's pool never {what} within {within:?}; output:\n{}",
                    self.dump()
                );
            };
            next = i + 1;
            if reader
                .feed(&self.log.lines[i].text)
                .is_some_and(|p| pred(&p))
            {
                return;
            }
        }
    }

    /// Waits until `who` has printed `count` tokens in all.
    async fn expect_tokens(&mut self, who: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while tokens(&self.log.lines, who).len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self.log.lines.len();
            if self
                .log
                .wait_for(next, left, |l| l.who == who && is_token(l))
                .await
                .is_none()
            {
                panic!(
                    "{who} received fewer than {count} tokens; output:\n{}",
                    self.dump()
                );
            }
        }
    }

    fn dump(&mut self) -> String {
        self.log.drain();
        self.log
            .lines
            .iter()
            .filter(|l| !is_token(l))
            .map(|l| format!("[{}] {}", l.who, l.text))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn is_token(line: &Line) -> bool {
    !line.stderr && line.text.starts_with("📦 received token (sequence=")
}

fn tokens(lines: &[Line], who: &str) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l.who == who && is_token(l))
        .map(|l| {
            let rest = l.text.trim_start_matches("📦 received token (sequence=");
            rest[..rest.find(',').expect("token line")]
                .parse()
                .expect("sequence")
        })
        .collect()
}

/// `GET path` from an admin endpoint: the status and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http::get(addr, path).await;
    (status, body)
}

/// `RPCNET_ADMIN_ADDR`: the director's and a worker's `/ready` answer 503
/// while the worker waits for the director, 200 once each is up, and 503
/// from the moment a SIGTERM starts the worker's shutdown, while it is
/// still running; `/alive` answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_answers_ready_once_up_and_not_ready_from_sigterm_on() {
    let ports = free_ports(2).unwrap();
    let director = format!("127.0.0.1:{}", ports[0]);
    let worker = format!("127.0.0.1:{}", ports[1]);
    let mut run = Run::new();

    // The worker first: it waits for the director, not ready meanwhile.
    run.start(
        "worker-a",
        WORKER,
        &[
            ("WORKER_LABEL", "worker-a"),
            ("WORKER_ADDR", &worker),
            ("DIRECTOR_ADDR", &director),
            ("RPCNET_ADMIN_ADDR", "127.0.0.1:0"),
        ],
    );
    let worker_admin = run.admin_of("worker-a").await;
    run.expect(0, STARTUP, "worker-a", "not reachable yet")
        .await;
    assert_eq!(
        http_get(worker_admin, "/ready").await,
        (503, "not ready: joining\n".into()),
        "a worker that has not joined"
    );
    assert_eq!(http_get(worker_admin, "/alive").await.0, 200);

    run.start(
        "director",
        DIRECTOR,
        &[
            ("DIRECTOR_ADDR", &director),
            ("RPCNET_ADMIN_ADDR", "127.0.0.1:0"),
        ],
    );
    let director_admin = run.admin_of("director").await;
    run.expect(0, STARTUP, "director", "🚀 Director ready")
        .await;
    assert_eq!(
        http_get(director_admin, "/ready").await,
        (200, "ready\n".into()),
        "the director once up"
    );
    assert_eq!(http_get(director_admin, "/alive").await.0, 200);
    run.expect(0, STARTUP, "worker-a", "is running and ready")
        .await;
    assert_eq!(
        http_get(worker_admin, "/ready").await,
        (200, "ready\n".into()),
        "the worker once it joined"
    );
    // The director's endpoint reports its registry's workers.
    run.expect_pool(STARTUP, "listed worker-a", |p| pool_lists(p, "worker-a"))
        .await;
    let (status, members) = http_get(director_admin, "/members").await;
    assert_eq!(status, 200);
    assert!(
        members.contains(&format!("\"addr\":\"{worker}\"")) && members.contains("\"in_flight\""),
        "the director's /members: {members}"
    );

    // SIGTERM: not ready before the shutdown begins, while still running.
    let since = run.log.lines.len();
    run.processes.terminate("worker-a");
    let shutting_down = run.expect(since, STEP, "worker-a", "shutting down").await;
    assert_eq!(
        http_get(worker_admin, "/ready").await,
        (503, "not ready: draining\n".into()),
        "the worker after SIGTERM"
    );
    run.expect(
        shutting_down,
        STEP,
        "worker-a",
        "👋 Worker 'worker-a' stopped",
    )
    .await;
    assert!(
        run.processes.wait_or_kill("worker-a", STEP).await,
        "worker-a did not stop on SIGTERM"
    );

    let since = run.log.lines.len();
    run.processes.terminate("director");
    run.expect(since, STEP, "director", "🛑 Director shutting down")
        .await;
    assert_eq!(
        http_get(director_admin, "/ready").await,
        (503, "not ready: draining\n".into()),
        "the director after SIGTERM"
    );
    let killed = run.processes.stop_all(STEP).await;
    assert!(killed.is_empty(), "{killed:?} did not stop on SIGTERM");
}

/// A director and a worker bound to 0.0.0.0 advertise 127.0.0.1
/// (`DIRECTOR_ADVERTISE`, `WORKER_ADVERTISE`); the worker and the client
/// reach the director by name (`DIRECTOR_SEED=localhost:PORT`; their
/// `DIRECTOR_ADDR` points where nothing listens). The worker joins, the
/// director lists it at its advertised address and assigns it, and the
/// client streams from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_bound_to_the_wildcard_address_advertise_another_and_serve_the_client() {
    let ports = free_ports(3).unwrap();
    let bind_director = format!("0.0.0.0:{}", ports[0]);
    let seed = format!("localhost:{}", ports[0]);
    let bind_worker = format!("0.0.0.0:{}", ports[1]);
    let advertised_worker = format!("127.0.0.1:{}", ports[1]);
    let nowhere = format!("127.0.0.1:{}", ports[2]);
    let mut run = Run::new();

    run.start(
        "director",
        DIRECTOR,
        &[
            ("DIRECTOR_ADDR", &bind_director),
            ("DIRECTOR_ADVERTISE", "127.0.0.1"),
        ],
    );
    run.expect(
        0,
        STARTUP,
        "director",
        &format!("known to the cluster as 127.0.0.1:{}", ports[0]),
    )
    .await;
    run.expect(0, STARTUP, "director", "🚀 Director ready")
        .await;

    run.start(
        "worker-w",
        WORKER,
        &[
            ("WORKER_LABEL", "worker-w"),
            ("WORKER_ADDR", &bind_worker),
            ("WORKER_ADVERTISE", "127.0.0.1"),
            ("DIRECTOR_SEED", &seed),
            ("DIRECTOR_ADDR", &nowhere),
        ],
    );
    run.expect(
        0,
        STARTUP,
        "worker-w",
        &format!("known to the cluster as {advertised_worker}"),
    )
    .await;
    run.expect(0, STARTUP, "worker-w", "is running and ready")
        .await;
    let listed = format!("worker-w at {advertised_worker} ");
    run.expect_pool(STARTUP, "listed worker-w at its advertised address", |p| {
        p.iter().any(|e| e.starts_with(&listed))
    })
    .await;

    run.start(
        "client",
        CLIENT,
        &[("DIRECTOR_SEED", &seed), ("DIRECTOR_ADDR", &nowhere)],
    );
    run.expect(
        0,
        STARTUP,
        "client",
        &format!("established to worker worker-w at {advertised_worker}"),
    )
    .await;
    run.expect_tokens("client", 5, STARTUP).await;

    let since = run.log.lines.len();
    run.processes.terminate("client");
    let i = run.expect(since, STEP, "client", "📋 summary").await;
    let summary = run.log.lines[i].text.clone();
    assert!(summary.ends_with("missing/duplicated=0/0"), "{summary}");
    let killed = run.processes.stop_all(STEP).await;
    assert!(killed.is_empty(), "{killed:?} did not stop on SIGTERM");
}
