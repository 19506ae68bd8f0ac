//! What a [`WorkerRegistry`](super::WorkerRegistry) reports about its
//! workers, for status displays: a [`WorkerStatus`] per worker, with its
//! [`WorkerState`] in the rotation.

use crate::cluster::{NodeId, Tags};

/// Where a worker stands in this registry's rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerState {
    /// Selectable.
    Available,
    /// SWIM suspects it; not selected until it is confirmed alive, except
    /// by panic routing (see [`EjectionPolicy`](super::EjectionPolicy)).
    Suspect,
    /// It announced that it is draining; not selected.
    Draining,
    /// A client using this registry took it out of rotation: a connection
    /// failure or a refusal, worker faults in a row (panics, timeouts,
    /// `ResourceExhausted`), or a failure rate far above the other
    /// workers' (see [`EjectionPolicy`](super::EjectionPolicy)). Selected
    /// only by panic routing, and for the one probe call when the ejection
    /// ends.
    Ejected,
}

/// A snapshot of one worker in the pool, for status displays.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStatus {
    /// Identity (address and generation).
    pub id: NodeId,
    /// Its tags.
    pub tags: Tags,
    /// The value of its [`LABEL_TAG`](super::LABEL_TAG) tag, if any.
    pub label: Option<String>,
    /// Calls in flight to it from this registry's selections.
    pub in_flight: usize,
    /// Its place in the rotation.
    pub state: WorkerState,
}

impl WorkerStatus {
    /// Its RPC address.
    pub fn addr(&self) -> crate::cluster::MemberAddr {
        self.id.addr
    }
}
