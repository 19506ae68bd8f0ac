//! The generated cluster client over an in-process cluster: a director
//! (membership only) and workers serving `Calc` and `Jobs`, on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rpcnet::cluster::{
    ClusterClient, ClusterConfig, ClusterMembership, LoadBalancingStrategy, StopReason,
    WorkerRegistry, WorkerState,
};
use rpcnet::typed::{CallError, Streaming};
use rpcnet::{RpcConfig, RpcError, RpcServer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{cert, CalcClusterClient, CalcError, CalcServer, Calculator};

const PATIENCE: Duration = Duration::from_secs(20);

/// Calls whose first run, on whichever worker gets it, hangs (the worker
/// is then killed); the same call declared idempotent and not.
#[rpcnet::service(name = "test.Jobs")]
trait Jobs {
    /// Safe to repeat: `ClusterClient` may run it again elsewhere.
    #[rpcnet(idempotent)]
    async fn safe(&self) -> Result<String, CalcError>;

    /// Not declared idempotent.
    async fn risky(&self) -> Result<String, CalcError>;

    /// `from..=to`, one number every 5 ms, each with the worker's label;
    /// at `fail_at` (0: never) a service error instead, and the end.
    async fn numbers(
        &self,
        from: u32,
        to: u32,
        fail_at: u32,
    ) -> Streaming<Result<(u32, String), CalcError>>;
}

/// Shared by every worker: when armed, the next call to arrive reports
/// its worker and never answers.
struct Trap {
    armed: AtomicBool,
    hit: mpsc::UnboundedSender<&'static str>,
}

struct Worker {
    label: &'static str,
    trap: Arc<Trap>,
}

impl Worker {
    async fn run(&self) -> Result<String, CalcError> {
        if self.trap.armed.swap(false, Ordering::SeqCst) {
            let _ = self.trap.hit.send(self.label);
            std::future::pending::<()>().await;
        }
        Ok(self.label.to_string())
    }
}

impl Jobs for Worker {
    async fn safe(&self) -> Result<String, CalcError> {
        self.run().await
    }

    async fn risky(&self) -> Result<String, CalcError> {
        self.run().await
    }

    async fn numbers(
        &self,
        from: u32,
        to: u32,
        fail_at: u32,
    ) -> Streaming<Result<(u32, String), CalcError>> {
        let label = self.label.to_string();
        let paced = futures::stream::iter(from..=to).then(|n| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            n
        });
        Streaming::new(
            paced
                .take_while(move |n| std::future::ready(*n != fail_at + 1 || fail_at == 0))
                .map(move |n| match n == fail_at {
                    true => Err(CalcError::TooMany { limit: n }),
                    false => Ok((n, label.clone())),
                }),
        )
    }
}

struct Node {
    cluster: ClusterMembership,
    addr: SocketAddr,
    server: JoinHandle<Result<(), RpcError>>,
}

impl Node {
    /// Stops the node without a goodbye: its endpoint and membership vanish.
    fn kill(self) {
        self.server.abort();
        drop(self.cluster);
    }
}

fn fast() -> ClusterConfig {
    ClusterConfig::default()
        .with_gossip_interval(Duration::from_millis(50))
        .with_probe(Duration::from_millis(200), Duration::from_millis(100))
        .with_health_check_interval(Duration::from_millis(200))
        .with_expected_cluster_size(8)
}

/// A node; a worker (`role=worker`) serving `Calc` (registered on the
/// server) and `Jobs` (on its handle) if `label` is given.
async fn node(label: Option<&'static str>, trap: &Arc<Trap>, seed: Option<SocketAddr>) -> Node {
    let rpc = RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(cert("test_key.pem"))
        .with_client_ca_path(cert("ca.pem"));
    let mut server = RpcServer::new(rpc);
    if let Some(label) = label {
        CalcServer::new(Calculator {
            label: label.into(),
        })
        .register(&server)
        .await;
    }
    let quic = server.bind().unwrap();
    let handle = server.handle();
    if let Some(label) = label {
        // Through the handle, as a running server would.
        let worker = Worker {
            label,
            trap: trap.clone(),
        };
        JobsServer::new(worker).register(&handle).await;
    }
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
    }
}

struct Setup {
    _director: Node,
    workers: Vec<(&'static str, Node)>,
    client: Arc<ClusterClient>,
    trap: Arc<Trap>,
    hits: mpsc::UnboundedReceiver<&'static str>,
}

async fn setup(labels: &[&'static str]) -> Setup {
    let (hit, hits) = mpsc::unbounded_channel();
    let trap = Arc::new(Trap {
        armed: AtomicBool::new(false),
        hit,
    });
    let director = node(None, &trap, None).await;
    let mut workers = Vec::new();
    for label in labels {
        workers.push((*label, node(Some(label), &trap, Some(director.addr)).await));
    }
    let registry = Arc::new(WorkerRegistry::with_seed(
        director.cluster.clone(),
        LoadBalancingStrategy::RoundRobin,
        7,
    ));
    registry.start().await;
    let mut changes = registry.changes();
    let ready = || {
        registry
            .workers()
            .iter()
            .filter(|w| {
                w.state == WorkerState::Available
                    && w.tags.get("role").is_some_and(|r| r == "worker")
            })
            .count()
            == labels.len()
    };
    tokio::time::timeout(PATIENCE, async {
        while !ready() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("every worker available");
    let client_rpc = RpcConfig::new(cert("ca.pem"), "127.0.0.1:0")
        .with_client_identity(cert("test_cert.pem"), cert("test_key.pem"));
    Setup {
        _director: director,
        workers,
        client: Arc::new(ClusterClient::new(registry, client_rpc)),
        trap,
        hits,
    }
}

impl Setup {
    /// Arms the trap, starts `call`, waits for the worker it hung on and
    /// kills that worker; returns the call's outcome and the worker.
    async fn kill_mid_call(
        &mut self,
        call: impl std::future::Future<Output = Result<String, CallError<CalcError>>> + Send + 'static,
    ) -> (Result<String, CallError<CalcError>>, &'static str) {
        self.trap.armed.store(true, Ordering::SeqCst);
        let call = tokio::spawn(call);
        let victim = tokio::time::timeout(PATIENCE, self.hits.recv())
            .await
            .expect("a worker took the call")
            .unwrap();
        let index = self
            .workers
            .iter()
            .position(|(label, _)| *label == victim)
            .unwrap_or_else(|| panic!("worker {victim}"));
        self.workers.remove(index).1.kill();
        let outcome = tokio::time::timeout(PATIENCE, call)
            .await
            .expect("the call ends after the kill")
            .unwrap();
        (outcome, victim)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_client_calls_every_mode() {
    let s = setup(&["a", "b"]).await;
    let calc = CalcClusterClient::new(s.client.clone(), Some("role=worker".into()));
    // Unary: round robin reaches both workers.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(calc.whoami().await.unwrap());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["a", "b"]);
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    assert!(matches!(
        calc.divide(1, 0).await,
        Err(CallError::Service(CalcError::DivideByZero))
    ));
    // Server streaming.
    let counted: Vec<u32> = calc
        .countdown(4)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(counted, [4, 3, 2, 1]);
    // Client streaming.
    let numbers = futures::stream::iter([10, 20, 30]);
    assert_eq!(calc.sum(numbers).await.unwrap(), 60);
    assert!(matches!(
        calc.sum(futures::stream::iter([-5])).await,
        Err(CallError::Service(CalcError::Negative(-5)))
    ));
    // Bidirectional.
    let totals: Vec<_> = calc
        .running(futures::stream::iter([1, 2, -3, 4]))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(matches!(
        totals.as_slice(),
        [
            Ok(1),
            Ok(3),
            Err(CallError::Service(CalcError::Negative(-3))),
            Ok(7)
        ]
    ));
    // A filter naming one worker.
    let only_b = CalcClusterClient::new(s.client.clone(), Some("label=b".into()));
    assert_eq!(only_b.whoami().await.unwrap(), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_moves_the_call_to_another_worker() {
    let s = setup(&["a", "b"]).await;
    let calc = CalcClusterClient::new(s.client.clone(), Some("role=worker".into()));
    // Every worker refuses `busy` as Unavailable: the call never ran, so
    // the client tries each worker once, then gives up.
    match calc.busy().await {
        Err(CallError::Rpc(RpcError::Failover { attempts, .. })) => {
            assert_eq!(attempts.len(), 2, "{attempts:?}");
            assert!(attempts
                .iter()
                .all(|a| matches!(a.error, RpcError::Unavailable(_))));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_method_is_retried_after_its_worker_died_mid_call_and_a_plain_one_is_not() {
    let mut s = setup(&["a", "b", "c"]).await;
    let jobs = JobsClusterClient::new(s.client.clone(), Some("role=worker".into()));
    // Warm every connection, so that calls are sent at once.
    for _ in 0..3 {
        jobs.safe().await.unwrap();
    }
    // Not idempotent: the worker may have run it, so it is not repeated.
    let (outcome, victim) = s.kill_mid_call(jobs.risky()).await;
    match outcome {
        Err(CallError::Rpc(RpcError::Failover { attempts, stopped })) => {
            assert_eq!(attempts.len(), 1, "{attempts:?}");
            assert!(matches!(stopped, StopReason::MayHaveRun), "{stopped:?}");
        }
        other => panic!("a call {victim} may have run was repeated: {other:?}"),
    }
    // `#[rpcnet(idempotent)]`: repeated on a live worker.
    let (outcome, second) = s.kill_mid_call(jobs.safe()).await;
    let answered = outcome.expect("an idempotent call moves on");
    assert!(
        answered != victim && answered != second,
        "answered by {answered}; {victim} and {second} were killed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_resumable_stream_arrives_complete_and_in_order_across_a_worker_kill() {
    let mut s = setup(&["a", "b", "c"]).await;
    let jobs = JobsClusterClient::new(s.client.clone(), Some("role=worker".into()));
    const N: u32 = 120;
    let mut numbers = jobs
        .numbers_resumable(1, N, 0, |(last, _)| (last + 1, N, 0))
        .await
        .unwrap();
    let (mut received, mut labels) = (Vec::new(), Vec::<String>::new());
    while let Some(item) = numbers.next().await {
        let (n, label) = item.expect("no error reaches the caller");
        received.push(n);
        if labels.last() != Some(&label) {
            labels.push(label);
        }
        if n == 30 {
            let serving = numbers.worker().label().unwrap().to_owned();
            let index = s.workers.iter().position(|(l, _)| *l == serving).unwrap();
            s.workers.remove(index).1.kill();
        }
    }
    assert_eq!(
        received,
        (1..=N).collect::<Vec<_>>(),
        "complete, in order, once each"
    );
    assert_eq!(
        labels.len(),
        2,
        "resumed once, on another worker: {labels:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_resumable_stream_resumes_after_its_last_value_not_after_a_service_error() {
    let s = setup(&["a", "b"]).await;
    let jobs = JobsClusterClient::new(s.client.clone(), Some("label=a".into()));
    let mut numbers = jobs
        .numbers_resumable(1, 30, 10, |(last, _)| (last + 1, 30, 0))
        .await
        .unwrap();
    let mut items = Vec::new();
    while let Some(item) = numbers.next().await {
        items.push(item);
    }
    // 1..=9, then the handler's error (its stream ends there).
    assert_eq!(items.len(), 10, "{items:?}");
    assert!(
        matches!(
            items[9],
            Err(CallError::Service(CalcError::TooMany { limit: 10 }))
        ),
        "{items:?}"
    );
    // The caller moves it to worker b: it starts at 10, the number after
    // the last value, not after the error item.
    numbers.resume_on(Some("label=b")).await.unwrap();
    assert_eq!(numbers.worker().label(), Some("b"));
    let rest: Vec<(u32, String)> = numbers.map(Result::unwrap).collect().await;
    let expected: Vec<(u32, String)> = (10..=30).map(|n| (n, "b".to_string())).collect();
    assert_eq!(rest, expected);
}
