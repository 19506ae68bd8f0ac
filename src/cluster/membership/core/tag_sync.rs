//! Tag synchronisation: this node's tag map as foca custom broadcasts,
//! direct tag packets to newcomers, and anti-entropy refreshes at a
//! constant load per node.

use crate::cluster::MemberAddr;

use std::time::Duration;

use super::envelope::TAGS;
use super::MembershipCore;
use crate::cluster::membership::tags::TagUpdate;
use crate::cluster::NodeStatus;

impl MembershipCore {
    pub(super) fn tag_update(&self) -> TagUpdate {
        TagUpdate {
            node: self.id,
            version: self.tag_version,
            leaving: self.leaving,
            tags: self
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// This node's tag update as a direct packet: `kind` is [`HEARTBEAT`]
    /// or [`TAGS`].
    pub(super) fn tags_packet(&self, kind: u8) -> Vec<u8> {
        let mut packet = vec![kind];
        packet.extend_from_slice(&self.tag_update().encode());
        packet
    }

    pub(super) fn send_tags_to(&mut self, addr: MemberAddr) {
        self.send(addr, self.tags_packet(TAGS));
    }

    /// Anti-entropy for tags: every `tag_refresh_interval`, this node's
    /// tags go directly to `gossip_fanout` members in turn (a constant load
    /// per node, whatever the cluster size), repairing any dissemination
    /// a member missed. The turn starts after this node's own address in
    /// the members' order, so members that refresh at about the same time
    /// send to different members: each receives about `gossip_fanout`
    /// refreshes per interval. (Starting every node at the first member
    /// sent every refresh of a round to the same few members, and made
    /// them the one peer every member held a connection to.)
    pub(super) fn refresh_tags(&mut self) {
        self.last_tag_refresh = self.now;
        let alive: Vec<MemberAddr> = {
            let mut a: Vec<MemberAddr> = self
                .peers
                .values()
                .filter(|p| p.status == NodeStatus::Alive)
                .map(|p| p.id.addr)
                .collect();
            a.sort_unstable();
            a
        };
        if alive.is_empty() {
            return;
        }
        let after_self = alive.partition_point(|a| *a < self.id.addr);
        for k in 0..self.config.gossip_fanout.min(alive.len()) {
            let addr = alive[(after_self + self.refresh_turn + k) % alive.len()];
            self.send_tags_to(addr);
        }
        self.refresh_turn = (self.refresh_turn + self.config.gossip_fanout) % alive.len();
    }

    pub(super) fn broadcast_tags(&mut self) {
        self.tag_version += 1;
        self.last_tag_refresh = self.now;
        let update = self.tag_update();
        if let Err(e) = self.foca.add_broadcast(&update.encode()) {
            tracing::warn!("tag broadcast refused: {e}");
        }
    }

    /// Sets a tag and spreads the new tag map.
    pub(crate) fn set_tag(&mut self, key: String, value: String, now: Duration) {
        self.now = now;
        if self.tags.get(&key) == Some(&value) {
            return;
        }
        self.tags.insert(key, value);
        self.broadcast_tags();
        let _ = self.foca.gossip(&mut self.out);
        self.flush();
    }

    /// Removes a tag and spreads the new tag map.
    pub(crate) fn remove_tag(&mut self, key: &str, now: Duration) {
        self.now = now;
        if self.tags.remove(key).is_some() {
            self.broadcast_tags();
            let _ = self.foca.gossip(&mut self.out);
            self.flush();
        }
    }
}
