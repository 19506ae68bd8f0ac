//! Load-balancing strategies as small pure pickers over a snapshot of
//! candidate loads. The picker owns its cursor and a seeded RNG, so a test
//! (or a simulation) replays exactly the same choices.
//!
//! `least_loaded_of_two` (power of two choices) is here too, measured
//! against `LeastConnections` by the benchmark (`bench/src/routing.rs`
//! compiles this file into the harness) and not offered as a strategy:
//! it did not beat `LeastConnections` under skew (`docs/CLUSTER.md`).

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};

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
}

/// Power of two choices (Mitzenmacher, "The Power of Two Choices in
/// Randomized Load Balancing", 2001; tower's `balance::p2c`, Finagle's
/// default balancer): two distinct candidates drawn uniformly from `rng`,
/// the one with fewer calls in flight chosen (the first drawn on a tie).
/// `None` when there is no candidate; the only one when there is one. O(1).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn least_loaded_of_two(rng: &mut impl Rng, loads: &[usize]) -> Option<usize> {
    let n = loads.len();
    match n {
        0 => None,
        1 => Some(0),
        _ => {
            let a = rng.random_range(0..n);
            // A second, distinct index: uniform over the other n - 1.
            let b = (a + 1 + rng.random_range(0..n - 1)) % n;
            Some(if loads[b] < loads[a] { b } else { a })
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
        let widest = widest_spread(|loads| p.pick(loads).unwrap());
        assert!(widest <= 2, "spread {widest}");
    }

    #[test]
    fn random_is_seeded_and_roughly_uniform() {
        let run = |seed| {
            let mut p = Picker::new(LoadBalancingStrategy::Random, seed);
            (0..4000)
                .map(|_| p.pick(&[0, 0, 0, 0]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42), "same seed, same choices");
        assert_ne!(run(42), run(43));
        for c in counts(run(42).into_iter(), 4) {
            assert!((850..=1150).contains(&c), "{c} of 4000 over 4 workers");
        }
    }

    #[test]
    fn two_choices_is_seeded_and_never_takes_the_most_loaded() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..2000)
                .map(|_| least_loaded_of_two(&mut rng, &[3, 1, 7, 2]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5), "same seed, same choices");
        assert_ne!(run(5), run(6));
        let c = counts(run(5).into_iter(), 4);
        // Worker 2 (the most loaded) loses every pair it is drawn in;
        // worker 1 (the least) wins every pair it is in: 3 of the 6 pairs.
        assert_eq!(c[2], 0, "{c:?}");
        assert!((850..=1150).contains(&c[1]), "{c:?}");
        assert!(c[1] > c[3] && c[3] > c[0], "{c:?}");
    }

    #[test]
    fn two_choices_handles_one_or_no_candidate_and_draws_distinct_pairs() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(least_loaded_of_two(&mut rng, &[]), None);
        assert_eq!(least_loaded_of_two(&mut rng, &[9]), Some(0));
        // Two candidates: the pair is always both, so the lighter always wins.
        for _ in 0..100 {
            assert_eq!(least_loaded_of_two(&mut rng, &[4, 2]), Some(1));
        }
        // An idle pool is spread evenly.
        let c = counts(
            (0..4000).map(|_| least_loaded_of_two(&mut rng, &[0; 4]).unwrap()),
            4,
        );
        for n in c {
            assert!((850..=1150).contains(&n), "{n} of 4000 over 4 workers");
        }
    }

    /// The widest spread of loads (most minus least loaded) over 1,000
    /// picks, each adding a call, every 3rd followed by a random call ending.
    fn widest_spread(mut pick: impl FnMut(&[usize]) -> usize) -> usize {
        let mut rng = StdRng::seed_from_u64(9);
        let mut loads = vec![0usize; 5];
        let mut widest = 0;
        for round in 0..1000 {
            let i = pick(&loads);
            loads[i] += 1;
            if round % 3 == 0 {
                let busy: Vec<usize> = (0..5).filter(|&j| loads[j] > 0).collect();
                let j = busy[rng.random_range(0..busy.len())];
                loads[j] -= 1;
            }
            let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            widest = widest.max(hi - lo);
        }
        widest
    }

    #[test]
    fn two_choices_keeps_loads_nearly_level() {
        let mut rng = StdRng::seed_from_u64(3);
        let two = widest_spread(|loads| least_loaded_of_two(&mut rng, loads).unwrap());
        let mut random = Picker::new(LoadBalancingStrategy::Random, 3);
        let blind = widest_spread(|loads| random.pick(loads).unwrap());
        // Looser than LeastConnections's 2, far tighter than a blind pick.
        assert!(two <= 8, "two choices: spread {two}");
        assert!(
            blind >= 3 * two,
            "random: spread {blind}, two choices: {two}"
        );
    }
}
