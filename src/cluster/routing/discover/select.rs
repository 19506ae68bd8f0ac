//! Selection and the recording of outcomes: where the registry applies
//! each worker's record (`eject`) within the limits of the pool.
//!
//! * **Candidates**: the members matching the filter, not yet tried by the
//!   call, not draining. The selectable ones are alive and not ejected;
//!   their weight is their slow-start weight times their record's (halved
//!   by each failure in a row; the minimum while held back), never below
//!   the minimum.
//! * **Panic routing** (Envoy's panic mode): when none is selectable, or
//!   more than `max_ejection_percent` of the candidates are ejected or
//!   suspect, the call is routed among all candidates, the ejected and
//!   suspect ones at the minimum weight. Ejection alone never makes a
//!   selection fail.
//! * **The ejection limit** (Envoy's `max_ejection_percent`): an ejection
//!   that would take more than that share of the pool out (at least one
//!   worker may always be) holds the worker at the minimum weight instead.
//! * **Success rate**: a worker whose failures are numerous enough is
//!   compared with the other workers in rotation (`rate::is_outlier`).

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::{state_of, Worker, WorkerRegistry};
use crate::cluster::routing::eject::{EjectionPolicy, Judgement, Outcome, Reason, Ticket};
use crate::cluster::routing::filter::WorkerFilter;
use crate::cluster::routing::rate;
use crate::cluster::routing::status::WorkerState;
use crate::cluster::NodeId;
use crate::sync::lock;
use crate::RpcError;

/// One candidate of a selection: the member's place in the pool, its
/// calls in flight, its weight, whether it is in rotation, and its ticket
/// when it has no ejection on record.
struct Candidate {
    index: usize,
    load: usize,
    weight: f64,
    selectable: bool,
    ticket: Option<Ticket>,
}

/// A thread's selection state, reused from call to call.
struct Scratch {
    /// The candidate list: a selection allocates nothing once it has
    /// grown to the pool's size.
    candidates: Vec<Candidate>,
    /// The members (indices) of the pool `pool` whose tags match the
    /// filter `text` (`None`: no filter): a pool never changes, so a
    /// filter is parsed and matched against each member's tags once per
    /// pool and thread instead of on every call (`Pool::id` is never
    /// reused; 0 is no pool).
    pool: u64,
    text: Option<String>,
    matching: Vec<usize>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            candidates: Vec::new(),
            pool: 0,
            text: None,
            matching: Vec::new(),
        })
    };
}

impl WorkerRegistry {
    /// Selects among the workers matching `filter` other than `avoid`, at
    /// `now` (see the module's rules). The filter's text is the key of the
    /// thread's cached matches: it is parsed only when they are built, so
    /// a routed call with the filter of the thread's previous call reads
    /// no filter at all.
    ///
    /// # Errors
    /// [`RpcError::InvalidFilter`] for a malformed filter;
    /// [`RpcError::NoWorkers`] when no worker can take the call.
    pub(crate) fn select(
        &self,
        filter: Option<&str>,
        avoid: &[NodeId],
        now: Instant,
    ) -> Result<Worker, RpcError> {
        let filter_text = filter.unwrap_or("");
        if !self.shared.serving.load(Ordering::Relaxed) {
            self.shared.serving.store(true, Ordering::Relaxed);
        }
        // Read in place, without a lock: the call path clones no snapshot.
        let pool = self.shared.pool.load();
        let policy = &pool.policy;
        let min = policy.min_weight();
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                candidates,
                pool: matched_in,
                text,
                matching: matches,
            } = scratch;
            if *matched_in != pool.id || text.as_deref() != filter {
                *matched_in = 0; // no key while the matches are rebuilt
                let parsed = WorkerFilter::parse(filter)?;
                matches.clear();
                matches.extend(
                    (0..pool.members.len()).filter(|&i| parsed.matches(&pool.members[i].tags)),
                );
                *matched_in = pool.id;
                *text = filter.map(str::to_owned);
            }
            candidates.clear();
            let mut matching = 0;
            for &index in matches.iter() {
                let m = &pool.members[index];
                if avoid.contains(&m.id) {
                    continue;
                }
                matching += 1;
                if m.draining {
                    continue;
                }
                // As `state_of`, with one look at the worker's health: a
                // plain record is read without its lock.
                let (selectable, weight, ticket) = match m.cell.plain() {
                    Some(epoch) if m.suspect => (false, min, Some(Ticket::normal(epoch))),
                    Some(epoch) => (
                        true,
                        m.cell.warmup_weight(now, min).max(min),
                        Some(Ticket::normal(epoch)),
                    ),
                    None => {
                        let health = m.cell.health();
                        let (selectable, weight) = if m.suspect || health.is_ejected(now) {
                            (false, min)
                        } else {
                            let health = health.weight(now, min);
                            (true, (health * m.cell.warmup_weight(now, min)).max(min))
                        };
                        (selectable, weight, health.plain_ticket())
                    }
                };
                candidates.push(Candidate {
                    index,
                    load: m.cell.in_flight(),
                    weight,
                    selectable,
                    ticket,
                });
            }
            let selectable = candidates.iter().filter(|c| c.selectable).count();
            let out = candidates.len() - selectable;
            let panic =
                policy.limited() && (selectable == 0 || out > policy.ejectable(candidates.len()));
            if !panic {
                candidates.retain(|c| c.selectable);
            }
            let chosen = self.shared.picker.pick_by(
                candidates.len(),
                |i| candidates[i].load,
                |i| candidates[i].weight,
            );
            let Some(chosen) = chosen.map(|i| &candidates[i]) else {
                return Err(RpcError::NoWorkers {
                    filter: filter_text.to_owned(),
                    members: pool.seen,
                    unavailable: matching,
                    avoided: avoid.len(),
                });
            };
            if panic {
                tracing::debug!(
                    selectable,
                    out,
                    "too few workers in rotation: routing among all"
                );
            }
            let member = Arc::clone(&pool.members[chosen.index]);
            // A worker without an ejection on record is taken as it was
            // seen (if it is ejected meanwhile, this call's outcome is from
            // before the ejection, and stale as it should be); otherwise
            // its record decides whether the call is a probe.
            let ticket = chosen
                .ticket
                .unwrap_or_else(|| member.cell.health().on_selected(now, policy));
            member.cell.call_started();
            Ok(Worker { member, ticket })
        })
    }

    /// Whether [`select`](Self::select) with the same arguments would find
    /// a worker: one matching `filter`, not in `avoid`, available (or,
    /// with an ejection limit, suspect or ejected: panic routing takes
    /// those when nothing else is left). No side effects.
    pub(crate) fn could_select(
        &self,
        filter: Option<&str>,
        avoid: &[NodeId],
        now: Instant,
    ) -> bool {
        let Ok(filter) = WorkerFilter::parse(filter) else {
            return false; // selects nothing
        };
        let panic_routing = self.ejection_policy().limited();
        self.pool().members.iter().any(|m| {
            filter.matches(&m.tags)
                && !avoid.contains(&m.id)
                && match state_of(m, now) {
                    WorkerState::Available => true,
                    WorkerState::Ejected | WorkerState::Suspect => panic_routing,
                    _ => false,
                }
        })
    }

    /// Records how a call to `worker` ended, for passive ejection.
    pub(crate) fn record(&self, worker: &Worker, outcome: Outcome, now: Instant) {
        let policy = &worker.member.policy;
        let judgement = worker
            .cell()
            .health()
            .record(worker.ticket, outcome, now, policy);
        match judgement {
            Judgement::Keep => {}
            Judgement::Restored => {
                tracing::info!(worker = %worker.id(), ?outcome, "worker back in rotation");
                self.changed();
                if crate::telemetry::is_enabled() {
                    crate::telemetry::rotation_changed(worker.addr(), false);
                }
            }
            Judgement::Eject(reason) => {
                self.eject(worker, reason, now, policy);
                if crate::telemetry::is_enabled() {
                    crate::telemetry::rotation_changed(worker.addr(), true);
                }
            }
            Judgement::CompareRate => {
                if self.is_rate_outlier(worker, now, policy) {
                    self.eject(worker, Reason::SuccessRate, now, policy);
                    if crate::telemetry::is_enabled() {
                        crate::telemetry::rotation_changed(worker.addr(), true);
                    }
                }
            }
        }
    }

    /// Ejects `worker`, or holds it back when the ejection limit is reached.
    fn eject(&self, worker: &Worker, reason: Reason, now: Instant, policy: &EjectionPolicy) {
        // Ejections are applied one at a time, under the memory's lock,
        // and the pool is read under it: `apply` replaces the pool before
        // it releases the memory, so a departure it counted is seen here.
        let mut memory = lock(&self.shared.memory);
        let pool = self.pool();
        // By its cell, not its identity: a member failed and recovered
        // under the same identity has a new cell, and a call selected
        // before is about the departure `apply` already counted.
        if !pool
            .members
            .iter()
            .any(|m| Arc::ptr_eq(&m.cell, worker.cell()))
        {
            return; // gone; its departure was counted by `apply`
        }
        // Calls that failed together may each have been judged for an
        // ejection before the first was applied: the first ejects, the
        // others' outcomes are from before it, and stale.
        if !worker.cell().health().is_current(worker.ticket) {
            return;
        }
        let members = pool.members.iter().filter(|m| !m.draining);
        let n = members.clone().count();
        let out = members
            .filter(|m| m.id != worker.id() && m.cell.health().is_ejected(now))
            .count();
        let addr = worker.addr();
        if policy.limited() && out >= policy.ejectable(n) {
            let period = policy.ejection_for(memory.strikes(addr, now, policy).max(1));
            worker.cell().health().hold(now, period);
            tracing::warn!(worker = %worker.id(), ?reason, out, "outlier held back at the minimum weight: the ejection limit is reached");
            return;
        }
        let period = policy.ejection_for(memory.strike(addr, now, policy));
        worker.cell().health().eject(now, period, reason);
        drop(memory);
        tracing::info!(worker = %worker.id(), ?reason, ?period, "worker ejected by the client's health check");
        self.changed();
    }

    /// Whether `worker`'s failure rate is far above that of the other
    /// workers in rotation.
    fn is_rate_outlier(&self, worker: &Worker, now: Instant, policy: &EjectionPolicy) -> bool {
        let own = worker.cell().health().rate(now, policy);
        let mut others = Vec::new();
        for m in &self.pool().members {
            if m.id == worker.id() || m.draining {
                continue;
            }
            let health = m.cell.health();
            if !health.is_ejected(now) && !health.is_held(now) {
                others.push(health.rate(now, policy));
            }
        }
        rate::is_outlier(own, &others, policy)
    }

    fn changed(&self) {
        self.shared.changed();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::apply;
    use super::*;
    use crate::cluster::routing::remote::{RemoteView, ViewSource};
    use crate::cluster::{ClusterView, LoadBalancingStrategy, NodeInfo, NodeStatus, Tags};

    /// A view of alive workers at 127.0.0.1:`port`, each with the label given.
    fn view(workers: &[(u16, &str)]) -> ClusterView {
        ClusterView {
            members: workers
                .iter()
                .map(|&(port, label)| NodeInfo {
                    id: NodeId::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)), 1),
                    status: NodeStatus::Alive,
                    tags: Tags::from([("label".to_owned(), label.to_owned())]),
                    phi: 0.0,
                })
                .collect(),
            ..ClusterView::default()
        }
    }

    fn registry(view: ClusterView) -> WorkerRegistry {
        WorkerRegistry::from_source(
            ViewSource::Remote(RemoteView::fixed(view)),
            LoadBalancingStrategy::LeastConnections,
            1,
        )
    }

    fn one_worker() -> WorkerRegistry {
        registry(view(&[(7, "a")]))
    }

    /// Selects with the filter `text` and returns the worker's port.
    fn port_for(registry: &WorkerRegistry, text: &str) -> u16 {
        let worker = registry.select(Some(text), &[], Instant::now()).unwrap();
        worker.addr().port()
    }

    /// A worker failed (by φ) and recovered under the same identity while
    /// a call to it was in flight; that call then fails. Its outcome is
    /// about the departure the pool already counted: the worker's next
    /// ejection lasts as that one strike says, no longer.
    #[tokio::test]
    async fn a_call_from_before_a_workers_recovery_does_not_lengthen_its_ejections() {
        let workers = |status| ClusterView {
            members: vec![NodeInfo {
                status,
                ..view(&[(7, "a")]).members[0].clone()
            }],
            ..ClusterView::default()
        };
        let registry = registry(workers(NodeStatus::Alive));
        let policy = registry.ejection_policy();
        let now = Instant::now();
        let stale = registry.select(None, &[], now).unwrap();
        apply(&registry.shared, &workers(NodeStatus::Failed));
        apply(&registry.shared, &workers(NodeStatus::Alive));
        registry.record(&stale, Outcome::ConnectionFailed, now);
        let fresh = registry.select(None, &[], now).unwrap();
        registry.record(&fresh, Outcome::ConnectionFailed, now);
        let pool = registry.pool();
        let two_strikes = policy.ejection_for(2);
        assert!(pool.members[0].cell.health().is_ejected(now));
        assert_eq!(
            state_of(
                &pool.members[0],
                now + two_strikes + Duration::from_millis(1)
            ),
            WorkerState::Available,
            "ejected for longer than two strikes (the departure and this failure)"
        );
    }

    /// Matches are kept per pool and filter: other filters on the same
    /// thread, and a new pool (members and tags changed), are matched
    /// anew.
    #[tokio::test]
    async fn a_filter_selects_what_matches_in_the_current_pool() {
        let registry = registry(view(&[(1, "a"), (2, "b")]));
        for _ in 0..2 {
            assert_eq!(port_for(&registry, "label=a"), 1);
            assert_eq!(port_for(&registry, "label=b"), 2);
        }
        // The last filter again, first: only the pool differs.
        apply(&registry.shared, &view(&[(1, "b"), (3, "a")]));
        assert_eq!(port_for(&registry, "label=b"), 1);
        assert_eq!(port_for(&registry, "label=a"), 3);
    }

    /// The thread's matches are kept by filter text, and a filter is
    /// read only when they are built: a malformed filter is refused even
    /// right after a selection without a filter or with a valid one
    /// (`Some("")` is malformed; `None` is no filter).
    #[tokio::test]
    async fn a_malformed_filter_is_refused_whatever_the_thread_selected_before() {
        let registry = registry(view(&[(1, "a"), (2, "b")]));
        let now = Instant::now();
        for malformed in ["", "label=a,", "=a"] {
            assert!(registry.select(None, &[], now).is_ok());
            assert!(
                matches!(
                    registry.select(Some(malformed), &[], now),
                    Err(RpcError::InvalidFilter { .. })
                ),
                "{malformed:?} was not refused"
            );
            assert_eq!(port_for(&registry, "label=a"), 1);
            assert!(matches!(
                registry.select(Some(malformed), &[], now),
                Err(RpcError::InvalidFilter { .. })
            ));
        }
    }

    /// Two calls to a worker fail to connect at once; the second's outcome
    /// was judged (on another thread) before the first's ejection was
    /// applied. The worker is ejected once: back after `base_ejection`,
    /// not twice that.
    #[tokio::test]
    async fn calls_that_failed_together_eject_their_worker_once() {
        let registry = one_worker();
        let policy = registry.ejection_policy();
        let now = Instant::now();
        let first = registry.select(None, &[], now).unwrap();
        let second = registry.select(None, &[], now).unwrap();
        registry.record(&first, Outcome::ConnectionFailed, now);
        registry.eject(&second, Reason::Fault, now, &policy);
        let back = now + policy.base_ejection + Duration::from_millis(1);
        let pool = registry.pool();
        assert!(pool.members[0].cell.health().is_ejected(now));
        assert_eq!(
            state_of(&pool.members[0], back),
            WorkerState::Available,
            "ejected for longer than base_ejection"
        );
    }
}
