//! The guide's cluster example end to end: the real `director`, `worker`
//! and `client` binaries as separate processes on loopback ports picked
//! here. Every process is killed by pid when the test ends, pass or fail
//! (`Processes` kills its children on drop).

use std::net::SocketAddr;
use std::time::Duration;

use rpcnet::cluster::{ClusterConfig, ClusterMembership, GOSSIP_METHOD};
use rpcnet::{RpcClient, RpcConfig, RpcError, RpcServer};
use rpcnet_cluster_example::certs::{CertDir, CLIENT_FILES, NODE_FILES};
use rpcnet_cluster_example::demo::connected_worker;
use rpcnet_cluster_example::director::{pool_lists, PoolStatusReader};
use rpcnet_cluster_example::supervise::{free_ports, Line, Processes, Transcript};
use tokio::time::Instant;

const DIRECTOR: &str = env!("CARGO_BIN_EXE_director");
const WORKER: &str = env!("CARGO_BIN_EXE_worker");
const CLIENT: &str = env!("CARGO_BIN_EXE_client");

/// docs/CLUSTER.md: the client's first token from another worker arrives
/// within this long after the worker serving it is killed.
const FAILOVER_BOUND: Duration = Duration::from_secs(2);
/// Start-up of one process (a loaded 2-core machine, debug build).
const STARTUP: Duration = Duration::from_secs(30);
/// docs/CLUSTER.md's bound for the membership to report a killed node
/// failed (4 s p99 with the default configuration), with wide margin for
/// a loaded 2-core machine, the registry and the print.
const DETECTION: Duration = Duration::from_secs(15);

struct Cluster {
    processes: Processes,
    log: Transcript,
    director: String,
}

impl Cluster {
    fn new(director_port: u16) -> Self {
        let (processes, rx) = Processes::new();
        Self {
            processes,
            log: Transcript::new(rx),
            director: format!("127.0.0.1:{director_port}"),
        }
    }

    fn start_director(&mut self) {
        self.processes
            .spawn(
                "director",
                DIRECTOR.as_ref(),
                &[],
                [("DIRECTOR_ADDR", self.director.as_str())],
            )
            .expect("start director");
    }

    fn start_worker(&mut self, label: &str, port: u16, failures: &[(&str, &str)]) {
        let addr = format!("127.0.0.1:{port}");
        let mut envs = vec![
            ("WORKER_LABEL", label),
            ("WORKER_ADDR", addr.as_str()),
            ("DIRECTOR_ADDR", self.director.as_str()),
        ];
        envs.extend_from_slice(failures);
        self.processes
            .spawn(label, WORKER.as_ref(), &[], envs)
            .expect("start worker");
    }

    fn start_client(&mut self, name: &str) {
        self.processes
            .spawn(
                name,
                CLIENT.as_ref(),
                &[],
                [("DIRECTOR_ADDR", self.director.as_str())],
            )
            .expect("start client");
    }

    /// The index of the first line from `who` at or after `since` containing `needle`.
    async fn expect(&mut self, since: usize, within: Duration, who: &str, needle: &str) -> usize {
        match self
            .log
            .wait_for(since, within, |l| l.who == who && l.text.contains(needle))
            .await
        {
            Some(i) => i,
            None => panic!(
                "{who} did not print {needle:?} within {within:?}; output:\n{}",
                self.dump()
            ),
        }
    }

    /// Waits until the director prints a pool status satisfying `pred`
    /// (reading its output from `since`); returns that status's last line.
    async fn expect_pool(
        &mut self,
        since: usize,
        within: Duration,
        what: &str,
        pred: impl Fn(&[String]) -> bool,
    ) -> usize {
        let deadline = Instant::now() + within;
        let mut reader = PoolStatusReader::default();
        let mut next = since;
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
            if let Some(pool) = reader.feed(&self.log.lines[i].text) {
                if pred(&pool) {
                    return i;
                }
            }
        }
    }

    /// Waits for lines from `who` containing `needles`, one after the
    /// other from `since`, each within `within` of the one before.
    async fn expect_in_order(
        &mut self,
        since: usize,
        within: Duration,
        who: &str,
        needles: &[&str],
    ) {
        let mut at = since;
        for needle in needles {
            at = self.expect(at, within, who, needle).await + 1;
        }
    }

    /// The index of the first line from `who` at or after `since` saying
    /// its stream is established to `worker`.
    async fn expect_connected(
        &mut self,
        since: usize,
        within: Duration,
        who: &str,
        worker: &str,
    ) -> usize {
        let needle = format!("established to worker {worker} ");
        self.expect(since, within, who, &needle).await
    }

    /// Waits until the director's pool lists worker-a and worker-b.
    async fn expect_both_workers(&mut self) {
        self.expect_pool(0, STARTUP, "listed both workers", |p| {
            pool_lists(p, "worker-a") && pool_lists(p, "worker-b")
        })
        .await;
    }

    /// Waits until `who` has printed `count` tokens in all.
    async fn expect_tokens(&mut self, who: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while tokens(&self.log.lines, who).len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if self
                .log
                .wait_for(self.log.lines.len(), left, |l| l.who == who && is_token(l))
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

    /// Stops the client `who` (SIGTERM) and returns its summary line.
    async fn stop_client(&mut self, who: &str) -> String {
        let since = self.log.lines.len();
        self.processes.terminate(who);
        let i = self
            .expect(since, Duration::from_secs(10), who, "📋 summary")
            .await;
        self.log.lines[i].text.clone()
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

/// A worker's environment for simulated failures: `run_ms` serving,
/// `warning_ms` draining, `down_ms` down, over and over.
fn failure_cycle<'a>(
    run_ms: &'a str,
    warning_ms: &'a str,
    down_ms: &'a str,
) -> [(&'static str, &'a str); 4] {
    [
        ("WORKER_FAILURE_ENABLED", "true"),
        ("WORKER_FAILURE_RUN_MS", run_ms),
        ("WORKER_FAILURE_WARNING_MS", warning_ms),
        ("WORKER_FAILURE_DOWN_MS", down_ms),
    ]
}

fn is_token(line: &Line) -> bool {
    !line.stderr && line.text.starts_with("📦 received token (sequence=")
}

/// The sequence numbers `who` printed, in order.
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

/// Asserts the client printed tokens 1, 2, ..., n: none missing, none repeated.
fn assert_unbroken(lines: &[Line], who: &str) -> usize {
    let seen = tokens(lines, who);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(*s, i as u64 + 1, "{who}'s tokens are not 1..n: {seen:?}");
    }
    seen.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_without_loss_and_rejoins_after_a_restart() {
    let ports = free_ports(3).unwrap();
    let mut cluster = Cluster::new(ports[0]);

    // The guide's troubleshooting note: a worker started before the
    // director keeps trying and joins once the director is up.
    cluster.start_worker("worker-a", ports[1], &[]);
    cluster
        .expect(0, STARTUP, "worker-a", "not reachable yet")
        .await;
    let since = cluster.log.lines.len();
    cluster.start_director();
    cluster
        .expect(
            since,
            STARTUP,
            "worker-a",
            "joined cluster with role=worker",
        )
        .await;
    cluster.start_worker("worker-b", ports[2], &[]);
    cluster.expect_both_workers().await;

    cluster.start_client("client");
    cluster.expect_tokens("client", 10, STARTUP).await;
    let serving = cluster
        .log
        .lines
        .iter()
        .rev()
        .filter(|l| l.who == "client")
        .find_map(|l| connected_worker(&l.text))
        .expect("the client named its worker");
    let other = if serving == "worker-a" {
        "worker-b"
    } else {
        "worker-a"
    };

    // kill -9 the worker serving the client.
    let since = cluster.log.lines.len();
    let killed_at = Instant::now();
    cluster.processes.kill(&serving).await;
    let connected = cluster
        .expect_connected(since, Duration::from_secs(10), "client", other)
        .await;
    let first = cluster
        .log
        .wait_for(connected, Duration::from_secs(10), |l| {
            l.who == "client" && is_token(l)
        })
        .await
        .expect("a token from the other worker");
    let took = cluster.log.lines[first].at.duration_since(killed_at);
    eprintln!("kill -9 of {serving}: first token from {other} after {took:?}");
    assert!(
        took <= FAILOVER_BOUND,
        "first token from {other} came {took:?} after the kill (bound {FAILOVER_BOUND:?})"
    );
    let before = tokens(&cluster.log.lines, "client").len();
    cluster
        .expect_tokens("client", before + 10, Duration::from_secs(10))
        .await;

    // The director drops the killed worker, then takes it back after a
    // restart with the same label and address.
    cluster
        .expect_pool(since, DETECTION, &format!("dropped {serving}"), |p| {
            !pool_lists(p, &serving)
        })
        .await;
    let since = cluster.log.lines.len();
    let port = if serving == "worker-a" {
        ports[1]
    } else {
        ports[2]
    };
    cluster.start_worker(&serving, port, &[]);
    cluster
        .expect_pool(since, STARTUP, &format!("listed {serving} again"), |p| {
            pool_lists(p, &serving)
        })
        .await;

    // ... and it receives work again: a second client goes to it, the
    // least loaded worker.
    let since = cluster.log.lines.len();
    cluster.start_client("client-2");
    cluster
        .expect_connected(since, STARTUP, "client-2", &serving)
        .await;
    cluster.expect_tokens("client-2", 5, STARTUP).await;

    // A graceful stop (SIGTERM, the guide's Ctrl+C): the worker ends its
    // streams, so client-2 switches without waiting for a timeout, and
    // the worker exits by itself.
    let since = cluster.log.lines.len();
    cluster.processes.terminate(&serving);
    cluster
        .expect(
            since,
            Duration::from_secs(5),
            "client-2",
            "is shutting down",
        )
        .await;
    cluster
        .expect_connected(since, Duration::from_secs(5), "client-2", other)
        .await;
    assert!(
        cluster
            .processes
            .wait_or_kill(&serving, Duration::from_secs(10))
            .await,
        "{serving} did not stop on SIGTERM"
    );
    let before = tokens(&cluster.log.lines, "client-2").len();
    cluster
        .expect_tokens("client-2", before + 3, Duration::from_secs(5))
        .await;
    let summary = cluster.stop_client("client-2").await;
    assert_unbroken(&cluster.log.lines, "client-2");
    assert!(summary.ends_with("missing/duplicated=0/0"), "{summary}");

    let summary = cluster.stop_client("client").await;
    let received = assert_unbroken(&cluster.log.lines, "client");
    assert!(
        summary.contains("failovers=1,") && summary.ends_with("missing/duplicated=0/0"),
        "{summary}"
    );
    eprintln!("client: {received} tokens, {summary}");
    let killed = cluster.processes.stop_all(Duration::from_secs(10)).await;
    assert!(killed.is_empty(), "{killed:?} did not stop on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_failures_over_several_cycles_lose_and_repeat_no_token() {
    let ports = free_ports(3).unwrap();
    let mut cluster = Cluster::new(ports[0]);
    cluster.start_director();
    cluster
        .expect(0, STARTUP, "director", "Director ready")
        .await;
    // Short cycles (the guide's are 10 s / 3 s / 5 s), and different ones,
    // so the client's worker keeps failing under it.
    cluster.start_worker("worker-a", ports[1], &failure_cycle("1500", "500", "1500"));
    cluster.start_worker("worker-b", ports[2], &failure_cycle("2500", "500", "1000"));
    cluster.expect_both_workers().await;
    cluster.start_client("client");
    cluster.expect_tokens("client", 5, STARTUP).await;

    // Two whole cycles of worker-a from here, and the client thrown off
    // its worker by a simulated failure at least twice.
    let since = cluster.log.lines.len();
    let cycle = [
        "💥 Worker failed!",
        "✅ Worker recovered and ready to serve!",
    ];
    cluster
        .expect_in_order(
            since,
            Duration::from_secs(15),
            "worker-a",
            &[cycle, cycle].concat(),
        )
        .await;
    cluster
        .expect_in_order(
            since,
            Duration::from_secs(20),
            "client",
            &["(simulated failure)"; 2],
        )
        .await;
    cluster
        .expect_pool(
            since,
            Duration::from_secs(1),
            "showed a draining worker",
            |p| p.iter().any(|e| e.ends_with(", draining)")),
        )
        .await;
    let before = tokens(&cluster.log.lines, "client").len();
    cluster
        .expect_tokens("client", before + 5, Duration::from_secs(15))
        .await;

    let summary = cluster.stop_client("client").await;
    let received = assert_unbroken(&cluster.log.lines, "client");
    assert!(summary.ends_with("missing/duplicated=0/0"), "{summary}");
    assert!(
        !summary.contains("failovers=0,") && !summary.contains("failovers=1,"),
        "{summary}"
    );
    eprintln!("client: {received} tokens, {summary}");
    let killed = cluster.processes.stop_all(Duration::from_secs(10)).await;
    assert!(killed.is_empty(), "{killed:?} did not stop on SIGTERM");
}

/// A cluster member run inside the test with the example's node
/// configuration (member certificate, client certificates optional).
struct Member {
    cluster: ClusterMembership,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<Result<(), RpcError>>,
}

impl Member {
    async fn start(certs: &CertDir) -> Self {
        let mut server = RpcServer::new(certs.node_config("127.0.0.1:0"));
        let quic = server.bind().expect("bind a member");
        let handle = server.handle();
        let addr = handle.socket_addr().expect("bound");
        let server = tokio::spawn(async move { server.start(quic).await });
        let config = ClusterConfig::default()
            .with_server(handle)
            .with_join_timeout(Duration::from_secs(2));
        let cluster = ClusterMembership::new(config).await.expect("membership");
        Self {
            cluster,
            addr,
            server,
        }
    }

    /// Whether this member hears of a node at `addr` within `within`.
    async fn hears_of(&self, addr: SocketAddr, within: Duration) -> bool {
        let mut view = self.cluster.watch();
        tokio::time::timeout(
            within,
            view.wait_for(|v| v.members.iter().any(|m| m.addr() == addr)),
        )
        .await
        .is_ok_and(|seen| seen.is_ok())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Only members change membership: the client's credentials (the CA only, or an
/// application certificate a deployment may add) cannot change membership.
/// A genuine join announce of a would-be member X, addressed to the
/// director's address, is replayed to the real director: with the client's
/// credentials it is refused and no member ever hears of X; the same bytes
/// from a member certificate make the director take X in (the control, so
/// the refusal is the credential's doing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_credentials_cannot_change_membership() {
    let node_certs = CertDir::find(&NODE_FILES).expect("node certificates");
    let client_certs = CertDir::find(&CLIENT_FILES).expect("client certificates");
    let ports = free_ports(1).unwrap();
    let mut cluster = Cluster::new(ports[0]);
    let director: SocketAddr = cluster.director.parse().unwrap();

    // X announces itself to a stand-in listening where the director will
    // be; X is gone (and the stand-in too) before the director starts.
    let (x, announce) = {
        let mut stand_in = RpcServer::new(node_certs.node_config(&cluster.director));
        let quic = stand_in.bind().expect("bind the stand-in");
        let (packets, mut captured) = tokio::sync::mpsc::unbounded_channel();
        stand_in
            .register(GOSSIP_METHOD, move |packet| {
                let _ = packets.send(packet);
                async { Ok(Vec::new()) }
            })
            .await;
        let stop = stand_in.shutdown_handle();
        let serving = tokio::spawn(async move { stand_in.start(quic).await });
        let x = Member::start(&node_certs).await;
        let joining = {
            let cluster = x.cluster.clone();
            tokio::spawn(async move { cluster.join(vec![director]).await })
        };
        let announce = tokio::time::timeout(Duration::from_secs(10), captured.recv())
            .await
            .expect("X announced itself within 10 s")
            .expect("a packet");
        joining.abort();
        let _ = joining.await;
        let x_addr = x.addr;
        drop(x);
        stop.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
        (x_addr, announce)
    };
    // The stand-in's endpoint lets go of the port shortly after its task ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::UdpSocket::bind(director).is_err() {
        assert!(
            Instant::now() < deadline,
            "the stand-in never released {director}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.start_director();
    cluster
        .expect(0, STARTUP, "director", "Director ready")
        .await;
    // Y, a real member, watches the director's cluster.
    let y = Member::start(&node_certs).await;
    let deadline = Instant::now() + STARTUP;
    while let Err(e) = y.cluster.join(vec![director]).await {
        assert!(
            Instant::now() < deadline,
            "Y could not join the director: {e}"
        );
    }

    let client = client_certs.client_config();
    let with_application_certificate = client_certs.client_config().with_client_identity(
        node_certs.file("client.pem"),
        node_certs.file("client-key.pem"),
    );
    for (holding, config) in [
        ("the cluster CA only", client),
        ("an application certificate", with_application_certificate),
    ] {
        let caller = RpcClient::connect(director, config)
            .await
            .unwrap_or_else(|e| panic!("a client holding {holding} connects: {e}"));
        let refused = caller
            .call(GOSSIP_METHOD, announce.clone())
            .await
            .expect_err("gossip from a client");
        assert!(
            matches!(&refused, RpcError::RemoteError(m) if m.contains("member certificate")),
            "a client holding {holding}: {refused:?}"
        );
    }
    assert!(
        !y.hears_of(x, Duration::from_secs(2)).await,
        "the client's replayed announce let {x} in"
    );

    let member = RpcClient::connect(
        director,
        RpcConfig::new(node_certs.file("ca.pem"), "127.0.0.1:0").with_client_identity(
            node_certs.file("test_cert.pem"),
            node_certs.file("test_key.pem"),
        ),
    )
    .await
    .expect("a member connects");
    member
        .call(GOSSIP_METHOD, announce)
        .await
        .expect("gossip from a member certificate is taken in");
    assert!(
        y.hears_of(x, Duration::from_secs(10)).await,
        "the director never took in {x} from a member's announce"
    );
    let killed = cluster.processes.stop_all(Duration::from_secs(10)).await;
    assert!(killed.is_empty(), "{killed:?} did not stop on SIGTERM");
}
