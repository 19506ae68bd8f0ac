//! Which pooled connections to keep: at most `max` of them, each closed
//! once unused for `idle`, the least recently used closed first when a
//! new one needs room: a bounded pool with an idle timeout, as Envoy
//! bounds its upstream connections (`max_connections`) and closes idle
//! ones (`idle_timeout`), with least-recently-used eviction. Kept apart
//! from any I/O, time passed in, so the gossip transport and the
//! membership simulation run the same decisions.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// The keys a pool holds connections for, and when each was last used.
#[derive(Debug)]
pub(crate) struct Retention<K> {
    max: usize,
    idle: Duration,
    last_used: HashMap<K, Duration>,
    /// When [`sweep`](Self::sweep) next looks for idle keys.
    next_sweep: Duration,
}

/// What [`Retention::touch`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Touched<K> {
    /// Whether the key was held already (its connection is reused); a key
    /// that was not needs a new connection.
    pub held: bool,
    /// Keys whose connections are to close now to make room.
    pub evicted: Vec<K>,
}

impl<K: Eq + Hash + Copy> Retention<K> {
    /// Holds at most `max` keys (at least 1), each for at most `idle`
    /// after its last use.
    pub(crate) fn new(max: usize, idle: Duration) -> Self {
        Self {
            max: max.max(1),
            idle,
            last_used: HashMap::new(),
            next_sweep: Duration::ZERO,
        }
    }

    /// Records a use of `key` at `now` (time since any fixed origin, the
    /// same for every call). A key not held yet is added, and if that
    /// makes more than `max`, the least recently used others are evicted
    /// (ties: any of them).
    pub(crate) fn touch(&mut self, key: K, now: Duration) -> Touched<K> {
        let held = self.last_used.insert(key, now).is_some();
        let mut evicted = Vec::new();
        while self.last_used.len() > self.max {
            let oldest = self
                .last_used
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| *k);
            let Some(oldest) = oldest else { break };
            self.last_used.remove(&oldest);
            evicted.push(oldest);
        }
        Touched { held, evicted }
    }

    /// Keys unused for `idle` at `now`, no longer held. Looks at most
    /// every quarter of `idle` (so a key is closed between `idle` and
    /// 1.25 × `idle` after its last use), and returns nothing in between.
    pub(crate) fn sweep(&mut self, now: Duration) -> Vec<K> {
        if now < self.next_sweep {
            return Vec::new();
        }
        self.next_sweep = now + self.idle / 4;
        let idle = self.idle;
        let mut closed = Vec::new();
        self.last_used.retain(|key, at| {
            let keep = now.saturating_sub(*at) < idle;
            if !keep {
                closed.push(*key);
            }
            keep
        });
        closed
    }

    /// Stops holding `key` (its connection failed or was replaced).
    pub(crate) fn forget(&mut self, key: &K) {
        self.last_used.remove(key);
    }

    /// Whether `key` is held.
    pub(crate) fn holds(&self, key: &K) -> bool {
        self.last_used.contains_key(key)
    }

    /// How many keys are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.last_used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_least_recently_used_key_makes_room_for_a_new_one() {
        let mut r = Retention::new(2, s(60));
        assert!(!r.touch(1, s(0)).held);
        assert!(!r.touch(2, s(1)).held);
        // 1 is used again, so 2 is now the least recent.
        assert!(r.touch(1, s(2)).held);
        assert_eq!(
            r.touch(3, s(3)),
            Touched {
                held: false,
                evicted: vec![2]
            }
        );
        assert_eq!(r.len(), 2);
        assert!(r.touch(1, s(4)).held);
        assert!(!r.touch(2, s(5)).held, "2 was closed");
    }

    #[test]
    fn keys_idle_for_the_timeout_are_swept_and_others_kept() {
        let mut r = Retention::new(10, s(60));
        r.touch(1, s(0));
        r.touch(2, s(30));
        assert_eq!(r.sweep(s(59)), Vec::<i32>::new());
        // The next look is a quarter of the timeout later.
        assert_eq!(r.sweep(s(60)), Vec::<i32>::new());
        assert_eq!(r.sweep(s(74)), vec![1]);
        assert_eq!(r.len(), 1);
        assert!(r.touch(2, s(75)).held);
        // Looked at 74, so next at 89, 104, 119, 134 (2 idle 59 s: kept),
        // then 149.
        for at in [89, 104, 119, 134, 148] {
            assert_eq!(r.sweep(s(at)), Vec::<i32>::new(), "at {at} s");
        }
        assert_eq!(r.sweep(s(149)), vec![2]);
    }

    #[test]
    fn a_forgotten_key_is_new_again_and_max_is_at_least_one() {
        let mut r = Retention::new(0, s(60));
        r.touch(1, s(0));
        assert_eq!(r.touch(2, s(1)).evicted, vec![1]);
        r.forget(&2);
        assert_eq!(r.len(), 0);
        assert!(!r.touch(2, s(2)).held);
    }
}
