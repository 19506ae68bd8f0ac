//! Tags travel as foca custom broadcasts: each update carries a node's
//! whole tag map with a version, so the newest map always wins and a stale
//! one is never re-disseminated.

use crate::cluster::MemberAddr;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::node::AddrKey;
use super::NodeId;

/// Tags of one node.
pub type Tags = BTreeMap<String, String>;

/// Bounds that keep a tag update inside one gossip packet.
pub const MAX_TAGS: usize = 32;
/// Longest tag key or value, in bytes.
pub const MAX_TAG_LEN: usize = 128;

/// One node's tag map at a version. `leaving` marks a graceful departure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TagUpdate {
    pub node: NodeId,
    pub version: u64,
    pub leaving: bool,
    pub tags: Vec<(String, String)>,
}

impl TagUpdate {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("tag updates always encode")
    }

    fn valid(&self) -> bool {
        self.tags.len() <= MAX_TAGS
            && self
                .tags
                .iter()
                .all(|(k, v)| k.len() <= MAX_TAG_LEN && v.len() <= MAX_TAG_LEN)
    }
}

/// Identifies a tag update for foca's dissemination backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TagKey {
    addr: AddrKey,
    generation: u64,
    version: u64,
}

impl foca::Invalidates for TagKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr
            && (self.generation, self.version) >= (other.generation, other.version)
    }
}

/// Why a tag update was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TagError {
    #[error("undecodable tag update: {0}")]
    Decode(#[from] postcard::Error),
    #[error("tag update over the limits ({MAX_TAGS} tags of {MAX_TAG_LEN} bytes)")]
    TooLarge,
    #[error("tag book full: {0} addresses (max_members)")]
    Full(usize),
}

/// The newest tag update known per address, plus the changes not yet
/// reported as events.
#[derive(Debug)]
pub(crate) struct TagState {
    latest: HashMap<MemberAddr, TagUpdate>,
    changed: Vec<TagUpdate>,
    /// Most addresses kept (the member table's bound, plus this node).
    capacity: usize,
}

/// A handle to the tag state shared by foca (which feeds it) and the
/// membership core (which reads it); foca keeps its handler private.
#[derive(Debug, Clone)]
pub(crate) struct TagBook(Arc<Mutex<TagState>>);

impl TagBook {
    /// A book for at most `capacity` addresses: updates for further
    /// addresses are refused until members are forgotten.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(TagState {
            latest: HashMap::new(),
            changed: Vec::new(),
            capacity,
        })))
    }

    /// Drops what is known about `addr` (a forgotten member).
    pub(crate) fn forget(&self, addr: MemberAddr) {
        self.state().latest.remove(&addr);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().latest.len()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TagState> {
        crate::sync::lock(&self.0)
    }

    pub(crate) fn tags_of(&self, id: &NodeId) -> Option<Tags> {
        self.state()
            .latest
            .get(&id.addr)
            .filter(|u| u.node.generation == id.generation)
            .map(|u| u.tags.iter().cloned().collect())
    }

    pub(crate) fn is_leaving(&self, id: &NodeId) -> bool {
        self.state()
            .latest
            .get(&id.addr)
            .is_some_and(|u| u.node.generation == id.generation && u.leaving)
    }

    /// Records `update` if it is newer than what is known; returns its key then.
    pub(crate) fn apply(&self, update: TagUpdate) -> Result<Option<TagKey>, TagError> {
        if !update.valid() {
            return Err(TagError::TooLarge);
        }
        let key = TagKey {
            addr: AddrKey::from(&update.node.addr),
            generation: update.node.generation,
            version: update.version,
        };
        let mut state = self.state();
        let newer = match state.latest.get(&update.node.addr) {
            None if state.latest.len() >= state.capacity => {
                return Err(TagError::Full(state.capacity));
            }
            None => true,
            Some(known) => {
                (update.node.generation, update.version) > (known.node.generation, known.version)
            }
        };
        if !newer {
            return Ok(None);
        }
        state.changed.push(update.clone());
        state.latest.insert(update.node.addr, update);
        Ok(Some(key))
    }

    pub(crate) fn take_changed(&self) -> Vec<TagUpdate> {
        std::mem::take(&mut self.state().changed)
    }
}
