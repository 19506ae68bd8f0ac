//! Routing for applications that are not members: [`RemoteView`] follows
//! a member's view of the cluster over RPC ([`VIEW_METHOD`]), so a
//! [`WorkerRegistry`] and a [`ClusterClient`] work in a process that holds
//! only the cluster CA (or an application certificate), and route and fail
//! over as a member's would. Such a process cannot change membership: the
//! view method is read-only, and gossip takes only member certificates.
//!
//! The follower keeps one server stream open to one member; when it ends
//! or breaks (the member drains, stops, or its connection goes silent for
//! [`VIEW_IDLE_TIMEOUT`]), it follows another: an alive member of the last
//! view, then the members it was given, dialed a quarter of a second
//! apart with the attempts overlapping, so members that died since the
//! last view cost a quarter of a second each rather than a handshake
//! timeout. Meanwhile the last view stays in force; the client's own
//! ejection covers workers that fail in between.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{oneshot, watch};

use super::balance::LoadBalancingStrategy;
use super::client::ClusterClient;
use super::config::ClusterClientConfig;
use super::discover::WorkerRegistry;
use crate::client::pool::{dial, ServerNames};
use crate::cluster::membership::view_rpc;
use crate::cluster::{ClusterMembership, ClusterView, MemberAddr, NodeStatus, VIEW_METHOD};
use crate::{RpcConfig, RpcError};

/// Silence after which the connection to the followed member counts as
/// dead and another member is followed (QUIC PINGs every quarter of it
/// keep a quiet view stream open).
pub const VIEW_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the follower waits for a member's view before it also dials
/// the next candidate (see `first_view`).
const VIEW_DIAL_STAGGER: Duration = Duration::from_millis(250);
/// Pause after every member was tried in vain, doubling up to [`MAX_PAUSE`].
const MIN_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A member's view of the cluster, followed over RPC by a process that is
/// not a member. Cheap to clone; following stops when the last clone (and
/// the last registry built on it) is dropped.
///
/// ```no_run
/// # async fn f(director: std::net::SocketAddr) -> Result<(), rpcnet::RpcError> {
/// use std::sync::Arc;
/// use rpcnet::cluster::{ClusterClient, LoadBalancingStrategy, RemoteView, WorkerRegistry};
/// use rpcnet::RpcConfig;
///
/// // An application: the cluster CA, no certificate.
/// let rpc = RpcConfig::new("certs/ca.pem", "127.0.0.1:0").with_server_name("localhost");
/// let view = RemoteView::connect(vec![director], rpc.clone()).await?;
/// let registry = Arc::new(WorkerRegistry::following(view, LoadBalancingStrategy::LeastConnections));
/// registry.start().await;
/// let client = ClusterClient::new(registry, rpc);
/// let answer = client.call_worker("compute", b"job".to_vec(), Some("role=worker")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RemoteView {
    shared: Arc<Follower>,
}

struct Follower {
    views: watch::Receiver<Arc<ClusterView>>,
    followed: watch::Receiver<Option<MemberAddr>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for RemoteView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteView")
            .field("followed", &self.followed())
            .finish_non_exhaustive()
    }
}

impl RemoteView {
    /// A view that never changes, for tests of what reads it (call
    /// inside a Tokio runtime).
    #[cfg(test)]
    pub(crate) fn fixed(view: ClusterView) -> Self {
        let (_, views) = watch::channel(Arc::new(view));
        let (_, followed) = watch::channel(None);
        let task = tokio::spawn(std::future::pending::<()>()).abort_handle();
        Self {
            shared: Arc::new(Follower {
                views,
                followed,
                task,
            }),
        }
    }

    /// Follows the view of one of `members` (members' RPC addresses: a
    /// seed, the director; `SocketAddr`s, or [`MemberAddr`]s, which may
    /// be DNS names such as a Kubernetes service's, resolved at every
    /// connect and verified as the server name), connecting with `rpc`
    /// (the cluster CA; a client certificate is neither needed nor used
    /// for anything but TLS), once the first view has arrived.
    ///
    /// # Errors
    /// [`RpcError::ConfigError`] for an empty list or unusable TLS
    /// material; otherwise the last member's error when none of them
    /// served a view (not reachable, or not serving it:
    /// [`ClusterConfig::with_serve_view`](crate::cluster::ClusterConfig::with_serve_view)).
    pub async fn connect<A: Into<MemberAddr>>(
        members: impl IntoIterator<Item = A>,
        rpc: RpcConfig,
    ) -> Result<Self, RpcError> {
        let members: Vec<MemberAddr> = members.into_iter().map(Into::into).collect();
        if members.is_empty() {
            return Err(RpcError::ConfigError(
                "RemoteView::connect needs at least one member address".into(),
            ));
        }
        let rpc = rpc
            .with_idle_timeout(VIEW_IDLE_TIMEOUT)
            .with_keep_alive_interval(VIEW_IDLE_TIMEOUT / 4);
        let (views_tx, views) = watch::channel(Arc::new(ClusterView::default()));
        let (followed_tx, followed) = watch::channel(None);
        let (first_tx, first) = oneshot::channel();
        let task = tokio::spawn(follow(members, rpc, views_tx, followed_tx, first_tx));
        let view = Self {
            shared: Arc::new(Follower {
                views,
                followed,
                task: task.abort_handle(),
            }),
        };
        match first.await {
            Ok(Ok(())) => Ok(view),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RpcError::ConnectionError(
                "the view follower stopped".into(),
            )),
        }
    }

    /// The view now: every member the followed member knows of, itself
    /// included (`local` is `None`: this process is not a member).
    pub fn view(&self) -> Arc<ClusterView> {
        self.shared.views.borrow().clone()
    }

    /// A receiver notified whenever the view changes.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.shared.views.clone()
    }

    /// The member followed now (`None` while looking for one).
    pub fn followed(&self) -> Option<MemberAddr> {
        *self.shared.followed.borrow()
    }
}

/// Where a [`WorkerRegistry`] gets its views: its node's membership, or a
/// member's view followed over RPC.
pub(crate) enum ViewSource {
    Member(ClusterMembership),
    Remote(RemoteView),
}

impl ViewSource {
    pub(crate) fn view(&self) -> Arc<ClusterView> {
        match self {
            Self::Member(cluster) => cluster.view(),
            Self::Remote(view) => view.view(),
        }
    }

    pub(crate) fn watch(&self) -> watch::Receiver<Arc<ClusterView>> {
        match self {
            Self::Member(cluster) => cluster.watch(),
            Self::Remote(view) => view.watch(),
        }
    }

    pub(crate) fn membership(&self) -> Option<&ClusterMembership> {
        match self {
            Self::Member(cluster) => Some(cluster),
            Self::Remote(_) => None,
        }
    }
}

impl WorkerRegistry {
    /// A registry over the workers of a member's view followed over RPC:
    /// for an application that is not a member (see [`RemoteView`]).
    /// Every member of the view is in the pool while alive or suspect, the
    /// followed member included; [`start`](Self::start) makes it follow
    /// the view's changes, as for a member's registry.
    pub fn following(view: RemoteView, strategy: LoadBalancingStrategy) -> Self {
        Self::from_source(ViewSource::Remote(view), strategy, super::discover::seed())
    }
}

impl ClusterClient {
    /// A client for an application that is not a member: follows the view
    /// of one of `members` ([`RemoteView::connect`] with `config`'s RPC
    /// configuration) through a started [`WorkerRegistry::following`]
    /// with `strategy`, and routes as [`ClusterClient::new`] does.
    ///
    /// # Errors
    /// Those of [`RemoteView::connect`].
    pub async fn following<A: Into<MemberAddr>>(
        members: impl IntoIterator<Item = A>,
        config: impl Into<ClusterClientConfig>,
        strategy: LoadBalancingStrategy,
    ) -> Result<Self, RpcError> {
        let config = config.into();
        let view = RemoteView::connect(members, config.rpc().clone()).await?;
        let registry = Arc::new(WorkerRegistry::following(view, strategy));
        registry.start().await;
        Ok(Self::new(registry, config))
    }
}

/// The members to try next: the alive ones of the last view (the one that
/// just ended last), then the given ones.
fn candidates(
    given: &[MemberAddr],
    view: &ClusterView,
    ended: Option<MemberAddr>,
) -> Vec<MemberAddr> {
    let mut list: Vec<MemberAddr> = view
        .members
        .iter()
        .filter(|m| m.status == NodeStatus::Alive && Some(m.addr()) != ended)
        .map(|m| m.addr())
        .collect();
    for addr in given.iter().copied().chain(ended) {
        if !list.contains(&addr) {
            list.push(addr);
        }
    }
    list
}

/// The follower's task (see the module).
async fn follow(
    given: Vec<MemberAddr>,
    rpc: RpcConfig,
    views: watch::Sender<Arc<ClusterView>>,
    followed: watch::Sender<Option<MemberAddr>>,
    first: oneshot::Sender<Result<(), RpcError>>,
) {
    let mut first = Some(first);
    let mut pause = MIN_PAUSE;
    let mut ended = None;
    'rounds: loop {
        let mut list: VecDeque<MemberAddr> = candidates(&given, &views.borrow(), ended).into();
        let mut last_error = None;
        while !list.is_empty() {
            let (addr, mut snapshots) = match first_view(&mut list, &rpc).await {
                Ok(opened) => opened,
                Err(error) => {
                    last_error = Some(error);
                    break;
                }
            };
            let mut served = false;
            let error = loop {
                let snapshot = match snapshots.next().await {
                    Some(Ok(bytes)) => view_rpc::decode(&bytes),
                    Some(Err(e)) => Err(e),
                    None => Err(RpcError::StreamError(format!("{addr} ended its view"))),
                };
                match snapshot {
                    Ok(view) => {
                        served = true;
                        views.send_replace(Arc::new(view));
                        followed.send_replace(Some(addr));
                        if let Some(first) = first.take() {
                            let _ = first.send(Ok(()));
                        }
                    }
                    Err(e) => break e,
                }
            };
            tracing::debug!(%addr, "view follower: {error}");
            followed.send_replace(None);
            if served {
                pause = MIN_PAUSE;
                ended = Some(addr);
                continue 'rounds;
            }
            last_error = Some(error);
        }
        if let (Some(first), Some(error)) = (first.take(), last_error) {
            let _ = first.send(Err(error));
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The first member taken from the front of `list` to open a view
/// stream. Members are dialed in order, each [`VIEW_DIAL_STAGGER`] after
/// the previous one (at once when that one failed), and the attempts
/// overlap, as in Happy Eyeballs (RFC 8305, section 5): a member listed
/// alive that died since, whose handshake would take the whole handshake
/// timeout to fail, costs the stagger rather than the timeout. The
/// members still being dialed when one opens go back to the front of
/// `list`, in order.
///
/// # Errors
/// The last member's error when every one in `list` failed (`list` is
/// then empty).
async fn first_view(
    list: &mut VecDeque<MemberAddr>,
    rpc: &RpcConfig,
) -> Result<(MemberAddr, crate::ResponseStream), RpcError> {
    let mut dialing = FuturesUnordered::new();
    let mut in_flight: Vec<MemberAddr> = Vec::new();
    let mut last_error = RpcError::ConfigError("no member to follow".into());
    loop {
        if dialing.is_empty() || !list.is_empty() {
            match list.pop_front() {
                Some(addr) => {
                    in_flight.push(addr);
                    dialing.push(async move { (addr, open_view(addr, rpc).await) });
                }
                None => return Err(last_error),
            }
        }
        let stagger = tokio::time::sleep(VIEW_DIAL_STAGGER);
        tokio::select! {
            Some((addr, opened)) = dialing.next() => {
                in_flight.retain(|a| *a != addr);
                match opened {
                    Ok(stream) => {
                        for addr in in_flight.into_iter().rev() {
                            list.push_front(addr);
                        }
                        return Ok((addr, stream));
                    }
                    Err(e) => {
                        tracing::debug!(%addr, "view follower: {e}");
                        last_error = e;
                    }
                }
            },
            () = stagger, if !list.is_empty() => {}
        }
    }
}

async fn open_view(addr: MemberAddr, rpc: &RpcConfig) -> Result<crate::ResponseStream, RpcError> {
    let client = dial(addr, rpc, ServerNames::Dialed).await?;
    client.call_server_streaming(VIEW_METHOD, Vec::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{NodeId, NodeInfo, Tags};

    fn member(port: u16, status: NodeStatus) -> NodeInfo {
        NodeInfo {
            id: NodeId::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)), 1),
            status,
            tags: Tags::new(),
            phi: 0.0,
        }
    }

    #[test]
    fn alive_members_come_first_the_given_ones_then_the_one_that_ended() {
        let a = |p| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        let view = ClusterView {
            members: vec![
                member(1, NodeStatus::Alive),
                member(2, NodeStatus::Failed),
                member(3, NodeStatus::Alive),
            ],
            ..ClusterView::default()
        };
        assert_eq!(
            candidates(&[a(9).into(), a(3).into()], &view, Some(a(1).into())),
            [a(3), a(9), a(1)]
        );
        assert_eq!(
            candidates(&[a(9).into()], &ClusterView::default(), None),
            [a(9)]
        );
    }
}
