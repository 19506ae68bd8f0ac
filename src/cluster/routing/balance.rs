//! Load-balancing strategies as small pure pickers over a snapshot of
//! candidate loads. The picker owns its cursor and a seeded RNG, so a test
//! (or a simulation) replays exactly the same choices.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How [`WorkerRegistry::select_worker`](super::WorkerRegistry::select_worker)
/// chooses among the workers that match a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadBalancingStrategy {
    /// Each worker in turn: over `k·n` selections among `n` unchanged
    /// workers, each is chosen exactly `k` times.
    RoundRobin,
    /// A uniformly random worker (for stateless work; no shared state
    /// between selections apart from the RNG).
    Random,
    /// The worker with the fewest calls in flight from this registry
    /// (counted by the RAII guard in each selected `Worker`); ties are
    /// broken in round-robin order, so an idle pool is still spread evenly.
    /// The guide's recommended default.
    #[default]
    LeastConnections,
}

/// A strategy with its state: the round-robin cursor and the RNG.
#[derive(Debug)]
pub(crate) struct Picker {
    strategy: LoadBalancingStrategy,
    cursor: usize,
    rng: StdRng,
}

impl Picker {
    /// A picker whose random choices come from `seed`.
    pub(crate) fn new(strategy: LoadBalancingStrategy, seed: u64) -> Self {
        Self {
            strategy,
            cursor: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Chooses one of the candidates, given each one's calls in flight;
    /// `None` when there is no candidate. O(n).
    pub(crate) fn pick(&mut self, loads: &[usize]) -> Option<usize> {
        let n = loads.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor % n;
        self.cursor = self.cursor.wrapping_add(1);
        Some(match self.strategy {
            LoadBalancingStrategy::RoundRobin => start,
            LoadBalancingStrategy::Random => self.rng.random_range(0..n),
            LoadBalancingStrategy::LeastConnections => {
                // The first least-loaded candidate at or after the cursor.
                (0..n)
                    .map(|k| (start + k) % n)
                    .min_by_key(|&i| loads[i])
                    .unwrap_or(start)
            }
        })
    }

    /// Power of two choices (Mitzenmacher; the default of Finagle and
    /// tower): the less loaded of two distinct random candidates. Kept for
    /// the comparison in the benchmark (`bench/`); not a public strategy
    /// until it measures better than [`LoadBalancingStrategy::LeastConnections`].
    #[cfg(test)]
    pub(crate) fn pick_two_choices(&mut self, loads: &[usize]) -> Option<usize> {
        let n = loads.len();
        match n {
            0 => None,
            1 => Some(0),
            _ => {
                let a = self.rng.random_range(0..n);
                let b = (a + 1 + self.rng.random_range(0..n - 1)) % n;
                Some(if loads[b] < loads[a] { b } else { a })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(picks: impl Iterator<Item = usize>, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for i in picks {
            c[i] += 1;
        }
        c
    }

    #[test]
    fn no_candidate_no_pick() {
        for s in [
            LoadBalancingStrategy::RoundRobin,
            LoadBalancingStrategy::Random,
            LoadBalancingStrategy::LeastConnections,
        ] {
            assert_eq!(Picker::new(s, 1).pick(&[]), None);
        }
        assert_eq!(
            Picker::new(LoadBalancingStrategy::Random, 1).pick_two_choices(&[]),
            None
        );
    }

    #[test]
    fn round_robin_is_exactly_even() {
        let mut p = Picker::new(LoadBalancingStrategy::RoundRobin, 7);
        let loads = [5, 0, 9];
        let c = counts((0..300).map(|_| p.pick(&loads).unwrap()), 3);
        assert_eq!(c, vec![100, 100, 100], "load is ignored, turns are not");
    }

    #[test]
    fn least_connections_takes_the_least_loaded() {
        let mut p = Picker::new(LoadBalancingStrategy::LeastConnections, 7);
        for _ in 0..10 {
            assert_eq!(p.pick(&[3, 1, 2]), Some(1));
            assert_eq!(p.pick(&[0, 4, 4, 4]), Some(0));
        }
    }

    #[test]
    fn least_connections_spreads_ties_in_turn() {
        let mut p = Picker::new(LoadBalancingStrategy::LeastConnections, 7);
        // Sequential calls: every worker idle at each selection.
        let c = counts((0..400).map(|_| p.pick(&[0, 0, 0, 0]).unwrap()), 4);
        assert_eq!(c, vec![100; 4]);
        // Ties among the least loaded only.
        let c = counts((0..200).map(|_| p.pick(&[1, 0, 2, 0]).unwrap()), 4);
        assert_eq!(c, vec![0, 100, 0, 100]);
    }

    #[test]
    fn least_connections_keeps_loads_level() {
        // Each pick adds a call; every 3rd pick a random call finishes.
        let mut p = Picker::new(LoadBalancingStrategy::LeastConnections, 3);
        let mut rng = StdRng::seed_from_u64(9);
        let mut loads = vec![0usize; 5];
        for round in 0..1000 {
            let i = p.pick(&loads).unwrap();
            loads[i] += 1;
            if round % 3 == 0 {
                let busy: Vec<usize> = (0..5).filter(|&j| loads[j] > 0).collect();
                let j = busy[rng.random_range(0..busy.len())];
                loads[j] -= 1;
            }
            let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            assert!(hi - lo <= 2, "round {round}: {loads:?}");
        }
    }

    #[test]
    fn random_is_seeded_and_roughly_uniform() {
        let run = |seed| {
            let mut p = Picker::new(LoadBalancingStrategy::Random, seed);
            (0..4000).map(|_| p.pick(&[0, 0, 0, 0]).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42), "same seed, same choices");
        assert_ne!(run(42), run(43));
        for c in counts(run(42).into_iter(), 4) {
            assert!((850..=1150).contains(&c), "{c} of 4000 over 4 workers");
        }
    }

    #[test]
    fn two_choices_never_picks_the_busiest_of_two() {
        let mut p = Picker::new(LoadBalancingStrategy::Random, 5);
        for _ in 0..100 {
            assert_eq!(p.pick_two_choices(&[9, 0]), Some(1));
            assert_eq!(p.pick_two_choices(&[4]), Some(0));
        }
        // Over three workers the busiest is never chosen.
        let c = counts((0..300).map(|_| p.pick_two_choices(&[0, 0, 9]).unwrap()), 3);
        assert_eq!(c[2], 0);
    }
}
