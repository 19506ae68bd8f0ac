//! Graceful departure of a worker: announce draining, leave, finish
//! in-flight calls.

use std::future::Future;
use std::time::Duration;

use super::discover::DRAINING_TAG;
use crate::cluster::ClusterMembership;
use crate::{RpcError, ShutdownHandle};

/// Takes a worker out of service without failing a call:
///
/// 1. sets the [`DRAINING_TAG`] tag, so every `WorkerRegistry` stops
///    selecting this node as the tag spreads, and waits three gossip
///    intervals for it to spread (calls that still arrive are served);
/// 2. leaves the cluster ([`ClusterMembership::leave`]): every member
///    reports `NodeLeft`. This comes before the shutdown because a server
///    that shuts down refuses every new call, the gossip method's
///    included: a node still a member would then hear nobody, so a drain
///    longer than failure detection would be judged a failure by the
///    others (and theirs by it);
/// 3. shuts the RPC server down gracefully (`shutdown`): new calls are
///    refused with `Unavailable`, which a `ClusterClient` retries on another
///    worker, while calls in flight run to completion;
/// 4. waits for `served` (the server's `start` future or its task) to
///    finish, at most `drain_timeout` (match it with
///    `RpcConfig::with_drain_timeout`, which bounds the server's own wait).
///
/// ```no_run
/// # async fn f(cluster: rpcnet::cluster::ClusterMembership, mut server: rpcnet::RpcServer, quic: s2n_quic::Server) -> Result<(), rpcnet::RpcError> {
/// use std::time::Duration;
/// let shutdown = server.shutdown_handle();
/// let serving = tokio::spawn(async move { server.start(quic).await });
/// // ... on SIGTERM:
/// rpcnet::cluster::drain_and_leave(&cluster, &shutdown, serving, Duration::from_secs(30)).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// Errors of [`ClusterMembership::leave`] (the server is still shut down
/// and drained); [`RpcError::Timeout`] if `served` did not finish within
/// `drain_timeout`.
pub async fn drain_and_leave<F: Future>(
    cluster: &ClusterMembership,
    shutdown: &ShutdownHandle,
    served: F,
    drain_timeout: Duration,
) -> Result<(), RpcError> {
    cluster.set_tag(DRAINING_TAG, "true");
    tokio::time::sleep(cluster.config().gossip_interval * 3).await;
    let left = cluster.leave().await;
    shutdown.shutdown();
    let drained = tokio::time::timeout(drain_timeout, served).await.is_ok();
    left?;
    if drained {
        Ok(())
    } else {
        Err(RpcError::Timeout)
    }
}
