//! The heartbeat ring: who watches whom with φ.
//!
//! Members are placed on a ring by a hash of their advertised address; a
//! member's `k` successors are its *monitors* (it sends them its
//! heartbeats, they keep its φ history and judge it) and its `k`
//! predecessors are its *subjects*. Every member is watched by `k` others
//! whatever the cluster's size, so heartbeat traffic per node is constant
//! (`k` heartbeats per health-check interval) instead of growing with n.
//! With n ≤ k + 1 every member watches every other. A join or a departure
//! moves only the relations of the `k` members on either side of it.
//!
//! Source: Akka Cluster's `HeartbeatNodeRing` (monitored-by-nr-of-members,
//! default 9 in Akka and here); the hash is FNV-1a (64 bit) over the
//! address's wire encoding, so every member computes the same ring from
//! the same membership, whatever the platform.
//!
//! Pure: no time, no I/O. The membership core keeps it in step with the
//! members SWIM holds active.

use std::collections::BTreeSet;

use super::MemberAddr;

/// Where `addr` sits on the ring: FNV-1a over its postcard encoding.
pub(crate) fn position(addr: &MemberAddr) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    // Encoding an address into a Vec cannot fail.
    let bytes = postcard::to_allocvec(addr).unwrap_or_default();
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The members on the ring, in hash order (ties broken by address).
#[derive(Debug, Default, Clone)]
pub(crate) struct Ring {
    points: BTreeSet<(u64, MemberAddr)>,
}

impl Ring {
    /// Places `addr` on the ring (no effect if it is there).
    pub(crate) fn insert(&mut self, addr: MemberAddr) {
        self.points.insert((position(&addr), addr));
    }

    /// Takes `addr` off the ring (no effect if it is not there).
    pub(crate) fn remove(&mut self, addr: &MemberAddr) {
        self.points.remove(&(position(addr), *addr));
    }

    /// How many members are on the ring.
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// The up to `k` members after `of` (its monitors), nearest first.
    /// `of` itself is never among them; if `of` is not on the ring, the
    /// members after the place it would take.
    pub(crate) fn successors(&self, of: &MemberAddr, k: usize) -> Vec<MemberAddr> {
        let at = (position(of), *of);
        self.points
            .range(at..)
            .chain(self.points.range(..at))
            .map(|&(_, a)| a)
            .filter(|a| a != of)
            .take(k)
            .collect()
    }

    /// The up to `k` members before `of` (its subjects), nearest first.
    pub(crate) fn predecessors(&self, of: &MemberAddr, k: usize) -> Vec<MemberAddr> {
        let at = (position(of), *of);
        self.points
            .range(..at)
            .rev()
            .chain(self.points.range(at..).rev())
            .map(|&(_, a)| a)
            .filter(|a| a != of)
            .take(k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use std::net::{Ipv4Addr, SocketAddr};

    fn addr(i: u32) -> MemberAddr {
        SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 7000)).into()
    }

    fn ring(n: u32) -> Ring {
        let mut r = Ring::default();
        (0..n).for_each(|i| r.insert(addr(i)));
        r
    }

    #[test]
    fn every_member_has_k_monitors_and_k_subjects_and_the_relation_is_mutual() {
        let (n, k) = (200, 9);
        let r = ring(n);
        let mut watched_by = std::collections::HashMap::new();
        for i in 0..n {
            let monitors = r.successors(&addr(i), k);
            assert_eq!(monitors.len(), k);
            for m in &monitors {
                assert!(
                    r.predecessors(m, k).contains(&addr(i)),
                    "{m} must judge {i}"
                );
                *watched_by.entry(*m).or_insert(0) += 1;
            }
            assert_eq!(r.predecessors(&addr(i), k).len(), k);
        }
        // Each member judges exactly k others.
        assert_eq!(watched_by.len(), n as usize);
        assert!(watched_by.values().all(|&w| w == k), "{watched_by:?}");
    }

    #[test]
    fn a_small_ring_is_all_to_all() {
        let r = ring(6);
        for i in 0..6 {
            let mut monitors = r.successors(&addr(i), 9);
            monitors.sort();
            let mut others: Vec<_> = (0..6).filter(|&j| j != i).map(addr).collect();
            others.sort();
            assert_eq!(monitors, others);
        }
    }

    #[test]
    fn a_join_moves_only_the_relations_around_it() {
        let (n, k) = (300u32, 9);
        let mut rng = StdRng::seed_from_u64(5);
        let mut r = ring(n);
        let before: Vec<_> = (0..n).map(|i| r.successors(&addr(i), k)).collect();
        r.insert(addr(n + rng.random_range(0..1000)));
        let changed = (0..n)
            .filter(|&i| r.successors(&addr(i), k) != before[i as usize])
            .count();
        // The k members before the newcomer gain it as a monitor.
        assert_eq!(changed, k);
    }

    #[test]
    fn positions_do_not_depend_on_insertion_order() {
        let mut a = Ring::default();
        let mut b = Ring::default();
        (0..50).for_each(|i| a.insert(addr(i)));
        (0..50).rev().for_each(|i| b.insert(addr(i)));
        assert_eq!(a.successors(&addr(7), 9), b.successors(&addr(7), 9));
        a.remove(&addr(7));
        assert_eq!(a.len(), 49);
        // A member off the ring still gets the members after its place.
        assert_eq!(a.successors(&addr(7), 9), b.successors(&addr(7), 9));
    }
}
