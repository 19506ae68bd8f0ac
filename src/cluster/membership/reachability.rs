//! Reachability records: φ verdicts as cluster-wide news.
//!
//! A member's monitors (its successors on the heartbeat ring, `ring.rs`)
//! judge it with φ; each monitor publishes what it concluded as a
//! [`Verdict`] (observer, subject, reachable or not, the observer's version)
//! that travels as a foca custom broadcast, so every member learns it
//! through SWIM's dissemination. A member holds a subject unreachable while
//! any current observer's latest record says so, and reachable again once
//! every such observer has taken its verdict back (Akka Cluster's
//! reachability table). Records are reversible; SWIM's "down" stays
//! terminal and is not a record.
//!
//! The book is bounded: at most [`MAX_OBSERVERS`] observers' records per
//! subject, and subjects only while the member table has room; a verdict
//! beyond the bounds is not taken (nor passed on), and the other
//! broadcasts of its packet are.

use crate::cluster::MemberAddr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::node::AddrKey;
use super::NodeId;

/// Most observers' records kept about one subject. A subject has
/// `phi_monitors` (at most 32) monitors on a consistent ring, a few more
/// while members disagree on the ring (joins, departures).
pub(crate) const MAX_OBSERVERS: usize = 128;

/// One observer's latest conclusion about one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Verdict {
    /// Who judged (a monitor of the subject).
    pub observer: NodeId,
    /// Who was judged, in the life judged.
    pub subject: NodeId,
    /// `false`: φ passed the threshold; `true`: the verdict is taken back.
    pub reachable: bool,
    /// Grows with each verdict of this observer's life; newest wins.
    pub version: u64,
}

impl Verdict {
    fn order(&self) -> (u64, u64) {
        (self.observer.generation, self.version)
    }
}

/// Identifies a verdict for foca's dissemination backlog: a newer record
/// of the same observer about the same subject replaces an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VerdictKey {
    observer: AddrKey,
    subject: AddrKey,
    order: (u64, u64),
}

impl foca::Invalidates for VerdictKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.observer == other.observer
            && self.subject == other.subject
            && self.order >= other.order
    }
}

/// Why a verdict was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerdictError {
    #[error("undecodable verdict: {0}")]
    Decode(#[from] postcard::Error),
}

#[derive(Debug)]
struct State {
    /// Per subject address: the latest record of each observer.
    by_subject: HashMap<MemberAddr, Vec<Verdict>>,
    /// Subjects whose records changed since the last `take_changed`.
    changed: Vec<MemberAddr>,
    /// Most subjects kept.
    capacity: usize,
}

/// The reachability records this node knows, shared by foca (which feeds
/// it gossip) and the membership core (which reads it and adds its own).
#[derive(Debug, Clone)]
pub(crate) struct VerdictBook(Arc<Mutex<State>>);

impl VerdictBook {
    /// A book for at most `capacity` subjects.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(State {
            by_subject: HashMap::new(),
            changed: Vec::new(),
            capacity,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.0)
    }

    /// Records `verdict` if it is newer than what its observer said about
    /// its subject before; returns its key then.
    pub(crate) fn apply(&self, verdict: Verdict) -> Result<Option<VerdictKey>, VerdictError> {
        let key = VerdictKey {
            observer: AddrKey::from(&verdict.observer.addr),
            subject: AddrKey::from(&verdict.subject.addr),
            order: verdict.order(),
        };
        let mut state = self.state();
        let capacity = state.capacity;
        let full = state.by_subject.len() >= capacity;
        let records = match state.by_subject.get_mut(&verdict.subject.addr) {
            Some(records) => records,
            None if full => {
                tracing::debug!(subject = %verdict.subject, "verdict book full (max_members subjects): verdict not taken");
                return Ok(None);
            }
            None => state.by_subject.entry(verdict.subject.addr).or_default(),
        };
        match records
            .iter()
            .position(|r| r.observer.addr == verdict.observer.addr)
        {
            Some(i) if records[i].order() >= verdict.order() => return Ok(None),
            Some(i) => records[i] = verdict,
            None if records.len() >= MAX_OBSERVERS => {
                tracing::debug!(subject = %verdict.subject, "verdict book full ({MAX_OBSERVERS} observers): verdict not taken");
                return Ok(None);
            }
            None => records.push(verdict),
        }
        state.changed.push(verdict.subject.addr);
        Ok(Some(key))
    }

    /// Observers whose latest record holds `subject` (this life of it)
    /// unreachable.
    pub(crate) fn unreachable_by(&self, subject: &NodeId) -> Vec<NodeId> {
        self.state()
            .by_subject
            .get(&subject.addr)
            .map(|records| {
                records
                    .iter()
                    .filter(|r| r.subject == *subject && !r.reachable)
                    .map(|r| r.observer)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The subjects `observer` (this identity) has records about.
    pub(crate) fn observed_by(&self, observer: &NodeId) -> Vec<MemberAddr> {
        let mut subjects: Vec<MemberAddr> = self
            .state()
            .by_subject
            .iter()
            .filter(|(_, records)| records.iter().any(|r| r.observer == *observer))
            .map(|(subject, _)| *subject)
            .collect();
        subjects.sort_unstable();
        subjects
    }

    /// Drops every record by or about `addr` (a forgotten member).
    pub(crate) fn forget(&self, addr: MemberAddr) {
        let mut state = self.state();
        state.by_subject.remove(&addr);
        for records in state.by_subject.values_mut() {
            records.retain(|r| r.observer.addr != addr);
        }
        state.by_subject.retain(|_, records| !records.is_empty());
    }

    /// Subjects whose records changed since the last call.
    pub(crate) fn take_changed(&self) -> Vec<MemberAddr> {
        let mut changed = std::mem::take(&mut self.state().changed);
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().by_subject.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Invalidates;
    use std::net::{Ipv4Addr, SocketAddr};

    fn id(i: u8, generation: u64) -> NodeId {
        NodeId::new(
            SocketAddr::from((Ipv4Addr::new(10, 0, 0, i), 7000)),
            generation,
        )
    }

    fn verdict(observer: NodeId, subject: NodeId, reachable: bool, version: u64) -> Verdict {
        Verdict {
            observer,
            subject,
            reachable,
            version,
        }
    }

    #[test]
    fn the_newest_record_of_each_observer_counts() {
        let book = VerdictBook::with_capacity(8);
        let (a, b, x) = (id(1, 1), id(2, 1), id(9, 1));
        assert!(book.apply(verdict(a, x, false, 1)).unwrap().is_some());
        assert!(book.apply(verdict(b, x, false, 1)).unwrap().is_some());
        assert_eq!(book.unreachable_by(&x), vec![a, b]);
        // A replay of an older record is not news and changes nothing.
        assert!(book.apply(verdict(a, x, false, 1)).unwrap().is_none());
        assert!(book.apply(verdict(a, x, true, 2)).unwrap().is_some());
        assert!(book.apply(verdict(a, x, false, 1)).unwrap().is_none());
        assert_eq!(book.unreachable_by(&x), vec![b]);
        // A later life of the observer outranks any version of an earlier one.
        assert!(book.apply(verdict(id(2, 2), x, true, 0)).unwrap().is_some());
        assert!(book.unreachable_by(&x).is_empty());
        // Records about an earlier life of the subject do not hold the new one.
        book.apply(verdict(a, x, false, 3)).unwrap();
        assert!(book.unreachable_by(&id(9, 2)).is_empty());
        assert_eq!(book.take_changed(), vec![x.addr]);
    }

    #[test]
    fn keys_invalidate_older_records_of_the_same_pair_only() {
        let book = VerdictBook::with_capacity(8);
        let (a, x, y) = (id(1, 1), id(8, 1), id(9, 1));
        let old = book.apply(verdict(a, x, false, 1)).unwrap().unwrap();
        let new = book.apply(verdict(a, x, true, 2)).unwrap().unwrap();
        let other = book.apply(verdict(a, y, false, 3)).unwrap().unwrap();
        assert!(new.invalidates(&old));
        assert!(!old.invalidates(&new));
        assert!(!other.invalidates(&old));
    }

    #[test]
    fn the_book_is_bounded_and_forgets_members() {
        let book = VerdictBook::with_capacity(2);
        let a = id(1, 1);
        book.apply(verdict(a, id(8, 1), false, 1)).unwrap();
        book.apply(verdict(a, id(9, 1), false, 2)).unwrap();
        assert!(book
            .apply(verdict(a, id(7, 1), false, 3))
            .unwrap()
            .is_none());
        assert!(book.unreachable_by(&id(7, 1)).is_empty());
        for o in 1..MAX_OBSERVERS as u64 {
            let observer = NodeId::new(
                SocketAddr::from((Ipv4Addr::new(10, 1, (o / 200) as u8, (o % 200) as u8), 1)),
                1,
            );
            book.apply(verdict(observer, id(8, 1), false, 1)).unwrap();
        }
        assert!(book
            .apply(verdict(id(3, 1), id(8, 1), false, 1))
            .unwrap()
            .is_none());
        assert!(!book.unreachable_by(&id(8, 1)).contains(&id(3, 1)));
        book.forget(a.addr);
        assert_eq!(book.unreachable_by(&id(9, 1)), vec![]);
        assert_eq!(book.len(), 1);
        book.forget(id(8, 1).addr);
        assert_eq!(book.len(), 0);
    }
}
