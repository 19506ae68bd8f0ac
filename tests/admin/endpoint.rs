//! The admin endpoint's routes: `/metrics` through Prometheus's own
//! exposition parser (`promtool check metrics`), `/ready` through a node's
//! life, `/alive`, `/members`, `/events` (long poll) and `/`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rpcnet::admin::{AdminServer, Phase};
use rpcnet::cluster::DRAINING_TAG;
use tokio::io::AsyncWriteExt;

use super::sampling::{member, metrics_until, samples};
use super::{have, http_get, skip, three_nodes};

/// `promtool check metrics` on `text`: its verdict and what it printed.
async fn promtool(text: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("promtool finished within 30 s")
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_live_and_a_failed_member_pass_promtool_check_metrics() {
    if !have("promtool") {
        skip("promtool not found (Debian package `prometheus`; scripts/install-test-deps.sh installs it): /metrics not checked by Prometheus's parser");
        return;
    }
    let mut nodes = three_nodes().await;
    let admin = nodes[0].admin.unwrap();
    let got = metrics_until(admin, "three alive members", |m| {
        m.get("rpcnet_cluster_members{state=\"alive\"}") == Some(&3.0)
    })
    .await;
    assert!(got
        .keys()
        .any(|k| k.starts_with("rpcnet_cluster_member_phi{")));
    let (_, text) = http_get(admin, "/metrics").await;
    let (ok, said) = promtool(&text).await;
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{text}");

    // A failed member: its φ grows without bound (+Inf in the exposition).
    let mut victim = nodes.remove(2);
    victim.proc.kill().await;
    metrics_until(admin, "one failed member", |m| {
        m.get("rpcnet_cluster_members{state=\"failed\"}") == Some(&1.0)
            && m.get("rpcnet_cluster_events_total{kind=\"failed\"}") == Some(&1.0)
    })
    .await;
    let (_, text) = http_get(admin, "/metrics").await;
    let (ok, said) = promtool(&text).await;
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{text}");
    eprintln!(
        "promtool check metrics: passed ({} samples)",
        samples(&text).len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_joining_serving_peers_and_draining() {
    // A seedless node is ready once it serves, alone.
    let a = member(&[("role", "seed")]).await;
    let admin_a = AdminServer::new("127.0.0.1:0".parse().unwrap())
        .with_cluster(a.cluster.clone())
        .with_metrics(false)
        .start()
        .await
        .unwrap();
    let url_a = admin_a.local_addr();
    assert_eq!(
        http_get(url_a, "/ready").await,
        (503, "not ready: joining\n".into())
    );
    assert_eq!(http_get(url_a, "/alive").await, (200, "alive\n".into()));
    admin_a.set_phase(Phase::Serving { seedless: true });
    assert_eq!(http_get(url_a, "/ready").await, (200, "ready\n".into()));
    assert_eq!(http_get(url_a, "/metrics").await.0, 404, "metrics are off");

    // A node that joins through seeds needs a live peer.
    let b = member(&[("role", "worker")]).await;
    let admin_b = AdminServer::new("127.0.0.1:0".parse().unwrap())
        .with_cluster(b.cluster.clone())
        .with_metrics(false)
        .start()
        .await
        .unwrap();
    let url_b = admin_b.local_addr();
    admin_b.set_phase(Phase::Serving { seedless: false });
    assert_eq!(
        http_get(url_b, "/ready").await,
        (503, "not ready: no live peer\n".into())
    );
    let (_, first) = http_get(url_b, "/events").await;
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let after = first["next"].as_u64().unwrap();
    b.cluster.join(vec![a.addr]).await.unwrap();
    assert_eq!(http_get(url_b, "/ready").await, (200, "ready\n".into()));

    // /events: the join is there; a long poll returns as soon as an event comes.
    let (status, events) = http_get(url_b, &format!("/events?after={after}&wait_ms=5000")).await;
    assert_eq!(status, 200);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let joined = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "joined")
        .unwrap_or_else(|| panic!("no joined event in {events}"));
    assert_eq!(joined["addr"], a.addr.to_string());
    let next = events["next"].as_u64().unwrap();
    let poll = tokio::spawn(async move {
        let asked = Instant::now();
        let answer = http_get(url_b, &format!("/events?after={next}&wait_ms=8000")).await;
        (asked.elapsed(), answer)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.cluster.set_tag("zone", "eu");
    let (waited, (_, answer)) = poll.await.unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(
        waited < Duration::from_secs(6),
        "the long poll waited {waited:?} for an event"
    );
    assert_eq!(answer["events"][0]["kind"], "tags", "{answer}");

    // /members: this node, the other with status, tags and φ.
    let (_, members) = http_get(url_b, "/members").await;
    let members: serde_json::Value = serde_json::from_str(&members).unwrap();
    assert_eq!(members["version"], 1);
    assert_eq!(members["local"]["addr"], b.addr.to_string());
    assert_eq!(members["ready"]["ready"], true);
    let seed = &members["members"][0];
    assert_eq!(seed["addr"], a.addr.to_string());
    assert_eq!(seed["status"], "alive");
    assert_eq!(seed["tags"]["role"], "seed");
    assert!(
        seed["phi"].as_f64().is_some_and(|phi| phi >= 0.0),
        "{members}"
    );
    assert!(seed["generation"].as_u64().is_some());

    // Draining: the tag (as drain_and_leave sets it), or the phase.
    b.cluster.set_tag(DRAINING_TAG, "true");
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(url_b, "/ready").await.0 != 503 {
        assert!(
            Instant::now() < deadline,
            "the draining tag did not make /ready 503"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http_get(url_b, "/ready").await.1, "not ready: draining\n");
    admin_a.set_phase(Phase::Draining);
    assert_eq!(
        http_get(url_a, "/ready").await,
        (503, "not ready: draining\n".into())
    );

    // The page and the route list.
    let (status, page) = http_get(url_a, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<svg id=\"chart\"") && page.contains("/events?after="));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "no external assets"
    );
    assert_eq!(http_get(url_a, "/nowhere").await.0, 404);

    admin_a.shutdown();
    a.server.abort();
    b.server.abort();
}
