//! [`WorkerRegistry`]: the workers of a cluster, discovered from the
//! membership's view as it changes, and load-balanced selection among them.
//!
//! Discovery follows [`ClusterMembership::watch`]: every published view is
//! applied whole, so nothing is lost to a lagging event stream and nothing
//! is polled. A member is in the pool while it is `Alive` or `Suspect`; it
//! is *selectable* while it is `Alive`, not draining (the
//! [`DRAINING_TAG`] tag) and not ejected by a client's passive health
//! check; when too few matching members are selectable, selection routes
//! among the ejected and suspect ones too (panic routing, see
//! [`EjectionPolicy::max_ejection_percent`]). A failed or departed member
//! leaves the pool at once; if it comes back (recovered, or restarted
//! under a new generation) it gets a fresh record, in slow start if it
//! joined after the registry's first selection; a life that ended without
//! leaving costs its address a strike (`memory`). Selection and the
//! recording of outcomes are in `select`.

mod select;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::sync::Snapshot;

use super::balance::{LoadBalancingStrategy, Picker};
use super::eject::{EjectionPolicy, Ticket};
use super::load::WorkerCell;
use super::memory::Memory;
use super::remote::ViewSource;
use super::status::{WorkerState, WorkerStatus};
use crate::cluster::{ClusterMembership, ClusterView, NodeId, NodeStatus, Tags};
use crate::sync::lock;
use crate::RpcError;

/// The tag a worker sets while it drains (see
/// [`drain_and_leave`](crate::cluster::drain_and_leave)); every registry
/// stops selecting a member that carries it, whatever its value.
pub const DRAINING_TAG: &str = "rpcnet.draining";

/// The tag whose value [`Worker::label`] and [`WorkerStatus::label`] report
/// (the guide's workers set `label=worker-a`).
pub const LABEL_TAG: &str = "label";

/// A selected worker. While it exists it counts as one call in flight on
/// that worker (for [`LoadBalancingStrategy::LeastConnections`]); drop it
/// when the call ends (a panicking or cancelled holder drops it too). It
/// is not `Clone`, so the count cannot be doubled.
#[derive(Debug)]
pub struct Worker {
    /// Shared with the pool's snapshot: a selection clones a pointer, not
    /// the member's identity (a `NodeId` holds its name inline).
    member: Arc<Member>,
    /// How it was selected, for recording the call's outcome.
    ticket: Ticket,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.member.cell.call_ended();
    }
}

impl Worker {
    /// Its RPC address.
    pub fn addr(&self) -> crate::cluster::MemberAddr {
        self.member.id.addr
    }

    /// Its identity (address and generation).
    pub fn id(&self) -> NodeId {
        self.member.id
    }

    /// Its identity, not copied (the call path).
    pub(crate) fn id_ref(&self) -> &NodeId {
        &self.member.id
    }

    /// Its tags when it was selected.
    pub fn tags(&self) -> &Tags {
        &self.member.tags
    }

    /// The value of its [`LABEL_TAG`] tag, if any.
    pub fn label(&self) -> Option<&str> {
        self.member.tags.get(LABEL_TAG).map(String::as_str)
    }

    pub(crate) fn cell(&self) -> &Arc<WorkerCell> {
        &self.member.cell
    }
}

/// One pool member as of the last applied view.
#[derive(Debug, Clone)]
struct Member {
    id: NodeId,
    /// Shared so that a selection clones a pointer, not the map.
    tags: Arc<Tags>,
    suspect: bool,
    draining: bool,
    cell: Arc<WorkerCell>,
    /// The pool's ejection policy, which the outcomes of calls to this
    /// member are recorded under (a copy here keeps it out of every
    /// selected `Worker`).
    policy: EjectionPolicy,
}

impl Member {
    fn same_as(&self, other: &Member) -> bool {
        self.id == other.id
            && *self.tags == *other.tags
            && self.suspect == other.suspect
            && self.draining == other.draining
    }
}

/// The pool as of the last applied view.
#[derive(Debug)]
struct Pool {
    /// This pool's identity, never reused in the process: what a
    /// selection's per-thread cache of filter matches is keyed by.
    id: u64,
    /// Alive or suspect members other than this node, by address.
    members: Vec<Arc<Member>>,
    /// Members in the view, any status (for error messages).
    seen: usize,
    /// The ejection policy, read with the pool by every selection (so
    /// the call path takes no lock of its own for it).
    policy: EjectionPolicy,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            id: Pool::next_id(),
            members: Vec::new(),
            seen: 0,
            policy: EjectionPolicy::default(),
        }
    }
}

impl Pool {
    /// A new pool identity.
    fn next_id() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    /// The pool for `view`, reusing the cells of members already known
    /// under the same identity; `fresh` makes the cell of a new one.
    fn from_view(
        view: &ClusterView,
        previous: &Pool,
        mut fresh: impl FnMut(&NodeId) -> Arc<WorkerCell>,
    ) -> Pool {
        let members = view
            .members
            .iter()
            .filter(|m| matches!(m.status, NodeStatus::Alive | NodeStatus::Suspect))
            .map(|m| {
                Arc::new(Member {
                    id: m.id,
                    tags: Arc::new(m.tags.clone()),
                    suspect: m.status == NodeStatus::Suspect,
                    draining: m.tags.contains_key(DRAINING_TAG),
                    cell: previous
                        .members
                        .iter()
                        .find(|p| p.id == m.id)
                        .map_or_else(|| fresh(&m.id), |p| p.cell.clone()),
                    policy: previous.policy,
                })
            })
            .collect();
        Pool {
            id: Pool::next_id(),
            members,
            seen: view.members.len(),
            policy: previous.policy,
        }
    }

    fn same_as(&self, other: &Pool) -> bool {
        self.seen == other.seen
            && self.members.len() == other.members.len()
            && self
                .members
                .iter()
                .zip(&other.members)
                .all(|(a, b)| a.same_as(b))
    }
}

struct Shared {
    source: ViewSource,
    /// Read by every selection without a lock; replaced by `apply` and
    /// `with_ejection_policy`, each building on the pool it replaces.
    pool: Snapshot<Pool>,
    picker: Picker,
    changes: watch::Sender<u64>,
    /// The value `changes` holds, readable without its lock (the call
    /// path reads it to prune connections).
    version: AtomicU64,
    follower: Mutex<Option<tokio::task::AbortHandle>>,
    /// Strikes by address. Also serializes ejections, so that the limit
    /// on how many workers are out holds.
    memory: Mutex<Memory>,
    /// Whether a selection was made: members that join later start in
    /// slow start, those present before do not.
    serving: AtomicBool,
}

impl Shared {
    /// Counts a change of the pool and tells the receivers of `changes`.
    fn changed(&self) {
        // Release, with `version`'s Acquire: a reader of the new version
        // sees the pool stored before it (`Pool::prune` relies on that).
        let version = self.version.fetch_add(1, Ordering::Release) + 1;
        self.changes.send_modify(|v| *v = version.max(*v));
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.follower.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Discovers the workers of a cluster and selects one per call.
///
/// ```no_run
/// # async fn f(cluster: rpcnet::cluster::ClusterMembership) -> Result<(), rpcnet::RpcError> {
/// use rpcnet::cluster::{LoadBalancingStrategy, WorkerRegistry};
///
/// let registry = WorkerRegistry::new(cluster, LoadBalancingStrategy::LeastConnections);
/// registry.start().await;
/// let worker = registry.select_worker(Some("role=worker")).await?;
/// println!("calling {} ({:?})", worker.addr(), worker.label());
/// # Ok(()) }
/// ```
pub struct WorkerRegistry {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRegistry")
            .field("workers", &self.workers())
            .finish_non_exhaustive()
    }
}

pub(super) fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl WorkerRegistry {
    /// A registry over `cluster`'s members, filled from its current view;
    /// [`start`](Self::start) makes it follow later changes.
    pub fn new(cluster: ClusterMembership, strategy: LoadBalancingStrategy) -> Self {
        Self::with_seed(cluster, strategy, seed())
    }

    /// [`new`](Self::new) with the registry's randomness seeded (the
    /// strategy's first position and ties, [`LoadBalancingStrategy::Random`],
    /// the weighted draws of slow start), for reproducible runs. `new`
    /// seeds each registry from the OS.
    pub fn with_seed(
        cluster: ClusterMembership,
        strategy: LoadBalancingStrategy,
        seed: u64,
    ) -> Self {
        Self::from_source(ViewSource::Member(cluster), strategy, seed)
    }

    /// A registry over the members `source` shows.
    pub(super) fn from_source(
        source: ViewSource,
        strategy: LoadBalancingStrategy,
        seed: u64,
    ) -> Self {
        let pool = Pool::from_view(&source.view(), &Pool::default(), |_| {
            Arc::new(WorkerCell::default())
        });
        Self {
            shared: Arc::new(Shared {
                source,
                pool: Snapshot::new(pool),
                picker: Picker::new(strategy, seed),
                changes: watch::channel(0).0,
                version: AtomicU64::new(0),
                follower: Mutex::new(None),
                memory: Mutex::new(Memory::default()),
                serving: AtomicBool::new(false),
            }),
        }
    }

    /// This registry with `policy` for passive ejection: when a
    /// [`ClusterClient`](super::ClusterClient) routing through it takes a
    /// worker out of rotation, and for how long (default
    /// [`EjectionPolicy::default`]). Ejection is this registry's record of
    /// each worker, shared by every client routing through it, so the
    /// policy is set here, once for all of them. It applies from the next
    /// selection, also on a started registry.
    ///
    /// ```no_run
    /// # fn f(cluster: rpcnet::cluster::ClusterMembership) {
    /// use std::time::Duration;
    /// use rpcnet::cluster::{EjectionPolicy, LoadBalancingStrategy, WorkerRegistry};
    ///
    /// let registry = WorkerRegistry::new(cluster, LoadBalancingStrategy::LeastConnections)
    ///     .with_ejection_policy(EjectionPolicy {
    ///         base_ejection: Duration::from_secs(5),
    ///         ..EjectionPolicy::default()
    ///     });
    /// # }
    /// ```
    pub fn with_ejection_policy(self, policy: EjectionPolicy) -> Self {
        let replacing = self.shared.pool.write();
        let pool = replacing.current();
        let members = pool
            .members
            .iter()
            .map(|m| {
                Arc::new(Member {
                    policy,
                    ..Member::clone(m)
                })
            })
            .collect();
        replacing.store(Pool {
            id: Pool::next_id(),
            members,
            seen: pool.seen,
            policy,
        });
        drop(replacing);
        self
    }

    /// The ejection policy in force (see
    /// [`with_ejection_policy`](Self::with_ejection_policy)).
    pub fn ejection_policy(&self) -> EjectionPolicy {
        self.pool().policy
    }

    /// Starts following the membership: from now on every membership
    /// change reaches the pool as soon as it is published. Calling it again
    /// does nothing. The follower task ends with the registry or the
    /// membership.
    pub async fn start(&self) {
        let mut follower = lock(&self.shared.follower);
        if follower.is_some() {
            return;
        }
        let mut views = self.shared.source.watch();
        let weak = Arc::downgrade(&self.shared);
        // The view current now may be newer than the one `new` read.
        apply(&self.shared, &views.borrow_and_update());
        let task = tokio::spawn(async move {
            while views.changed().await.is_ok() {
                let view = views.borrow_and_update().clone();
                let Some(shared) = weak.upgrade() else { break };
                apply(&shared, &view);
            }
        });
        *follower = Some(task.abort_handle());
    }

    /// Selects a worker whose tags match `filter` with the registry's
    /// strategy and weights (slow start, failures in a row). Filters:
    /// `"role=worker"`, a bare key (`"gpu"`, any value), or several
    /// conditions that must all hold (`"role=worker,zone=eu"`); `None`
    /// matches every member. When more than
    /// [`EjectionPolicy::max_ejection_percent`] of the matching workers are
    /// ejected or suspect, or none is selectable, it chooses among all of
    /// them (panic routing), so ejection alone never fails a selection.
    ///
    /// # Errors
    /// [`RpcError::NoWorkers`] when no worker matches, or every matching one
    /// is draining (with `max_ejection_percent` at 100: also when every
    /// matching one is ejected or suspect); the error names the filter, how
    /// many members were seen and how many matched but were not
    /// selectable. [`RpcError::InvalidFilter`] for a malformed filter.
    pub async fn select_worker(&self, filter: Option<&str>) -> Result<Worker, RpcError> {
        self.select(filter, &[], Instant::now())
    }

    /// Every worker in the pool (alive or suspect members other than this
    /// node) with its tags, calls in flight and rotation state.
    pub fn workers(&self) -> Vec<WorkerStatus> {
        let pool = self.pool();
        let now = Instant::now();
        pool.members
            .iter()
            .map(|m| WorkerStatus {
                id: m.id,
                tags: Tags::clone(&m.tags),
                label: m.tags.get(LABEL_TAG).cloned(),
                in_flight: m.cell.in_flight(),
                state: state_of(m, now),
            })
            .collect()
    }

    /// A receiver whose value (a counter) changes whenever the pool does:
    /// a worker joins, leaves, fails, changes tags, starts draining, or is
    /// ejected or put back. Changes in calls in flight do not count.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// The membership this registry follows; `None` for a registry that
    /// follows a member's view over RPC ([`WorkerRegistry::following`]).
    pub fn cluster(&self) -> Option<&ClusterMembership> {
        self.shared.source.membership()
    }

    fn pool(&self) -> Arc<Pool> {
        self.shared.pool.load_full()
    }

    /// Whether `id` is still in the pool under that identity.
    pub(crate) fn contains(&self, id: &NodeId) -> bool {
        self.pool().members.iter().any(|m| m.id == *id)
    }

    /// The pool's change counter now.
    pub(crate) fn version(&self) -> u64 {
        self.shared.version.load(Ordering::Acquire)
    }

    /// Takes in `view` as if the registry's source had shown it.
    #[cfg(test)]
    pub(crate) fn apply(&self, view: &ClusterView) {
        apply(&self.shared, view);
    }
}

fn state_of(m: &Member, now: Instant) -> WorkerState {
    if m.draining {
        WorkerState::Draining
    } else if m.suspect {
        WorkerState::Suspect
    } else if m.cell.health().is_ejected(now) {
        WorkerState::Ejected
    } else {
        WorkerState::Available
    }
}

fn apply(shared: &Shared, view: &ClusterView) {
    let now = Instant::now();
    let replacing = shared.pool.write();
    let current = replacing.current();
    let policy = current.policy;
    let mut memory = lock(&shared.memory);
    for m in &current.members {
        let status = view.members.iter().find(|v| v.id == m.id).map(|v| v.status);
        if matches!(status, Some(NodeStatus::Alive | NodeStatus::Suspect)) {
            continue;
        }
        // Gone: gracefully (drained, or left) or not (failed, replaced).
        let left = m.draining || status == Some(NodeStatus::Left);
        if !left && !m.cell.health().struck() {
            memory.strike(m.id.addr, now, &policy);
        }
    }
    let serving = shared.serving.load(Ordering::Relaxed);
    let next = Pool::from_view(view, &current, |id| {
        let warmup = serving
            .then(|| memory.warmup(id.addr, now, &policy))
            .flatten();
        Arc::new(WorkerCell::new(warmup))
    });
    if next.same_as(&current) {
        return;
    }
    // Stored before the memory is released: an ejection waiting for the
    // memory then sees the departures just counted (`select::eject`).
    replacing.store(next);
    drop(memory);
    drop(replacing);
    shared.changed();
}
