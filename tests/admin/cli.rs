//! The `rpcnet` command against a live three-node cluster of
//! `rpcnet-node` processes: `members`, `call` in every mode, `health`,
//! and `certs`.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use rpcnet::cluster::MembershipReport;
use tokio::io::AsyncWriteExt;

use super::{start_node, three_nodes, Node};

/// Runs `rpcnet args...` in the package directory (where `certs/` is),
/// feeding it `stdin`; at most 30 s.
async fn rpcnet(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rpcnet"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("rpcnet starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("rpcnet {args:?} ran over 30 s"))
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn tags_text(node: &Node) -> String {
    let mut tags = node.tags.clone();
    tags.sort();
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_lists_calls_and_probes_a_live_three_node_cluster() {
    let nodes = three_nodes().await;
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();

    // members: every node's table has all three, with their tags, alive.
    for (i, addr) in addrs.iter().enumerate() {
        let table = ok(rpcnet(&["members", addr], b"").await, "members");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["ADDRESS", "GENERATION", "STATUS", "PHI", "TAGS"],
            "{table}"
        );
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[1].starts_with(addr.as_str()),
            "the node asked comes first: {table}"
        );
        for node in &nodes {
            let row = lines
                .iter()
                .find(|l| l.starts_with(&node.addr().to_string()))
                .unwrap_or_else(|| panic!("{} missing from {addr}'s table:\n{table}", node.addr()));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cells[2], "alive", "{row}");
            assert_eq!(cells[4], tags_text(node), "{row}");
        }
        if i == 0 {
            eprintln!("rpcnet members {addr}:\n{table}");
        }
    }
    let json = ok(
        rpcnet(&["members", &addrs[1], "--json"], b"").await,
        "members --json",
    );
    let report: MembershipReport = serde_json::from_str(&json).unwrap();
    assert_eq!(report.version, 1);
    assert_eq!(report.local.unwrap().addr, nodes[1].addr());
    assert_eq!(report.members.len(), 2);
    assert!(report
        .members
        .iter()
        .all(|m| m.status == "alive" && m.phi < report.phi_threshold));

    // call, in every mode, on each node.
    let file = std::env::temp_dir().join(format!("rpcnet-cli-payload-{}", std::process::id()));
    std::fs::write(&file, b"from a file").unwrap();
    let at_file = format!("@{}", file.display());
    for addr in &addrs {
        let a = addr.as_str();
        assert_eq!(
            ok(rpcnet(&["call", a, "echo", "hello"], b"").await, "unary"),
            "hello"
        );
        assert_eq!(
            ok(
                rpcnet(&["call", a, "echo", "hello", "--hex"], b"").await,
                "--hex"
            ),
            "68656c6c6f\n"
        );
        assert_eq!(
            ok(rpcnet(&["call", a, "echo", &at_file], b"").await, "@file"),
            "from a file"
        );
        assert_eq!(
            ok(
                rpcnet(&["call", a, "echo", "-"], b"from\nstdin").await,
                "stdin"
            ),
            "from\nstdin"
        );
        assert_eq!(
            ok(
                rpcnet(
                    &["call", a, "echo.stream", "a\nb\nc", "--server-stream"],
                    b""
                )
                .await,
                "--server-stream"
            ),
            "a\nb\nc\n"
        );
        assert_eq!(
            ok(
                rpcnet(&["call", a, "echo.stream", "--client-stream"], b"x\ny\nz\n").await,
                "--client-stream"
            ),
            "x\ny\nz\n"
        );
        assert_eq!(
            ok(
                rpcnet(
                    &["call", a, "echo.stream", "--bidi", "--hex"],
                    b"one\ntwo\n"
                )
                .await,
                "--bidi"
            ),
            "6f6e65\n74776f\n"
        );
    }
    let _ = std::fs::remove_file(&file);
    let unknown = rpcnet(&["call", &addrs[0], "no.such.method"], b"").await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown method"));

    // health: 0 for each live node; 2 for a node that stopped answering.
    for addr in &addrs {
        let out = rpcnet(&["health", addr], b"").await;
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        assert!(stdout(&out).starts_with("healthy: "), "{}", stdout(&out));
    }
    nodes[2].proc.signal("-STOP");
    let asked = Instant::now();
    let out = rpcnet(&["health", &addrs[2], "--timeout", "2"], b"").await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a stopped node: {}",
        stdout(&out)
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    eprintln!("rpcnet health (stopped node): {}", stdout(&out).trim());
    // The others are still in good standing (each has a live peer).
    let out = rpcnet(&["health", &addrs[0]], b"").await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    nodes[2].proc.signal("-CONT");

    // A command line that cannot run is told apart from a node's state.
    let out = rpcnet(&["health", &addrs[0], "--ca", "certs/nonexistent.pem"], b"").await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(rpcnet(&["call"], b"").await.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_1_for_a_node_cut_off_from_every_member_it_knows() {
    let a = start_node(None, &[("role", "seed")], false).await;
    let b = start_node(Some(a.addr()), &[("role", "worker")], false).await;
    let mut nodes = vec![a, b];
    super::converge(&nodes).await;
    let mut b = nodes.pop().unwrap();
    let addr = nodes[0].addr().to_string();
    assert_eq!(rpcnet(&["health", &addr], b"").await.status.code(), Some(0));
    b.proc.kill().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = rpcnet(&["health", &addr], b"").await;
        if out.status.code() == Some(1) {
            assert!(
                stdout(&out).contains("reaches none of the 1 members"),
                "{}",
                stdout(&out)
            );
            break;
        }
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        assert!(
            Instant::now() < deadline,
            "the survivor still healthy after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_issues_a_ca_and_member_certificates_as_rpcnet_certs_does() {
    let dir = std::env::temp_dir().join(format!("rpcnet-cli-certs-{}", std::process::id()));
    let out_dir = dir.to_string_lossy().to_string();
    let out = ok(
        rpcnet(
            &[
                "certs", "--out", &out_dir, "--new-ca", "--member", "m", "--node", "c",
            ],
            b"",
        )
        .await,
        "certs",
    );
    for file in [
        "ca.pem",
        "ca-key.pem",
        "m.pem",
        "m-key.pem",
        "c.pem",
        "c-key.pem",
    ] {
        assert!(dir.join(file).is_file(), "{file} not written: {out}");
        assert!(
            out.contains(&format!("wrote {}", dir.join(file).display())),
            "{out}"
        );
    }
    let pem = std::fs::read_to_string(dir.join("m.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    // Later runs reuse the CA; asking for a new one over it is refused.
    let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let out = ok(
        rpcnet(&["certs", "--out", &out_dir, "--client", "app"], b"").await,
        "certs",
    );
    assert!(out.contains("using the CA"), "{out}");
    let again = rpcnet(&["certs", "--out", &out_dir, "--new-ca"], b"").await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a CA"));
    assert_eq!(std::fs::read_to_string(dir.join("ca.pem")).unwrap(), ca);
    let bad = rpcnet(&["certs", "--bogus", "x"], b"").await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage: rpcnet-certs"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_requires_a_client_certificate_is_named_as_the_reason() {
    // A server that requires client certificates, as rpcnet-worker does.
    let cert = |f: &str| format!("{}/certs/{f}", env!("CARGO_MANIFEST_DIR"));
    let mut server = rpcnet::RpcServer::new(
        rpcnet::RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
            .with_key_path(cert("test_key.pem"))
            .with_client_ca_path(cert("ca.pem")),
    );
    let quic = server.bind().unwrap();
    let addr = server.handle().socket_addr().unwrap().to_string();
    let serving = tokio::spawn(async move { server.start(quic).await });
    let members = rpcnet(&["members", &addr], b"").await;
    assert!(!members.status.success());
    let stderr = String::from_utf8_lossy(&members.stderr);
    assert!(stderr.contains("pass --cert and --key"), "{stderr}");
    let health = rpcnet(&["health", &addr], b"").await;
    assert!(
        stdout(&health).contains("pass --cert and --key"),
        "{}",
        stdout(&health)
    );
    serving.abort();
}
