//! Gossip connections of a real cluster: `rpcnet-bench gossip-crowd N MAX
//! SECONDS` runs `N - 1` members in this process, each on a runtime and a
//! thread of its own with its own RPC server and QUIC endpoints on
//! loopback, and the `N`-th, the one measured, in a process of its own
//! (`gossip-member`). All use one member certificate for 127.0.0.1
//! (`certs/test_cert.pem`) and join through the first, with
//! `gossip_max_connections` = `MAX` and a 60 s idle timeout (`MAX` 0:
//! connections kept open, no bound and no idle timeout, as before the
//! bound). Once it sees all the others alive, the measured member runs
//! `SECONDS` more and reports the gossip connections it holds
//! (`rpcnet_membership_gossip_connections`), those its server serves
//! (`rpcnet_server_connections`), both from an admin endpoint of its
//! own, and its resident memory. The crowd reports the connections its
//! servers serve per member.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rpcnet::admin::AdminServer;
use rpcnet::cluster::{ClusterConfig, ClusterEvent, ClusterMembership, NodeStatus};
use rpcnet::{RpcConfig, RpcServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::systems::cert;

/// This process's resident set in KiB.
fn rss_kib() -> f64 {
    crate::conns::rss_kib(std::process::id())
}

async fn member(config: ClusterConfig) -> ClusterMembership {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_optional_client_ca_path(cert("ca.pem"));
    let mut server = RpcServer::new(rpc);
    let quic = server.bind().expect("bind");
    let handle = server.handle();
    tokio::spawn(async move { server.start(quic).await });
    ClusterMembership::new(config.with_server(handle))
        .await
        .expect("membership starts")
}

/// A member on a runtime of its own, in a thread of its own, as if in a
/// process of its own: its client endpoint is its own (clients share an
/// endpoint only within a runtime), so the crowd's members do not funnel
/// their connections through one socket and one endpoint task.
fn member_apart(config: ClusterConfig) -> ClusterMembership {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let _ = tx.send(member(config).await);
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("the member starts")
}

/// The crowd's configuration: `gossip_max_connections` = `max` (0: kept
/// open), idle timeout 60 s.
fn config(n: usize, max: usize) -> ClusterConfig {
    let config = ClusterConfig::default().with_expected_cluster_size(n as u32);
    if max == 0 {
        config.with_gossip_connections(1_000_000, Duration::from_secs(86_400))
    } else {
        config.with_gossip_connections(max, Duration::from_secs(60))
    }
}

/// Waits until `member` sees `n - 1` others alive (at most 300 s).
async fn converged(member: &ClusterMembership, n: usize, since: Instant) {
    loop {
        let alive = member
            .members()
            .iter()
            .filter(|x| x.status == NodeStatus::Alive)
            .count();
        if alive == n - 1 {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(300),
            "{n} members did not converge in 300 s ({alive} alive)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `NodeFailed` events the receivers hold, taken.
fn count_failed(receivers: &mut [tokio::sync::broadcast::Receiver<ClusterEvent>]) -> usize {
    let mut failed = 0;
    for rx in receivers {
        loop {
            match rx.try_recv() {
                Ok(ClusterEvent::NodeFailed(_)) => failed += 1,
                Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    }
    failed
}

/// CPU time this process used so far, in seconds (user and system).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and
    // stime are the 12th and 13th, in clock ticks (100 per second).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A gauge from the admin endpoint at `admin`.
async fn gauge(admin: SocketAddr, name: &str) -> f64 {
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        let prefix = format!("{name} ");
        body.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()
        .unwrap_or(f64::NAN)
}

/// Joins through `seed`, trying up to three times: with a small bound
/// every answer during the crowd's formation needs a new connection, and
/// a hundred members forming at once on two cores can keep the seed from
/// answering within the join timeout.
async fn join(member: &ClusterMembership, seed: SocketAddr) {
    for attempt in 1..=3 {
        match member.join(vec![seed]).await {
            Ok(()) => return,
            Err(e) if attempt < 3 => eprintln!("join attempt {attempt}: {e}"),
            Err(e) => panic!("join: {e}"),
        }
    }
}

/// The crowd: `n - 1` members here, the `n`-th in a process of its own
/// (`gossip-member`), measured alone; prints both sides' figures.
pub async fn run(n: usize, max: usize, seconds: u64) {
    let admin = AdminServer::new("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .expect("admin endpoint");
    let admin_addr = admin.local_addr();
    let mut members = Vec::with_capacity(n - 1);
    for _ in 0..n - 1 {
        members.push(member_apart(config(n, max)));
    }
    let mut failures: Vec<_> = members.iter().map(|m| m.subscribe()).collect();
    let seed = members[0].advertised_addr().socket_addr().expect("an IP");
    let start = Instant::now();
    for m in &members[1..] {
        join(m, seed).await;
    }
    let mut measured = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "gossip-member",
            &seed.to_string(),
            &n.to_string(),
            &max.to_string(),
            &seconds.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the measured member");
    for m in &members {
        converged(m, n, start).await;
    }
    eprintln!(
        "{n} members converged in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let formation_failed = count_failed(&mut failures);
    let cpu_before = cpu_secs();
    let steady = Instant::now();
    let mut stdout = measured.stdout.take().unwrap();
    let report = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut stdout), &mut line);
        line
    })
    .await
    .unwrap_or_default();
    let cpu = (cpu_secs() - cpu_before) / steady.elapsed().as_secs_f64();
    // Counted while the measured member still runs (it waits for its
    // stdin to close after its report).
    let connections = gauge(admin_addr, "rpcnet_server_connections").await;
    let failed = count_failed(&mut failures);
    drop(measured.stdin.take());
    let _ = measured.kill();
    let _ = measured.wait();
    let policy = if max == 0 {
        "kept open".to_string()
    } else {
        max.to_string()
    };
    println!(
        "members {n}, gossip_max_connections {policy}: the crowd's servers held {:.1} \
         connections per member at the end; the crowd used {cpu:.2} CPUs after it formed; \
         NodeFailed reports in the crowd: {formation_failed} while it formed, {failed} after",
        connections / (n - 1) as f64,
    );
    print!("{report}");
}

/// The measured member: one member joined through `seed`, its own admin
/// endpoint; once it sees the other `n - 1` alive it runs `seconds`, then
/// prints what it holds and its resident memory.
pub async fn member_alone(seed: SocketAddr, n: usize, max: usize, seconds: u64) {
    let admin = AdminServer::new("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .expect("admin endpoint");
    let admin_addr = admin.local_addr();
    let me = member(config(n, max)).await;
    let before = rss_kib();
    let start = Instant::now();
    join(&me, seed).await;
    converged(&me, n, start).await;
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        eprintln!(
            "measured member, {:>4} s: dialed {}, dialed by {}, {:.1} MiB resident",
            steady.elapsed().as_secs(),
            gauge(admin_addr, "rpcnet_membership_gossip_connections").await,
            gauge(admin_addr, "rpcnet_server_connections").await,
            rss_kib() / 1024.0,
        );
    }
    println!(
        "the measured member: dialed {} (gossip connections it holds), dialed by {} (its \
         server's), resident {:.1} MiB, {:.0} KiB above its reading before joining",
        gauge(admin_addr, "rpcnet_membership_gossip_connections").await,
        gauge(admin_addr, "rpcnet_server_connections").await,
        rss_kib() / 1024.0,
        rss_kib() - before,
    );
    // The crowd counts its failure reports, then closes this process's
    // stdin (`exit_when_parent_goes`).
    std::future::pending::<()>().await;
}
