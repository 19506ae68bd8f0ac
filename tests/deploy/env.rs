//! `rpcnet-node` and `rpcnet-worker` started with no flags, configured by
//! `RPCNET_*` variables alone (as the Kubernetes manifests configure them),
//! in a directory where the default certificate paths do not exist: what
//! they do shows that every variable was read. Loopback only; every
//! process is killed by pid when its `Proc` is dropped.

use std::net::SocketAddr;
use std::time::Duration;

use rpcnet::{RpcClient, RpcConfig};
use tokio::process::Command;

use super::process::{self, ready_first, Proc};
use super::{repo, TempDir};

/// How long a process may take to start, join or answer.
const PATIENCE: Duration = Duration::from_secs(20);

/// A working directory holding the test PKI under other names than the
/// programs' defaults (`certs/test_cert.pem`, ...), which do not exist there.
fn pki() -> TempDir {
    let dir = TempDir::new("env");
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    for (from, to) in [
        ("test_cert.pem", "member.pem"),
        ("test_key.pem", "member-key.pem"),
        ("ca.pem", "ca.pem"),
    ] {
        std::fs::copy(repo("certs").join(from), dir.path().join("tls").join(to)).unwrap();
    }
    dir
}

/// `program` run in `dir` with `vars` and none of the test's own
/// `RPCNET_*` variables.
fn command(program: &str, dir: &TempDir, vars: &[(&str, &str)]) -> Command {
    let mut command = process::command(program);
    command.current_dir(dir.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RPCNET_") {
            command.env_remove(name);
        }
    }
    command.envs(vars.iter().copied());
    command
}

/// The certificate variables, relative to the [`pki`] directory.
const TLS: [(&str, &str); 3] = [
    ("RPCNET_CERT", "tls/member.pem"),
    ("RPCNET_KEY", "tls/member-key.pem"),
    ("RPCNET_CA", "tls/ca.pem"),
];

/// The address in the `ADMIN <addr>` line that follows `READY`.
async fn admin_addr(proc: &mut Proc) -> SocketAddr {
    let line = proc
        .wait_new_line(PATIENCE, |l| l.starts_with("ADMIN "))
        .await
        .expect("an ADMIN line after READY");
    line["ADMIN ".len()..]
        .parse()
        .expect("an address after ADMIN")
}

/// A GET over HTTP/1.1 with a bound: the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = super::http::get(addr, path).await;
    (status, body)
}

/// Asks `/ready` until it answers 200. Readiness has no event of its own
/// (it turns 200 when the program marks itself serving, just after its
/// join), so this polls, within [`PATIENCE`].
async fn until_ready(admin: SocketAddr) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = http_get(admin, "/ready").await;
        if answer.0 == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{admin}/ready still {answer:?} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The tags of the member at `addr` in a `/members` document.
fn tags_of(members: &serde_json::Value, addr: SocketAddr) -> Option<serde_json::Value> {
    let addr = addr.to_string();
    if members["local"]["addr"] == addr.as_str() {
        return Some(members["local"]["tags"].clone());
    }
    members["members"]
        .as_array()?
        .iter()
        .find(|m| m["addr"] == addr.as_str())
        .map(|m| m["tags"].clone())
}

/// A client of a worker (workers require a client certificate).
async fn worker_client(addr: SocketAddr) -> RpcClient {
    let config = RpcConfig::new(repo("certs/ca.pem"), "127.0.0.1:0")
        .with_client_identity(repo("certs/test_cert.pem"), repo("certs/test_key.pem"));
    RpcClient::connect(addr, config).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_and_a_worker_configured_only_by_variables_join_drain_and_leave() {
    let dir = pki();
    let mut vars = vec![
        ("RPCNET_LISTEN", "127.0.0.1:0"),
        ("RPCNET_TAGS", "role=seed,zone=eu"),
        ("RPCNET_GENERATION", "4242"),
        ("RPCNET_ADMIN_ADDR", "127.0.0.1:0"),
    ];
    vars.extend(TLS);
    let mut node = Proc::start(
        &mut command(env!("CARGO_BIN_EXE_rpcnet-node"), &dir, &vars),
        PATIENCE,
        ready_first,
    )
    .await;
    let node_admin = admin_addr(&mut node).await;

    // The seed by name: rpcnet-worker resolves it (join_named).
    let seed = format!("localhost:{}", node.addr.port());
    // Listening on every interface, known by the address it advertises.
    let mut vars = vec![
        ("RPCNET_LISTEN", "0.0.0.0:0"),
        ("RPCNET_ADVERTISE", "127.0.0.1"),
        ("RPCNET_SEEDS", seed.as_str()),
        ("RPCNET_LABEL", "env-worker"),
        ("RPCNET_TAGS", "zone=us,role=not-a-worker"),
        ("RPCNET_DRAIN_MS", "15000"),
        ("RPCNET_ADMIN_ADDR", "127.0.0.1:0"),
    ];
    vars.extend(TLS);
    let mut worker = Proc::start(
        &mut command(env!("CARGO_BIN_EXE_rpcnet-worker"), &dir, &vars),
        PATIENCE,
        ready_first,
    )
    .await;
    let worker_admin = admin_addr(&mut worker).await;
    assert_eq!(
        worker.addr.ip().to_string(),
        "127.0.0.1",
        "READY names the advertised address (RPCNET_ADVERTISE), not 0.0.0.0"
    );
    let joined_node = format!("EVENT joined {} 4242", node.addr);
    assert!(
        worker.wait_line(PATIENCE, |l| l == joined_node).await,
        "the worker did not join the node, generation 4242 (RPCNET_GENERATION): {:?}",
        worker.seen
    );
    let joined_worker = format!("EVENT joined {} ", worker.addr);
    assert!(
        node.wait_line(PATIENCE, |l| l.starts_with(&joined_worker))
            .await,
        "the node did not see the worker join: {:?}",
        node.seen
    );

    // Tags from RPCNET_TAGS (the worker's role and label are its own), as
    // the worker sees them; the node's may come in a tags event after the
    // join.
    let (_, members) = http_get(worker_admin, "/members").await;
    let members: serde_json::Value = serde_json::from_str(&members).unwrap();
    assert_eq!(
        tags_of(&members, worker.addr).unwrap(),
        serde_json::json!({"role": "worker", "label": "env-worker", "zone": "us"})
    );
    let tags_event = format!("EVENT tags {} ", node.addr);
    loop {
        let (_, members) = http_get(worker_admin, "/members").await;
        let members: serde_json::Value = serde_json::from_str(&members).unwrap();
        if tags_of(&members, node.addr) == Some(serde_json::json!({"role": "seed", "zone": "eu"})) {
            break;
        }
        assert!(
            worker
                .wait_new_line(PATIENCE, |l| l.starts_with(&tags_event))
                .await
                .is_some(),
            "the node's tags never reached the worker: {members}"
        );
    }

    // Ready, and the label answers calls.
    until_ready(worker_admin).await;
    until_ready(node_admin).await;
    let client = worker_client(worker.addr).await;
    assert_eq!(
        client.call("whoami", Vec::new()).await.unwrap(),
        b"env-worker"
    );

    // SIGTERM: not ready from DRAINING on, a call in flight finishes, then
    // the worker leaves and exits 0.
    let in_flight = tokio::spawn(async move { client.call("sleep", b"2000".to_vec()).await });
    worker.signal("-TERM");
    assert!(
        worker.wait_line(PATIENCE, |l| l == "DRAINING").await,
        "no DRAINING: {:?}",
        worker.seen
    );
    assert_eq!(
        http_get(worker_admin, "/ready").await,
        (503, "not ready: draining\n".to_string())
    );
    assert_eq!(in_flight.await.unwrap().unwrap(), b"env-worker");
    assert!(
        worker.wait_line(PATIENCE, |l| l == "SERVED 2").await,
        "{:?}",
        worker.seen
    );
    assert!(
        worker.wait_line(PATIENCE, |l| l == "LEFT").await,
        "{:?}",
        worker.seen
    );
    let left_worker = format!("EVENT left {} ", worker.addr);
    assert!(
        node.wait_line(PATIENCE, |l| l.starts_with(&left_worker))
            .await,
        "the node did not see the worker leave: {:?}",
        node.seen
    );
    let status = tokio::time::timeout(PATIENCE, worker.child.wait())
        .await
        .expect("the worker exits after LEFT")
        .unwrap();
    assert!(status.success(), "worker: {status}");

    // The node leaves on SIGTERM too.
    node.signal("-TERM");
    assert!(
        node.wait_line(PATIENCE, |l| l == "LEFT").await,
        "{:?}",
        node.seen
    );
    let status = tokio::time::timeout(PATIENCE, node.child.wait())
        .await
        .expect("the node exits after LEFT")
        .unwrap();
    assert!(status.success(), "node: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_wins_over_its_variable_and_a_bad_variable_alone_is_refused() {
    let dir = pki();
    let mut vars = vec![
        ("RPCNET_LISTEN", "not-an-address"),
        ("RPCNET_LABEL", "from-the-variable"),
        ("RPCNET_DRAIN_MS", "soon"),
    ];
    vars.extend(TLS);
    let mut worker = command(env!("CARGO_BIN_EXE_rpcnet-worker"), &dir, &vars);
    worker.args([
        "--listen",
        "127.0.0.1:0",
        "--label",
        "from-the-flag",
        "--drain-ms",
        "1000",
    ]);
    let mut worker = Proc::start(&mut worker, PATIENCE, ready_first).await;
    let client = worker_client(worker.addr).await;
    assert_eq!(
        client.call("whoami", Vec::new()).await.unwrap(),
        b"from-the-flag"
    );
    worker.signal("-TERM");
    assert!(
        worker.wait_line(PATIENCE, |l| l == "LEFT").await,
        "{:?}",
        worker.seen
    );

    // Without the flag, the variable is read, and refused with its name.
    let mut refused = command(env!("CARGO_BIN_EXE_rpcnet-worker"), &dir, &vars);
    refused.stdout(std::process::Stdio::null());
    refused.stderr(std::process::Stdio::piped());
    let out = tokio::time::timeout(PATIENCE, refused.output())
        .await
        .expect("a refusal at once")
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "RPCNET_DRAIN_MS=soon was accepted");
    assert!(
        said.contains("soon") && said.contains("--drain-ms"),
        "{said}"
    );
}

/// A stop (SIGTERM) that comes while the program is still joining (its
/// seed never answers, so the join would wait for `join_timeout`, 10 s):
/// it leaves at once and exits 0, as a stop does later, instead of being
/// ended by the signal (exit 143), as a pod stopped during a parallel
/// start would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_joining_leaves_gracefully() {
    let dir = pki();
    for program in [
        env!("CARGO_BIN_EXE_rpcnet-worker"),
        env!("CARGO_BIN_EXE_rpcnet-node"),
    ] {
        let mut vars = vec![
            ("RPCNET_LISTEN", "127.0.0.1:0"),
            // Nothing answers there.
            ("RPCNET_SEEDS", "127.0.0.1:9"),
        ];
        vars.extend(TLS);
        let mut proc = Proc::start(&mut command(program, &dir, &vars), PATIENCE, ready_first).await;
        proc.signal("-TERM");
        assert!(
            proc.wait_line(Duration::from_secs(8), |l| l == "LEFT")
                .await,
            "{program}: no LEFT within 8 s of a SIGTERM while joining: {:?}",
            proc.seen
        );
        let status = tokio::time::timeout(PATIENCE, proc.child.wait())
            .await
            .expect("the program exits")
            .expect("wait");
        assert!(status.success(), "{program}: {status:?}, {:?}", proc.seen);
        assert!(
            !proc.seen.iter().any(|l| l.starts_with("JOIN-FAILED")),
            "{program} waited for the join to time out: {:?}",
            proc.seen
        );
    }
}
