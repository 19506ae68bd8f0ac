//! A member's view over RPC, read-only, for processes that are not
//! members: the method members serve ([`VIEW_METHOD`]) and its encoding.
//! The routing half follows it (`RemoteView`), so an application holding
//! only the cluster CA routes calls as a member's `WorkerRegistry` would.
//!
//! **What a caller may read**: for every member this node knows of,
//! itself included, its identity (address and generation), its status
//! here (alive, suspect, failed, left) and its tags; what routing needs
//! and no more. Not φ values, not this node's local health, not events,
//! not gossip. The method takes no input (its request is ignored), so it
//! cannot change anything; joining, leaving and tags stay with member
//! certificates (the gossip method's check). Any client the node's server
//! accepts may call it (with `with_optional_client_ca_path`, any client
//! that trusts the CA): a deployment that must not show its members'
//! addresses and tags to such clients sets
//! [`ClusterConfig::with_serve_view(false)`](super::ClusterConfig::with_serve_view).
//!
//! The stream sends a snapshot at once, then one after every change of
//! the above (not of φ), each whole (small, and a follower that missed
//! one loses nothing). It ends when the server starts shutting down, when
//! this node starts draining (the [`DRAINING_TAG`](crate::cluster::DRAINING_TAG)
//! tag: followers move to another member before the drain, which an open
//! stream would otherwise hold up), or when the membership stops.

use std::sync::Arc;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::view::{ClusterView, NodeInfo};
use super::{NodeId, Tags};
use crate::cluster::{NodeStatus, DRAINING_TAG};
use crate::{RpcError, ServerHandle};

/// The server-streaming method that serves a member's view (see the module).
pub const VIEW_METHOD: &str = "rpcnet.cluster/view";

/// One member in a snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    id: NodeId,
    status: u8,
    tags: Tags,
}

fn status_byte(status: NodeStatus) -> u8 {
    match status {
        NodeStatus::Alive => 0,
        NodeStatus::Suspect => 1,
        NodeStatus::Failed => 2,
        NodeStatus::Left => 3,
    }
}

fn status_from(byte: u8) -> Result<NodeStatus, RpcError> {
    Ok(match byte {
        0 => NodeStatus::Alive,
        1 => NodeStatus::Suspect,
        2 => NodeStatus::Failed,
        3 => NodeStatus::Left,
        other => {
            return Err(RpcError::ProtocolError(format!(
                "member status {other} in a view"
            )))
        }
    })
}

/// A snapshot of `view` as the method sends it: the local node first.
pub(crate) fn encode(view: &ClusterView) -> Vec<u8> {
    let entries: Vec<Entry> = view
        .local
        .iter()
        .chain(&view.members)
        .map(|m| Entry {
            id: m.id,
            status: status_byte(m.status),
            tags: m.tags.clone(),
        })
        .collect();
    postcard::to_allocvec(&entries).unwrap_or_default()
}

/// A snapshot read back as a view of others: every member in `members`
/// (the serving node included), no local node, φ 0.
///
/// # Errors
/// [`RpcError::ProtocolError`] for bytes that are not a snapshot.
pub(crate) fn decode(bytes: &[u8]) -> Result<ClusterView, RpcError> {
    let entries: Vec<Entry> = postcard::from_bytes(bytes)
        .map_err(|e| RpcError::ProtocolError(format!("malformed view: {e}")))?;
    let members = entries
        .into_iter()
        .map(|e| {
            Ok(NodeInfo {
                id: e.id,
                status: status_from(e.status)?,
                tags: e.tags,
                phi: 0.0,
            })
        })
        .collect::<Result<_, RpcError>>()?;
    Ok(ClusterView {
        local: None,
        members,
        local_health: 0,
    })
}

/// Registers [`VIEW_METHOD`] on `server`, serving `views`.
pub(super) fn serve(server: &ServerHandle, views: watch::Receiver<Arc<ClusterView>>) {
    let stopping = server.shutting_down();
    // rpcnet's own method: the application's layers do not wrap it.
    server.register_streaming_internal(VIEW_METHOD, move |_ignored| {
        let snapshots = snapshots(views.clone(), stopping.clone());
        async move { snapshots }
    });
}

/// Whether this node announced that it drains.
fn draining(view: &ClusterView) -> bool {
    view.local
        .as_ref()
        .is_some_and(|l| l.tags.contains_key(DRAINING_TAG))
}

/// The snapshots one caller receives (see the module).
fn snapshots(
    views: watch::Receiver<Arc<ClusterView>>,
    stopping: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Vec<u8>, RpcError>> + Send + 'static {
    let state = (views, stopping, Vec::new(), true);
    futures::stream::unfold(
        state,
        |(mut views, mut stopping, sent, mut first)| async move {
            loop {
                if !first {
                    tokio::select! {
                        changed = views.changed() => changed.ok()?,
                        _ = stopping.wait_for(|stop| *stop) => return None,
                    }
                }
                first = false;
                if *stopping.borrow() {
                    return None;
                }
                let view = views.borrow_and_update().clone();
                if draining(&view) {
                    return None;
                }
                let snapshot = encode(&view);
                if snapshot != sent {
                    let item = Ok(snapshot.clone());
                    return Some((item, (views, stopping, snapshot, false)));
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(port: u16, status: NodeStatus, tag: Option<(&str, &str)>) -> NodeInfo {
        let mut tags = Tags::new();
        if let Some((k, v)) = tag {
            tags.insert(k.into(), v.into());
        }
        NodeInfo {
            id: NodeId::new(
                format!("127.0.0.1:{port}")
                    .parse::<std::net::SocketAddr>()
                    .unwrap(),
                7,
            ),
            status,
            tags,
            phi: 1.5,
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_the_members_with_the_serving_node_alive() {
        let view = ClusterView {
            local: Some(info(1, NodeStatus::Alive, Some(("role", "director")))),
            members: vec![
                info(2, NodeStatus::Suspect, Some(("role", "worker"))),
                info(3, NodeStatus::Left, None),
            ],
            local_health: 3,
        };
        let read = decode(&encode(&view)).unwrap();
        assert!(read.local.is_none() && read.local_health == 0);
        let seen: Vec<(u16, NodeStatus, f64)> = read
            .members
            .iter()
            .map(|m| (m.addr().port(), m.status, m.phi))
            .collect();
        assert_eq!(
            seen,
            [
                (1, NodeStatus::Alive, 0.0),
                (2, NodeStatus::Suspect, 0.0),
                (3, NodeStatus::Left, 0.0)
            ],
            "φ is not shown"
        );
        assert!(read.members[1].has_tag("role=worker"));
        assert!(matches!(
            decode(&[9, 9, 9]),
            Err(RpcError::ProtocolError(_))
        ));
    }

    #[tokio::test]
    async fn snapshots_follow_changes_and_end_when_the_node_drains_or_stops() {
        use futures::StreamExt;
        let mut view = ClusterView {
            local: Some(info(1, NodeStatus::Alive, None)),
            ..ClusterView::default()
        };
        let (tx, rx) = watch::channel(Arc::new(view.clone()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut stream = Box::pin(snapshots(rx.clone(), stop_rx));
        let first = decode(&stream.next().await.unwrap().unwrap()).unwrap();
        assert_eq!(first.members.len(), 1);
        // φ alone changes nothing a caller sees: no snapshot for it.
        view.local.as_mut().unwrap().phi = 4.0;
        tx.send_replace(Arc::new(view.clone()));
        view.members.push(info(2, NodeStatus::Alive, None));
        tx.send_replace(Arc::new(view.clone()));
        let second = decode(&stream.next().await.unwrap().unwrap()).unwrap();
        assert_eq!(second.members.len(), 2);
        view.local
            .as_mut()
            .unwrap()
            .tags
            .insert(DRAINING_TAG.into(), "true".into());
        tx.send_replace(Arc::new(view.clone()));
        assert!(stream.next().await.is_none(), "a draining node ends it");

        let (_stop_tx2, stop_rx2) = watch::channel(false);
        let mut stream = Box::pin(snapshots(rx.clone(), stop_rx2));
        assert!(
            stream.next().await.is_none(),
            "still draining: nothing sent"
        );
        let (_views, other) = watch::channel(Arc::new(ClusterView::default()));
        let mut stream = Box::pin(snapshots(other, stop_tx.subscribe()));
        stream.next().await.unwrap().unwrap();
        stop_tx.send_replace(true);
        assert!(stream.next().await.is_none(), "a shutdown ends it");
    }
}
