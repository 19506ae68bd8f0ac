//! The client: asks the director for a worker and streams tokens from it
//! over a resumable stream (`WorkerClusterClient::generate_resumable`,
//! rpcnet's resumable server streams): the library keeps the stream's
//! position and reopens it after the last token received, so no token is
//! lost or repeated. When the worker fails (a refusal in the stream, a
//! refused call, a connection that goes silent for
//! [`CLIENT_IDLE_TIMEOUT`]), the client
//! goes back to the director, asks it to avoid that worker, and resumes
//! the stream on the worker it assigns. On Ctrl+C / SIGTERM it prints a
//! summary.
//!
//! The client is not a cluster member: it trusts the cluster CA
//! (`certs/ca.pem`) and holds no certificate or key, so the nodes' gossip
//! endpoint refuses it. It follows the director's view of the workers
//! (read-only, `ClusterClient::following`) to reach the one assigned, at
//! the address each worker advertises.
//!
//! It reaches the director at `DIRECTOR_ADDR` (the guide's), or at
//! `DIRECTOR_SEED` (`host:port`, a name looked up at each connection)
//! when that is set. Its QUIC endpoint binds loopback for a loopback
//! `DIRECTOR_ADDR`, as the guide runs it, and the unspecified address
//! otherwise, so that it can reach a director and workers on other
//! machines.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpcnet::cluster::{
    ClusterClient, ClusterClientConfig, LoadBalancingStrategy, MemberAddr, LABEL_TAG,
};
use rpcnet::typed::{CallError, Resumable};
use rpcnet::{RpcClient, RpcConfig, RpcError};

use crate::certs::{CertDir, CLIENT_FILES, CLIENT_IDLE_TIMEOUT};
use crate::ledger::{Delivery, StreamLedger};
use crate::protocol::{
    AssignRequest, Assignment, DirectorClient, GenerateRequest, Refusal, Token, WorkerClusterClient,
};
use crate::settings::DirectorSeed;

/// A worker that failed for this client is avoided this long (the
/// director may not have noticed yet).
const AVOID_FOR: Duration = Duration::from_secs(10);
/// Pause before asking again when the director has no worker or is down.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// The longest a connection attempt or the director's answer may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// The token stream: resumed on each worker the director assigns.
type Tokens = Resumable<Token, Refusal>;

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
    certs: CertDir,
    /// Its RPC configuration and the local address it binds, fixed by the
    /// first address the director is found at.
    config: Option<(RpcConfig, SocketAddr)>,
    seed: DirectorSeed,
    director: Option<RpcClient>,
    /// Routes the token stream to the assigned worker, following the
    /// director's view of the cluster.
    cluster: Option<Arc<ClusterClient>>,
    /// `None` until the first stream opens (and after an open abandoned
    /// midway: the next one starts from the ledger's position).
    tokens: Option<Tokens>,
    ledger: StreamLedger,
    avoid: Vec<(MemberAddr, Instant)>,
    /// Set when a failure is noticed; cleared by the next token.
    switching: Option<(Instant, String)>,
}

/// Runs a client with settings from the environment until Ctrl+C / SIGTERM.
///
/// # Errors
/// Unusable settings or missing certificates. Unreachable directors and
/// workers are retried, not returned.
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let seed = DirectorSeed::from_env()?;
    println!("📡 Starting Client - connecting to director at {seed}");
    let certs = CertDir::find(&CLIENT_FILES)?;
    certs.announce(&CLIENT_FILES);
    println!("🔐 the client trusts the cluster CA and presents no certificate; it is not a cluster member");
    let mut client = Client {
        certs,
        config: None,
        seed,
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
            if never_reached(&failure.error) {
                // Not listed in this client's view yet: not the worker's fault.
                tokio::time::sleep(RETRY_PAUSE).await;
            } else {
                self.avoid.retain(|(addr, _)| *addr != failure.worker.addr);
                self.avoid.push((failure.worker.addr, now));
            }
            if self.switching.is_none() {
                self.switching = Some((now, failure.worker.label));
            }
        }
    }

    /// Asks the director for a worker, reconnecting to it (and following
    /// its view) if needed.
    async fn assign(&mut self) -> Result<Session, RpcError> {
        let director = match &self.director {
            Some(director) => director.clone(),
            None => {
                let (config, addrs) = self.reach_director().await?;
                let director = within(RpcClient::connect(addrs[0], config)).await?;
                println!("✅ connected to director");
                self.director = Some(director.clone());
                director
            }
        };
        if self.cluster.is_none() {
            let (config, addrs) = self.reach_director().await?;
            let config = ClusterClientConfig::from(config)
                .with_idle_timeout(CLIENT_IDLE_TIMEOUT)
                .with_connect_timeout(STEP_TIMEOUT)
                // The director picks the worker: a failed one is reported
                // to the client, which asks the director again.
                .with_max_attempts(1);
            let strategy = LoadBalancingStrategy::LeastConnections;
            let following = ClusterClient::following(addrs, config, strategy);
            self.cluster = Some(Arc::new(within(following).await?));
        }
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

    /// The client's configuration and the director's addresses it can
    /// reach with it (at least one). The first address found fixes the
    /// configuration's bind address ([`bind_for`]).
    async fn reach_director(&mut self) -> Result<(RpcConfig, Vec<SocketAddr>), RpcError> {
        let mut addrs =
            self.seed.resolve().await.map_err(|e| {
                RpcError::ConnectionError(format!("director at {}: {e}", self.seed))
            })?;
        // IPv4 first (stable: the resolver's order otherwise).
        addrs.sort_by_key(SocketAddr::is_ipv6);
        let (config, bind) = self
            .config
            .get_or_insert_with(|| {
                let bind = bind_for(&self.seed, addrs[0]);
                (self.certs.client_config_at(&bind.to_string()), bind)
            })
            .clone();
        addrs.retain(|a| a.is_ipv6() == bind.is_ipv6());
        if addrs.is_empty() {
            return Err(RpcError::ConnectionError(format!(
                "director at {}: no address of the family of {bind}",
                self.seed
            )));
        }
        Ok((config, addrs))
    }

    /// Opens the token stream on the assigned worker (or resumes it there
    /// after the last token received) and consumes tokens until it fails.
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
        let filter = format!("{LABEL_TAG}={}", worker.label);
        println!("📤 creating request stream");
        let mut tokens = match self.open(&filter).await {
            Ok(tokens) => tokens,
            Err(e) => return fail(e),
        };
        println!(
            "✅ direct connection established to worker {} at {}",
            worker.label,
            tokens.worker().addr()
        );
        println!("🌊 stream opened successfully, starting to consume responses");
        let failure = loop {
            let token = match tokens.next().await {
                Some(Ok(token)) => token,
                Some(Err(e)) => break fail(rpc_error(e)),
                None => break fail(RpcError::StreamError("the worker ended the stream".into())),
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
        };
        self.tokens = Some(tokens);
        failure
    }

    /// The token stream on a worker matching `filter`: the stream so far
    /// resumed there, or a new one from the ledger's next sequence.
    async fn open(&mut self, filter: &str) -> Result<Tokens, RpcError> {
        let cluster = self
            .cluster
            .clone()
            .expect("assign follows the director first");
        if let Some(mut tokens) = self.tokens.take() {
            return match tokio::time::timeout(STEP_TIMEOUT, tokens.resume_on(Some(filter))).await {
                Ok(Ok(())) => Ok(tokens),
                // A resumption that failed can be tried again.
                Ok(Err(e)) => {
                    self.tokens = Some(tokens);
                    Err(e)
                }
                // One abandoned midway cannot: the next stream starts
                // from the ledger's position.
                Err(_) => Err(RpcError::Timeout),
            };
        }
        let from_sequence = self.ledger.next_sequence();
        let opened = WorkerClusterClient::new(cluster, Some(filter.to_owned())).generate_resumable(
            GenerateRequest { from_sequence },
            |last| GenerateRequest {
                from_sequence: last.sequence + 1,
            },
        );
        within(async { opened.await.map_err(rpc_error) }).await
    }
}

/// The local address the client binds to reach a director at `director`:
/// loopback for a loopback `DIRECTOR_ADDR` (the guide's), else the
/// unspecified address of its family, so that directors and workers on
/// other machines can be reached.
fn bind_for(seed: &DirectorSeed, director: SocketAddr) -> SocketAddr {
    match director.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && matches!(seed, DirectorSeed::Addr(_)) => {
            (Ipv4Addr::LOCALHOST, 0).into()
        }
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Whether a routed call failed before reaching any worker (none matched
/// the filter in the client's view).
fn never_reached(error: &RpcError) -> bool {
    matches!(error, RpcError::Failover { attempts, .. } if attempts.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_binds_loopback_only_for_the_guides_loopback_director() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let guide = DirectorSeed::Addr(at("127.0.0.1:61000"));
        assert_eq!(bind_for(&guide, at("127.0.0.1:61000")), at("127.0.0.1:0"));
        let elsewhere = DirectorSeed::Addr(at("10.0.0.1:61000"));
        assert_eq!(bind_for(&elsewhere, at("10.0.0.1:61000")), at("0.0.0.0:0"));
        let named = DirectorSeed::Named("localhost:61000".into());
        assert_eq!(bind_for(&named, at("127.0.0.1:61000")), at("0.0.0.0:0"));
        let v6 = DirectorSeed::Addr(at("[::1]:61000"));
        assert_eq!(bind_for(&v6, at("[::1]:61000")), at("[::]:0"));
    }
}
