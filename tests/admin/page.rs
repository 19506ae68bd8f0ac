//! The status page in headless Chromium, against three `rpcnet-node`
//! processes: every live member listed after the page's scripts ran, a
//! node killed with `kill -9` while the page is open shown as failed within
//! the membership's detection bound, and a screenshot for people
//! (`target/status-page.png`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{have, skip, target_dir, three_nodes};

/// How long after a `kill -9` the page may show the node as failed:
/// docs/CLUSTER.md's detection bound (4 s), or twice that on CI's loaded
/// 2-core machine (as `tests/cluster/processes.rs` allows).
fn detection_bound() -> Duration {
    if std::env::var_os("CI").is_some() {
        Duration::from_secs(8)
    } else {
        Duration::from_secs(4)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom`,
/// `--screenshot=...`), letting the page's scripts run for `budget_ms` of
/// virtual time (a request in flight holds virtual time still, so the
/// page's long polls take real time); at most 60 s. Returns stdout.
async fn chromium(url: &str, budget_ms: u64, mode: &[&str]) -> String {
    let profile =
        std::env::temp_dir().join(format!("rpcnet-page-{}-{}", std::process::id(), now_ms()));
    let mut command = tokio::process::Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,960",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(mode)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("chromium finished within 60 s")
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(out.status.success(), "chromium: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The members table's row for `addr`: its attributes and its HTML.
fn row(dom: &str, addr: SocketAddr) -> Option<(BTreeMap<String, String>, String)> {
    let needle = format!("data-addr=\"{addr}\"");
    let mut rest = dom;
    while let Some(at) = rest.find("<tr ") {
        rest = &rest[at..];
        let head_end = rest.find('>')?;
        let head = &rest[4..head_end];
        let body_end = rest.find("</tr>").unwrap_or(rest.len());
        if head.contains(&needle) {
            let mut attrs = BTreeMap::new();
            for pair in head.split("\" ") {
                if let Some((k, v)) = pair.split_once("=\"") {
                    attrs.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
                }
            }
            return Some((attrs, rest[..body_end].to_string()));
        }
        rest = &rest[head_end..];
    }
    None
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path)
        .is_ok_and(|bytes| bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_lists_every_member_and_shows_a_killed_one_failed_within_the_bound() {
    if !have("chromium") {
        skip("chromium not found (Debian package `chromium`; scripts/install-test-deps.sh installs it): the status page was not opened");
        return;
    }
    let mut nodes = three_nodes().await;
    let admin = nodes[0].admin.unwrap();
    let page = format!("http://{admin}/");

    // Every live member, with its status and tags, once the scripts ran.
    let dom = chromium(&format!("{page}?wait=0"), 5000, &["--dump-dom"]).await;
    for node in &nodes {
        let (attrs, html) = row(&dom, node.addr())
            .unwrap_or_else(|| panic!("no row for {} in the page:\n{dom}", node.addr()));
        assert_eq!(attrs["data-status"], "alive", "{html}");
        assert!(html.contains(">alive<"), "{html}");
        for (k, v) in &node.tags {
            assert!(
                html.contains(&format!(">{k}={v}<")),
                "tag {k}={v} not shown: {html}"
            );
        }
    }
    assert!(
        dom.contains("id=\"ready\">ready<"),
        "the node is shown ready"
    );
    assert!(dom.contains("<polyline"), "the φ chart has lines");

    // kill -9 one node while the page is open: the page's long poll
    // returns with the failure, and the row records (in the server's
    // clock) when the page first showed it failed.
    let victim = nodes[2].addr();
    let open = tokio::spawn({
        let url = format!("{page}?wait=2500");
        async move { chromium(&url, 1400, &["--dump-dom"]).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_ms = now_ms();
    nodes[2].proc.kill().await;
    let dom = open.await.unwrap();
    let (attrs, html) = row(&dom, victim).expect("the victim's row");
    assert_eq!(attrs["data-status"], "failed", "not shown failed: {html}");
    let seen_ms: u64 = attrs["data-failed-seen-ms"].parse().unwrap();
    let shown_after = Duration::from_millis(seen_ms.saturating_sub(killed_ms));
    eprintln!("kill -9 shown as failed on the status page {shown_after:?} after the kill");
    assert!(
        shown_after <= detection_bound(),
        "shown failed {shown_after:?} after the kill (bound {:?})",
        detection_bound()
    );
    assert!(
        dom.split("<li ")
            .any(|li| li.starts_with("data-kind=\"failed\"")
                && li
                    .split("</li>")
                    .next()
                    .unwrap()
                    .contains(&format!(">{victim} "))),
        "the failure is not in the events list: {dom}"
    );
    for node in &nodes[..2] {
        assert_eq!(row(&dom, node.addr()).unwrap().0["data-status"], "alive");
    }

    // A picture of it for people.
    let shot: PathBuf = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &format!("{page}?wait=0"),
        5000,
        &[&format!("--screenshot={}", shot.display())],
    )
    .await;
    assert!(is_png(&shot), "no screenshot at {}", shot.display());
    eprintln!("status page screenshot: {}", shot.display());
}
