//! The operator's view of a running cluster: the admin endpoint's metrics
//! (read back through a recorder, and checked by Prometheus's own parser),
//! readiness, the `rpcnet` command against real `rpcnet-node` processes,
//! and the status page in headless Chromium.
//!
//! Tests that need a program the machine may lack (`promtool`,
//! `chromium`; `scripts/install-test-deps.sh` installs both) say
//! `SKIPPED: <why>` on stderr and return.

#![cfg(feature = "admin")]

#[cfg(feature = "cli")]
mod cli;
mod endpoint;
mod page;
mod sampling;

#[path = "../support/http.rs"]
mod http;
#[path = "../support/process.rs"]
mod process;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use process::{ready_first, Proc};
use rpcnet::cluster::{MembershipReport, MEMBERS_METHOD};
use rpcnet::{RpcClient, RpcConfig};

/// How long a process cluster may take to converge (every node sees the
/// others alive with their tags).
const CONVERGENCE: Duration = Duration::from_secs(20);

pub(crate) fn cert(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// Says why a test does nothing, on stderr past libtest's capture, so the
/// message shows in `cargo test`'s output although the test passes.
pub(crate) fn skip(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Whether `program` is on PATH.
pub(crate) fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The build's target directory (where the test binary's `deps/` is).
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// A GET over HTTP/1.1 with a bound: the status code and the body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, head, body) = http::get(addr, path).await;
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "the admin endpoint sends whole bodies"
    );
    (status, body)
}

/// A node's membership report, asked over RPC with no client certificate.
pub(crate) async fn report(addr: SocketAddr) -> Option<MembershipReport> {
    let config = RpcConfig::new(cert("ca.pem"), "127.0.0.1:0").with_server_name("localhost");
    let client = RpcClient::connect(addr, config).await.ok()?;
    let answer = client
        .call_with_timeout(MEMBERS_METHOD, Vec::new(), Duration::from_secs(2))
        .await
        .ok()?;
    MembershipReport::decode(&answer).ok()
}

/// A node of a process cluster.
pub(crate) struct Node {
    pub(crate) proc: Proc,
    /// Its admin endpoint, if it has one.
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) tags: Vec<(String, String)>,
}

impl Node {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.proc.addr
    }
}

/// An `rpcnet-node` process with `tags`, joining through `seed`, with an
/// admin endpoint on a free loopback port if `admin`.
pub(crate) async fn start_node(
    seed: Option<SocketAddr>,
    tags: &[(&str, &str)],
    admin: bool,
) -> Node {
    let mut command = process::command(env!("CARGO_BIN_EXE_rpcnet-node"));
    command.args(["--listen", "127.0.0.1:0"]);
    if let Some(seed) = seed {
        command.args(["--seed", &seed.to_string()]);
    }
    for (k, v) in tags {
        command.args(["--tag", &format!("{k}={v}")]);
    }
    if admin {
        command.args(["--admin", "127.0.0.1:0"]);
    }
    let mut proc = Proc::start(&mut command, Duration::from_secs(20), ready_first).await;
    let admin = if admin {
        let line = proc
            .wait_new_line(Duration::from_secs(10), |l| l.starts_with("ADMIN "))
            .await
            .expect("an ADMIN line after READY");
        Some(
            line["ADMIN ".len()..]
                .parse()
                .expect("an address after ADMIN"),
        )
    } else {
        None
    };
    Node {
        proc,
        admin,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Three `rpcnet-node` processes (the first with an admin endpoint),
/// tagged `role=seed`, `role=worker,zone=eu` and `role=worker,zone=us`,
/// once every one sees the other two alive with their tags.
pub(crate) async fn three_nodes() -> Vec<Node> {
    let a = start_node(None, &[("role", "seed")], true).await;
    let seed = Some(a.addr());
    let b = start_node(seed, &[("role", "worker"), ("zone", "eu")], false).await;
    let c = start_node(seed, &[("role", "worker"), ("zone", "us")], false).await;
    let nodes = vec![a, b, c];
    converge(&nodes).await;
    nodes
}

/// Waits until every node reports every other alive with its tags.
pub(crate) async fn converge(nodes: &[Node]) {
    let deadline = tokio::time::Instant::now() + CONVERGENCE;
    for node in nodes {
        loop {
            let converged = report(node.addr()).await.is_some_and(|report| {
                nodes
                    .iter()
                    .filter(|o| o.addr() != node.addr())
                    .all(|other| {
                        report.members.iter().any(|m| {
                            m.addr == other.addr()
                                && m.status == "alive"
                                && other.tags.iter().all(|(k, v)| m.tags.get(k) == Some(v))
                        })
                    })
            });
            if converged {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not see the others alive with their tags within {CONVERGENCE:?}: {:?}",
                node.addr(),
                report(node.addr()).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
