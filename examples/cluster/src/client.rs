//! The client: asks the director for a worker and streams tokens from it
//! through a `ClusterClient` that follows the director's view of the
//! cluster (`ClusterClient::following`: the client is not a member). The
//! token stream is a resumable stream (`call_worker_resumable`): every
//! token carries its sequence number, and the library resumes the stream
//! right after the last token received. When the worker fails (an error
//! in the stream, a refused call, a connection that goes silent for
//! [`CLIENT_IDLE_TIMEOUT`]), the client goes back to the director, asks it
//! to avoid that worker, and moves the stream to the worker assigned
//! (`WorkerStream::resume_on`). On Ctrl+C / SIGTERM it prints a summary.
//!
//! The client is not a cluster member: it trusts the cluster CA
//! (`certs/ca.pem`) and holds no certificate or key, so the nodes' gossip
//! endpoint refuses it; it may only read the director's view.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpcnet::cluster::{ClusterClient, ClusterClientConfig, LoadBalancingStrategy, WorkerStream};
use rpcnet::{CallOptions, ResponseStream, RpcClient, RpcConfig, RpcError};

use crate::certs::{CertDir, CLIENT_FILES, CLIENT_IDLE_TIMEOUT};
use crate::ledger::{Delivery, StreamLedger};
use crate::protocol::{
    decode, encode, AssignRequest, Assignment, GenerateRequest, Token, ASSIGN_METHOD,
    GENERATE_METHOD,
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
    _lease: ResponseStream,
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
    /// Routes the token stream; follows the director's view.
    cluster: Option<ClusterClient>,
    /// The token stream, once opened; it resumes where it stopped.
    tokens: Option<WorkerStream>,
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
        cluster: None,
        tokens: None,
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

/// The request that resumes the token stream right after `last`.
fn resume_after(last: &[u8]) -> Result<Vec<u8>, RpcError> {
    let token: Token = decode(last)?;
    encode(&GenerateRequest {
        from_sequence: token.sequence + 1,
    })
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
            let mut lease = director
                .call_server_streaming(ASSIGN_METHOD, encode(&request)?)
                .await?;
            let first = lease.next().await.ok_or_else(|| {
                RpcError::StreamError("the director ended the assignment without an answer".into())
            })??;
            Ok((decode::<Assignment>(&first)?, lease))
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

    /// The routing client, following the director's view (made once).
    async fn cluster(&mut self) -> Result<&ClusterClient, RpcError> {
        if self.cluster.is_none() {
            let config =
                ClusterClientConfig::from(self.config.clone().with_default_timeout(STEP_TIMEOUT))
                    .with_idle_timeout(CLIENT_IDLE_TIMEOUT);
            let following = ClusterClient::following(
                vec![self.director_addr],
                config,
                LoadBalancingStrategy::LeastConnections,
            );
            self.cluster = Some(within(following).await?);
        }
        Ok(self.cluster.as_ref().expect("made above"))
    }

    /// Moves the token stream to the assigned worker (opening it the
    /// first time) and consumes tokens until the worker fails.
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
        // The worker the director named, by its label.
        let filter = format!("label={}", worker.label);
        let opened = match self.tokens.as_mut() {
            Some(tokens) => tokens.resume_on(Some(&filter)).await,
            None => match self.open(&filter).await {
                Ok(tokens) => {
                    self.tokens = Some(tokens);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = opened {
            return fail(e);
        }
        println!(
            "✅ direct connection established to worker {} at {}",
            worker.label, worker.addr
        );
        println!("📤 creating request stream");
        println!("🌊 stream opened successfully, starting to consume responses");
        loop {
            let Some(tokens) = self.tokens.as_mut() else {
                return fail(RpcError::StreamError("no token stream".into()));
            };
            let token = match tokens.next().await {
                Some(Ok(bytes)) => match decode::<Token>(&bytes) {
                    Ok(token) => token,
                    Err(e) => return fail(e),
                },
                Some(Err(e)) => return fail(e),
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

    /// Opens the resumable token stream from the first token on the
    /// worker `filter` names.
    async fn open(&mut self, filter: &str) -> Result<WorkerStream, RpcError> {
        let request = encode(&GenerateRequest {
            from_sequence: self.ledger.next_sequence(),
        })?;
        let cluster = self.cluster().await?;
        cluster
            .call_worker_resumable(
                GENERATE_METHOD,
                request,
                Some(filter),
                CallOptions::new(),
                resume_after,
            )
            .await
    }
}

async fn within<T>(
    step: impl std::future::Future<Output = Result<T, RpcError>>,
) -> Result<T, RpcError> {
    tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .unwrap_or(Err(RpcError::Timeout))
}
