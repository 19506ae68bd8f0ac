//! Routing calls into a cluster with real nodes on loopback: a director
//! (membership only) and workers (membership + handlers), all in this
//! process; `processes.rs` does the same with worker processes.

mod attempts;
mod ejection;
mod metrics;
mod options;
mod processes;
mod remote;
mod shutdown;
mod streams;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rpcnet::cluster::{
    ClusterClient, ClusterClientConfig, ClusterConfig, ClusterMembership, LoadBalancingStrategy,
    NodeRegistry, StopReason, WorkerRegistry, WorkerState, DRAINING_TAG,
};
use rpcnet::{CallInfo, CallOptions, RpcConfig, RpcError, RpcServer, ShutdownHandle};
use tokio::task::JoinHandle;

/// A file of the test PKI.
pub fn cert(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// Faster than the defaults so tests finish quickly; same mechanisms.
pub fn fast() -> ClusterConfig {
    ClusterConfig::default()
        .with_gossip_interval(Duration::from_millis(50))
        .with_probe(Duration::from_millis(200), Duration::from_millis(100))
        .with_health_check_interval(Duration::from_millis(200))
        .with_expected_cluster_size(8)
}

/// Upper bound for liveness waits on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The client side of the cluster: worker connections need a client
/// certificate from the cluster CA.
pub fn client_rpc() -> RpcConfig {
    RpcConfig::new(cert("ca.pem"), "127.0.0.1:0")
        .with_client_identity(cert("test_cert.pem"), cert("test_key.pem"))
}

struct Node {
    cluster: ClusterMembership,
    addr: SocketAddr,
    server: JoinHandle<Result<(), RpcError>>,
    shutdown: ShutdownHandle,
}

impl Node {
    /// Stops the node without a goodbye: its endpoint and membership vanish.
    fn kill(self) {
        self.server.abort();
        drop(self.cluster);
    }
}

/// A node; if `label` is given it is a worker (`role=worker`,
/// `label=<label>`) whose `work` handler waits `work_delay` then answers the
/// label. Other methods: `fail` (handler error), `panic`, `ticks` (an
/// endless response stream), `whoami` (any mode: one response naming the
/// call's kind, whether it has a deadline, its `trace-id` metadata and the
/// number of requests).
async fn node(label: Option<&'static str>, work_delay: Duration, seed: Option<SocketAddr>) -> Node {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_client_ca_path(cert("ca.pem"))
        .with_drain_timeout(Duration::from_secs(5));
    let server = RpcServer::new(rpc);
    if let Some(label) = label {
        server
            .register("work", move |_| async move {
                tokio::time::sleep(work_delay).await;
                Ok(label.as_bytes().to_vec())
            })
            .await;
        server
            .register("slow", move |ms| async move {
                let ms: u64 = String::from_utf8_lossy(&ms).parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(label.as_bytes().to_vec())
            })
            .await;
        server
            .register("fail", |_| async move {
                Err(RpcError::RemoteError("no".into()))
            })
            .await;
        server
            .register("panic", |_| async move {
                if true {
                    panic!("handler panicked on purpose");
                }
                Ok(vec![])
            })
            .await;
        server
            .register_streaming("ticks", |_reqs| async move {
                futures::stream::unfold(0u64, |n| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Some((Ok(n.to_be_bytes().to_vec()), n + 1))
                })
            })
            .await;
        server
            .register_streaming("whoami", |mut requests| async move {
                futures::stream::once(async move {
                    let call = CallInfo::current().expect("inside a call");
                    let trace = call.metadata_value("trace-id").unwrap_or_default();
                    let mut seen = 0;
                    while requests.next().await.is_some() {
                        seen += 1;
                    }
                    let deadline = call.deadline_ms > 0;
                    let trace = String::from_utf8_lossy(trace);
                    Ok(format!("{:?} {deadline} {trace} {seen}", call.kind).into_bytes())
                })
            })
            .await;
    }
    start(server, label, seed).await
}

/// Binds and serves `server` and makes it a member: a worker
/// (`role=worker`, `label=<label>`) if `label` is given, joined through
/// `seed` if given.
pub(crate) async fn start(
    mut server: RpcServer,
    label: Option<&str>,
    seed: Option<SocketAddr>,
) -> Node {
    let quic = server.bind().unwrap();
    let handle = server.handle();
    let shutdown = server.shutdown_handle();
    let addr = handle.socket_addr().unwrap();
    let server = tokio::spawn(async move { server.start(quic).await });
    let mut config = fast().with_server(handle);
    if let Some(label) = label {
        config = config.with_tag("role", "worker").with_tag("label", label);
    }
    let cluster = ClusterMembership::new(config).await.unwrap();
    if let Some(seed) = seed {
        cluster.join(vec![seed]).await.unwrap();
    }
    Node {
        cluster,
        addr,
        server,
        shutdown,
    }
}

/// Waits until `registry` has `n` available workers tagged `role=worker`
/// (tags may arrive after the member itself).
async fn available(registry: &WorkerRegistry, n: usize) {
    let mut changes = registry.changes();
    let count = || {
        registry
            .workers()
            .iter()
            .filter(|w| {
                w.state == WorkerState::Available
                    && w.tags.get("role").is_some_and(|r| r == "worker")
            })
            .count()
    };
    tokio::time::timeout(PATIENCE, async {
        while count() != n {
            changes.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} workers available in time: {:?}", registry.workers()));
}

struct Setup {
    director: Node,
    workers: Vec<Node>,
    registry: Arc<WorkerRegistry>,
    client: ClusterClient,
}

async fn setup(strategy: LoadBalancingStrategy, delays: &[(&'static str, Duration)]) -> Setup {
    let director = node(None, Duration::ZERO, None).await;
    let mut workers = Vec::new();
    for (label, delay) in delays {
        workers.push(node(Some(label), *delay, Some(director.addr)).await);
    }
    let registry = Arc::new(WorkerRegistry::with_seed(
        director.cluster.clone(),
        strategy,
        7,
    ));
    registry.start().await;
    available(&registry, delays.len()).await;
    let client = ClusterClient::new(registry.clone(), client_rpc());
    Setup {
        director,
        workers,
        registry,
        client,
    }
}

fn in_flight(registry: &WorkerRegistry) -> usize {
    registry.workers().iter().map(|w| w.in_flight).sum()
}

/// Waits until `n` calls are in flight (selected a worker).
async fn selected(registry: &WorkerRegistry, n: usize) {
    tokio::time::timeout(PATIENCE, async {
        while in_flight(registry) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} calls in flight in time: {:?}", registry.workers()));
}

async fn tally(client: &ClusterClient, calls: usize, concurrency: usize) -> HashMap<String, usize> {
    let results: Vec<Result<Vec<u8>, RpcError>> = futures::stream::iter(0..calls)
        .map(|_| client.call_worker("work", vec![], Some("role=worker")))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut counts = HashMap::new();
    for r in results {
        *counts
            .entry(String::from_utf8(r.expect("call succeeds")).unwrap())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_each_worker_its_turn_within_one_call() {
    let s = setup(
        LoadBalancingStrategy::RoundRobin,
        &[
            ("a", Duration::ZERO),
            ("b", Duration::ZERO),
            ("c", Duration::ZERO),
        ],
    )
    .await;
    let counts = tally(&s.client, 300, 8).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (label, n) in &counts {
        assert!(
            (99..=101).contains(n),
            "{label}: {n} of 300 calls ({counts:?})"
        );
    }
    assert_eq!(in_flight(&s.registry), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reaches_every_worker() {
    let s = setup(
        LoadBalancingStrategy::Random,
        &[
            ("a", Duration::ZERO),
            ("b", Duration::ZERO),
            ("c", Duration::ZERO),
        ],
    )
    .await;
    let counts = tally(&s.client, 300, 8).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (label, n) in &counts {
        assert!((50..=150).contains(n), "{label}: {n} of 300 ({counts:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_steers_away_from_a_slow_worker() {
    let s = setup(
        LoadBalancingStrategy::LeastConnections,
        &[
            ("slow", Duration::from_millis(100)),
            ("fast", Duration::from_millis(2)),
        ],
    )
    .await;
    let counts = tally(&s.client, 400, 8).await;
    let slow = counts.get("slow").copied().unwrap_or(0);
    let fast = counts.get("fast").copied().unwrap_or(0);
    // Round robin would give each 200; the slow worker holds its calls 50
    // times longer, so least-connections sends it a small share.
    assert!(slow * 4 < fast, "slow {slow}, fast {fast}");
    assert!(slow > 0, "an idle slow worker still gets calls");
    assert_eq!(in_flight(&s.registry), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_counts_return_to_zero_after_every_kind_of_ending() {
    let s = setup(
        LoadBalancingStrategy::LeastConnections,
        &[("a", Duration::ZERO)],
    )
    .await;
    let f = Some("role=worker");
    // Ok, handler error, handler panic, unknown method.
    assert_eq!(s.client.call_worker("work", vec![], f).await.unwrap(), b"a");
    assert!(matches!(
        s.client.call_worker("fail", vec![], f).await,
        Err(RpcError::RemoteError(_))
    ));
    assert!(matches!(
        s.client.call_worker("panic", vec![], f).await,
        Err(RpcError::Internal(_))
    ));
    assert!(matches!(
        s.client.call_worker("nope", vec![], f).await,
        Err(RpcError::UnknownMethod(_))
    ));
    // A timeout.
    let timed_out = s
        .client
        .call_worker_with(
            "slow",
            b"2000".to_vec(),
            f,
            CallOptions::new().with_timeout(Duration::from_millis(100)),
        )
        .await;
    assert!(timed_out.is_err(), "{timed_out:?}");
    // A dropped call, observed in flight first.
    {
        let mut call = Box::pin(s.client.call_worker("slow", b"5000".to_vec(), f));
        let observed = tokio::time::timeout(Duration::from_millis(300), &mut call).await;
        assert!(observed.is_err(), "still running");
        assert_eq!(in_flight(&s.registry), 1, "a running call is counted");
    }
    // An abandoned stream after one item, and one never read.
    let mut ticks = s
        .client
        .call_worker_server_streaming("ticks", vec![], f)
        .await
        .unwrap();
    assert!(ticks.next().await.unwrap().is_ok());
    assert_eq!(in_flight(&s.registry), 1, "an open stream is counted");
    drop(ticks);
    drop(
        s.client
            .call_worker_streaming("ticks", futures::stream::empty(), f)
            .await
            .unwrap(),
    );
    // A call cancelled while its task panics.
    let client = Arc::new(s.client);
    let c = client.clone();
    let task = tokio::spawn(async move {
        let call = c.call_worker("slow", b"5000".to_vec(), Some("role=worker"));
        tokio::select! {
            _ = call => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => panic!("caller panicked mid-call"),
        }
    });
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(in_flight(&s.registry), 0, "{:?}", s.registry.workers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_by_tags_and_name_what_they_saw() {
    let s = setup(
        LoadBalancingStrategy::RoundRobin,
        &[("a", Duration::ZERO), ("b", Duration::ZERO)],
    )
    .await;
    s.workers[0].cluster.set_tag("zone", "eu");
    s.workers[1].cluster.set_tag("gpu", "true");
    let registry = &s.registry;
    let mut changes = registry.changes();
    tokio::time::timeout(PATIENCE, async {
        while !registry
            .workers()
            .iter()
            .any(|w| w.tags.contains_key("gpu"))
            || !registry
                .workers()
                .iter()
                .any(|w| w.tags.contains_key("zone"))
        {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("tag changes reach the registry");
    for _ in 0..4 {
        assert_eq!(
            registry.select_worker(Some("gpu")).await.unwrap().label(),
            Some("b")
        );
        assert_eq!(
            registry
                .select_worker(Some("role=worker,zone=eu"))
                .await
                .unwrap()
                .label(),
            Some("a")
        );
    }
    let err = registry
        .select_worker(Some("role=worker,zone=us"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RpcError::NoWorkers { members: 2, .. }),
        "{err:?}"
    );
    assert!(
        text.contains("\"role=worker,zone=us\"") && text.contains("2 members seen"),
        "{text}"
    );
    assert!(matches!(
        registry.select_worker(Some("role=worker,,")).await,
        Err(RpcError::InvalidFilter { .. })
    ));
    // Membership's tag queries read filters the same way.
    let nodes = NodeRegistry::new(s.director.cluster.clone());
    let eu = nodes.nodes_with_tag("role=worker,zone=eu").await;
    assert_eq!(
        eu.iter().map(|n| n.addr()).collect::<Vec<_>>(),
        [s.workers[0].addr]
    );
    assert!(eu[0].has_tag("role=worker,zone=eu") && !eu[0].has_tag("zone=eu,gpu"));
    assert!(nodes.nodes_with_tag("role=worker,zone=us").await.is_empty());
    assert!(nodes.nodes_with_tag("role=worker,,").await.is_empty());
    assert_eq!(nodes.nodes_with_tag("role=worker").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_gets_no_new_calls_and_finishes_its_own() {
    let s = setup(
        LoadBalancingStrategy::RoundRobin,
        &[("a", Duration::ZERO), ("b", Duration::ZERO)],
    )
    .await;
    let client = Arc::new(s.client);
    // Non-idempotent slow calls in flight on both workers.
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move {
                c.call_worker("slow", b"400".to_vec(), Some("role=worker"))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let Node {
        cluster,
        server,
        shutdown,
        ..
    } = s.workers.into_iter().next().unwrap();
    let drain = tokio::spawn(async move {
        rpcnet::cluster::drain_and_leave(&cluster, &shutdown, server, Duration::from_secs(5)).await
    });
    let mut changes = s.registry.changes();
    tokio::time::timeout(PATIENCE, async {
        while !s
            .registry
            .workers()
            .iter()
            .any(|w| w.label.as_deref() == Some("a") && w.state == WorkerState::Draining)
        {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the draining tag reaches the registry");
    assert!(s
        .registry
        .workers()
        .iter()
        .any(|w| w.tags.contains_key(DRAINING_TAG)));
    // New calls, not idempotent, all to b.
    let more: Vec<_> = (0..20)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.call_worker("work", vec![], Some("role=worker")).await })
        })
        .collect();
    for call in calls {
        call.await
            .unwrap()
            .expect("a call in flight on the draining worker finished");
    }
    for call in more {
        assert_eq!(call.await.unwrap().unwrap(), b"b");
    }
    drain.await.unwrap().expect("drained within the timeout");
    assert_eq!(in_flight(&s.registry), 0);
    drop(s.director);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_never_reached_a_dead_worker_moves_on_even_if_not_idempotent() {
    let s = setup(
        LoadBalancingStrategy::RoundRobin,
        &[("a", Duration::ZERO), ("b", Duration::ZERO)],
    )
    .await;
    let mut workers = s.workers.into_iter();
    let a = workers.next().unwrap();
    let _b = workers.next().unwrap();
    // a dies before any connection to it exists; membership has not noticed.
    a.kill();
    for _ in 0..4 {
        let answer = s
            .client
            .call_worker("work", vec![], Some("role=worker"))
            .await
            .expect("retried on b: a never received the call");
        assert_eq!(answer, b"b");
    }
    assert!(
        s.registry
            .workers()
            .iter()
            .any(|w| w.state == WorkerState::Ejected)
            || s.registry.workers().len() == 1,
        "a is out of rotation: {:?}",
        s.registry.workers()
    );
    assert_eq!(in_flight(&s.registry), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_a_dead_worker_may_have_run_is_retried_only_if_idempotent() {
    let s = setup(
        LoadBalancingStrategy::RoundRobin,
        &[("a", Duration::ZERO), ("b", Duration::ZERO)],
    )
    .await;
    let client = Arc::new(ClusterClient::new(
        s.registry.clone(),
        ClusterClientConfig::from(client_rpc()).with_max_attempts(3),
    ));
    // Warm both connections so the next calls are sent at once.
    tally(&client, 4, 2).await;
    let start = |idempotent: bool| {
        let c = client.clone();
        tokio::spawn(async move {
            c.call_worker_with(
                "slow",
                b"3000".to_vec(),
                Some("role=worker"),
                CallOptions::new()
                    .idempotent(idempotent)
                    .with_timeout(Duration::from_secs(10)),
            )
            .await
        })
    };
    // Round robin: two calls of each kind cover both workers. The kinds
    // are started one after the other (the tasks of one kind may select
    // in either order, but must not interleave with the other kind's).
    let risky = [start(false), start(false)];
    selected(&s.registry, 2).await;
    let safe = [start(true), start(true)];
    selected(&s.registry, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut workers = s.workers.into_iter();
    workers.next().unwrap().kill();
    let mut refused = 0;
    for call in risky {
        match call.await.unwrap() {
            Ok(answer) => assert_eq!(answer, b"b"),
            Err(RpcError::Failover { attempts, stopped }) => {
                refused += 1;
                assert_eq!(attempts.len(), 1, "{attempts:?}");
                assert!(matches!(stopped, StopReason::MayHaveRun), "{stopped:?}");
                assert!(stopped.to_string().contains("not idempotent"), "{stopped}");
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, 1, "the call on a may have run: not repeated");
    for call in safe {
        assert_eq!(call.await.unwrap().expect("idempotent: retried on b"), b"b");
    }
    assert_eq!(in_flight(&s.registry), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_that_still_answers_pings_is_not_ejected() {
    let s = setup(
        LoadBalancingStrategy::LeastConnections,
        &[("a", Duration::ZERO)],
    )
    .await;
    // Handlers busy for 2.5 s: well past the 1 s idle timeout of worker
    // connections, so only the keep-alive PINGs keep the connection up.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            s.client.call_worker_with(
                "slow",
                b"2500".to_vec(),
                Some("role=worker"),
                CallOptions::new().with_timeout(Duration::from_secs(10)),
            )
        })
        .collect();
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer.expect("a busy worker answers"), b"a");
    }
    assert!(s
        .registry
        .workers()
        .iter()
        .all(|w| w.state == WorkerState::Available));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_client_works_under_tower_layers() {
    use tower::{Service, ServiceBuilder, ServiceExt};
    let s = setup(LoadBalancingStrategy::RoundRobin, &[("a", Duration::ZERO)]).await;
    let client = rpcnet::RpcClient::connect(s.workers[0].addr, client_rpc())
        .await
        .unwrap();
    let mut service = ServiceBuilder::new()
        .concurrency_limit(2)
        .timeout(Duration::from_millis(300))
        .service(client);
    let answer = service
        .ready()
        .await
        .unwrap()
        .call(rpcnet::UnaryRequest::new("work", vec![]))
        .await
        .unwrap();
    assert_eq!(answer, b"a");
    // tower's timeout layer ends a call the server would answer too late.
    let late = service
        .ready()
        .await
        .unwrap()
        .call(rpcnet::UnaryRequest::new("slow", b"2000".to_vec()))
        .await;
    assert!(late.unwrap_err().is::<tower::timeout::error::Elapsed>());
}
