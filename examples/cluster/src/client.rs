//! The client: asks the director for a worker, connects to it directly and
//! consumes its token stream. When the worker fails (an error in the
//! stream, a refused call, a connection that goes silent for
//! [`CLIENT_IDLE_TIMEOUT`](crate::certs::CLIENT_IDLE_TIMEOUT)), it goes back
//! to the director, asks it to avoid that worker, and resumes from the
//! token after the last one it received. On Ctrl+C / SIGTERM it prints a
//! summary.
//!
//! The client is not a cluster member: it trusts the cluster CA
//! (`certs/ca.pem`) and holds no certificate or key, so the nodes' gossip
//! endpoint refuses it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpcnet::{RpcClient, RpcConfig, RpcError};

use crate::certs::{CertDir, CLIENT_FILES};
use crate::ledger::{Delivery, StreamLedger};
use rpcnet::typed::CallError;

use crate::protocol::{
    AssignRequest, Assignment, DirectorClient, GenerateRequest, Refusal, WorkerClient,
};
use crate::settings;

/// A worker that failed for this client is avoided this long (the
/// director may not have noticed yet).
const AVOID_FOR: Duration = Duration::from_secs(10);
/// Pause before asking again when the director has no worker or is down.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// The longest a connection attempt or the director's answer may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// A worker this client has been assigned.
struct Session {
    assignment: Assignment,
    /// The director's call that counts this client on the worker; dropped
    /// when the session ends.
    _lease: rpcnet::typed::Streaming<Result<Assignment, CallError<Refusal>>>,
}

/// Why a session with a worker ended.
struct Failure {
    worker: Assignment,
    error: RpcError,
}

/// The client's state across sessions.
struct Client {
    config: RpcConfig,
    director_addr: SocketAddr,
    director: Option<RpcClient>,
    ledger: StreamLedger,
    avoid: Vec<(SocketAddr, Instant)>,
    /// Set when a failure is noticed; cleared by the next token.
    switching: Option<(Instant, String)>,
}

/// Runs a client with settings from the environment until Ctrl+C / SIGTERM.
///
/// # Errors
/// Unusable settings or missing certificates. Unreachable directors and
/// workers are retried, not returned.
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let director_addr = settings::addr("DIRECTOR_ADDR", settings::DEFAULT_DIRECTOR_ADDR)?;
    println!("📡 Starting Client - connecting to director at {director_addr}");
    let certs = CertDir::find(&CLIENT_FILES)?;
    certs.announce(&CLIENT_FILES);
    println!("🔐 the client trusts the cluster CA and presents no certificate; it is not a cluster member");
    let mut client = Client {
        config: certs.client_config(),
        director_addr,
        director: None,
        ledger: StreamLedger::new(),
        avoid: Vec::new(),
        switching: None,
    };
    tokio::select! {
        () = client.consume_forever() => {}
        signal = crate::shutdown_signal() => signal?,
    }
    println!("{}", client.ledger.summary());
    Ok(())
}

impl Client {
    async fn consume_forever(&mut self) {
        loop {
            let session = match self.assign().await {
                Ok(session) => session,
                Err(e) => {
                    tracing::info!("no worker yet: {e}");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            let failure = self.consume(session).await;
            let now = Instant::now();
            println!(
                "⚠️ worker {} at {} failed: {} - returning to the director (next sequence={})",
                failure.worker.label,
                failure.worker.addr,
                failure.error,
                self.ledger.next_sequence()
            );
            self.avoid.retain(|(addr, _)| *addr != failure.worker.addr);
            self.avoid.push((failure.worker.addr, now));
            if self.switching.is_none() {
                self.switching = Some((now, failure.worker.label));
            }
        }
    }

    /// Asks the director for a worker, reconnecting to it if needed.
    async fn assign(&mut self) -> Result<Session, RpcError> {
        let director = match &self.director {
            Some(director) => director.clone(),
            None => {
                let director =
                    within(RpcClient::connect(self.director_addr, self.config.clone())).await?;
                println!("✅ connected to director");
                self.director = Some(director.clone());
                director
            }
        };
        let now = Instant::now();
        self.avoid
            .retain(|(_, at)| now.duration_since(*at) < AVOID_FOR);
        let request = AssignRequest {
            avoid: self.avoid.iter().map(|(addr, _)| *addr).collect(),
        };
        let answer = within(async {
            let mut lease = DirectorClient::new(director)
                .assign_worker(request)
                .await
                .map_err(rpc_error)?;
            let first = lease.next().await.ok_or_else(|| {
                RpcError::StreamError("the director ended the assignment without an answer".into())
            })?;
            Ok((first.map_err(rpc_error)?, lease))
        })
        .await;
        match answer {
            Ok((assignment, lease)) => Ok(Session {
                assignment,
                _lease: lease,
            }),
            Err(e) => {
                if !matches!(e, RpcError::RemoteError(_) | RpcError::Unavailable(_)) {
                    // The director's connection may be gone: reconnect next time.
                    self.director = None;
                }
                Err(e)
            }
        }
    }

    /// Connects to the assigned worker and consumes tokens until it fails.
    async fn consume(&mut self, session: Session) -> Failure {
        let worker = session.assignment.clone();
        println!(
            "🔀 director assigned worker {} at {} - establishing direct connection",
            worker.label, worker.addr
        );
        let fail = |error| Failure {
            worker: worker.clone(),
            error,
        };
        let connection = match within(RpcClient::connect(worker.addr, self.config.clone())).await {
            Ok(connection) => connection,
            Err(e) => return fail(e),
        };
        println!(
            "✅ direct connection established to worker {} at {}",
            worker.label, worker.addr
        );
        println!("📤 creating request stream");
        let from_sequence = self.ledger.next_sequence();
        let worker_client = WorkerClient::new(connection);
        let started = async {
            worker_client
                .generate(GenerateRequest { from_sequence })
                .await
                .map_err(rpc_error)
        };
        let mut tokens = match within(started).await {
            Ok(tokens) => tokens,
            Err(e) => return fail(e),
        };
        println!("🌊 stream opened successfully, starting to consume responses");
        loop {
            let token = match tokens.next().await {
                Some(Ok(token)) => token,
                Some(Err(e)) => return fail(rpc_error(e)),
                None => return fail(RpcError::StreamError("the worker ended the stream".into())),
            };
            let now = Instant::now();
            if let Some((noticed, from)) = self.switching.take() {
                self.ledger.failover();
                println!(
                    "⏱️ switched from {from} to {} in {} ms after the failure was noticed; resuming at sequence={}",
                    worker.label,
                    now.duration_since(noticed).as_millis(),
                    token.sequence
                );
            }
            println!(
                "📦 received token (sequence={}, text={:?}, total={})",
                token.sequence, token.text, token.total
            );
            match self.ledger.record(token.sequence, now) {
                Delivery::InOrder => {}
                Delivery::Duplicate => println!("❗ token {} received twice", token.sequence),
                Delivery::Gap(n) => println!("❗ {n} tokens missing before {}", token.sequence),
            }
        }
    }
}

/// A typed call's error as the client reports it: a director's or
/// worker's [`Refusal`] as the `RemoteError` it answered with, an RPC
/// failure as itself.
fn rpc_error(error: CallError<Refusal>) -> RpcError {
    match error {
        CallError::Rpc(e) => e,
        CallError::Service(refusal) => RpcError::RemoteError(refusal.0),
        other => RpcError::RemoteError(other.to_string()),
    }
}

async fn within<T>(
    step: impl std::future::Future<Output = Result<T, RpcError>>,
) -> Result<T, RpcError> {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .unwrap_or(Err(RpcError::Timeout))
}
