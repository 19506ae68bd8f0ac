//! What members spread through foca's custom broadcasts: tag maps
//! (`tags.rs`) and φ verdicts (`reachability.rs`), behind the one handler
//! foca takes.
//!
//! A verdict starts with [`VERDICT`]; anything else is a tag update, whose
//! first byte is its address's kind (0 or 1), so tag updates read the same
//! as before verdicts existed. A member built before verdicts existed
//! cannot read a verdict and drops the gossip packet that carries one.

use super::reachability::{Verdict, VerdictBook, VerdictError, VerdictKey};
use super::tags::{TagBook, TagError, TagKey};
use super::NodeId;

/// First byte of a verdict broadcast (a postcard varint can never start a
/// tag update with it).
pub(crate) const VERDICT: u8 = 0xF0;

/// The broadcast handler foca holds; the core keeps clones of both books.
#[derive(Debug, Clone)]
pub(crate) struct Broadcasts {
    pub tags: TagBook,
    pub verdicts: VerdictBook,
}

/// A verdict as a broadcast.
pub(crate) fn encode_verdict(verdict: &Verdict) -> Vec<u8> {
    let mut data = vec![VERDICT];
    // A struct of identities and integers always encodes.
    data.extend_from_slice(&postcard::to_allocvec(verdict).unwrap_or_default());
    data
}

/// Identifies a broadcast in foca's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BroadcastKey {
    Tags(TagKey),
    Verdict(VerdictKey),
}

impl foca::Invalidates for BroadcastKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Tags(a), Self::Tags(b)) => a.invalidates(b),
            (Self::Verdict(a), Self::Verdict(b)) => a.invalidates(b),
            _ => false,
        }
    }
}

/// Why a broadcast was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BroadcastError {
    #[error(transparent)]
    Tags(#[from] TagError),
    #[error(transparent)]
    Verdict(#[from] VerdictError),
}

impl foca::BroadcastHandler<NodeId> for Broadcasts {
    type Key = BroadcastKey;
    type Error = BroadcastError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<BroadcastKey>, BroadcastError> {
        match data.split_first() {
            Some((&VERDICT, body)) => {
                let verdict = postcard::from_bytes(body).map_err(VerdictError::from)?;
                Ok(self.verdicts.apply(verdict)?.map(BroadcastKey::Verdict))
            }
            _ => {
                let update = postcard::from_bytes(data).map_err(TagError::from)?;
                Ok(self.tags.apply(update)?.map(BroadcastKey::Tags))
            }
        }
    }
}
