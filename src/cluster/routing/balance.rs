//! Load-balancing strategies as small pure pickers over a snapshot of
//! candidate loads and weights. The picker owns its cursor and a seeded
//! RNG, so a test (or a simulation) replays exactly the same choices.
//!
//! * **Start**: the round-robin cursor (which also breaks
//!   least-connections ties) starts at a random position drawn from the
//!   seed, so fresh registries, each seeded from the OS, do not all send
//!   their first call to the same worker.
//! * **Weights** (slow start, a worker held back, panic routing): a
//!   candidate of weight `w` takes part in a selection with probability
//!   `w / w_max`, the heaviest always; the strategy then chooses among
//!   those taking part. With equal weights nothing is drawn and every
//!   strategy is exactly as without weights. The share of a candidate of
//!   weight `w` is thus at most about `w` times its share at full weight,
//!   and a worker whose calls end fast (failing fast) is no more favoured
//!   by least-connections than its weight allows.
//!
//! `least_loaded_of_two` (power of two choices) is here too, measured
//! against `LeastConnections` by the benchmark (`bench/src/routing.rs`
//! compiles this file into the harness) and not offered as a strategy:
//! it did not beat `LeastConnections` under skew (`docs/CLUSTER.md`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};

/// How [`WorkerRegistry::select_worker`](super::WorkerRegistry::select_worker)
/// chooses among the workers that match a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadBalancingStrategy {
    /// Each worker in turn, from a random first one: over `k·n` selections
    /// among `n` unchanged workers at full weight, each is chosen exactly
    /// `k` times.
    RoundRobin,
    /// A uniformly random worker (for stateless work; no shared state
    /// between selections apart from the RNG).
    Random,
    /// The worker with the fewest calls in flight from this registry
    /// (counted by the RAII guard in each selected `Worker`); ties are
    /// broken in round-robin order from a random first worker, so an idle
    /// pool is still spread evenly. The guide's recommended default.
    #[default]
    LeastConnections,
}

/// A strategy with its state: the round-robin cursor and the RNG. Shared
/// by every call of a registry without a lock on the common path: the
/// cursor is an atomic, and the RNG (behind a lock) is drawn from only
/// when candidates' weights differ or the strategy is `Random`. From one
/// thread its choices follow from the seed alone.
#[derive(Debug)]
pub(crate) struct Picker {
    strategy: LoadBalancingStrategy,
    cursor: AtomicUsize,
    rng: Mutex<StdRng>,
}

/// Which candidates take part in one selection: a bit each (up to 64
/// candidates, no allocation), or a list beyond that.
enum TakingPart {
    All,
    Mask(u64),
    List(Vec<bool>),
}

impl TakingPart {
    fn includes(&self, i: usize) -> bool {
        match self {
            Self::All => true,
            Self::Mask(bits) => bits & (1 << i) != 0,
            Self::List(list) => list[i],
        }
    }
}

impl Picker {
    /// A picker whose random choices, first position included, come from `seed`.
    pub(crate) fn new(strategy: LoadBalancingStrategy, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Self {
            strategy,
            cursor: AtomicUsize::new(rng.random_range(0..u32::MAX) as usize),
            rng: Mutex::new(rng),
        }
    }

    /// Chooses one of the candidates, given each one's calls in flight,
    /// all at full weight; `None` when there is no candidate. O(n).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn pick(&self, loads: &[usize]) -> Option<usize> {
        self.pick_by(loads.len(), |i| loads[i], |_| 1.0)
    }

    /// Chooses one of the candidates, given each one's calls in flight and
    /// weight in (0, 1]; `None` when there is no candidate. O(n).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn pick_weighted(&self, loads: &[usize], weights: &[f64]) -> Option<usize> {
        self.pick_by(loads.len(), |i| loads[i], |i| weights[i])
    }

    /// Chooses one of `n` candidates, candidate `i` having `load(i)` calls
    /// in flight and weight `weight(i)` in (0, 1]; `None` when `n` is 0.
    /// O(n); allocates only for more than 64 candidates of unequal weights.
    pub(crate) fn pick_by(
        &self,
        n: usize,
        load: impl Fn(usize) -> usize,
        weight: impl Fn(usize) -> f64,
    ) -> Option<usize> {
        match n {
            0 => return None,
            // Nothing to choose, and no shared cursor to move (an atomic
            // add every thread making calls would contend on).
            1 => return Some(0),
            _ => {}
        }
        let taking_part = self.draw(n, &weight);
        let part = |i: usize| taking_part.includes(i);
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        // Candidates taking part, in round-robin order from the cursor.
        let mut order = (0..n).map(|k| (start + k) % n).filter(|&i| part(i));
        Some(match self.strategy {
            LoadBalancingStrategy::RoundRobin => order.next().unwrap_or(start),
            LoadBalancingStrategy::Random => {
                let count = (0..n).filter(|&i| part(i)).count();
                let nth = self.rng().random_range(0..count.max(1));
                (0..n).filter(|&i| part(i)).nth(nth).unwrap_or(start)
            }
            // The first least-loaded candidate at or after the cursor.
            LoadBalancingStrategy::LeastConnections => {
                order.min_by_key(|&i| load(i)).unwrap_or(start)
            }
        })
    }

    /// The RNG, whatever a panicking holder left (`crate::sync::lock`; this
    /// file is also compiled into the benchmark harness, outside the crate).
    fn rng(&self) -> std::sync::MutexGuard<'_, StdRng> {
        self.rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Which candidates take part, drawn by weight: all of them when the
    /// weights are equal (nothing is drawn).
    fn draw(&self, n: usize, weight: &impl Fn(usize) -> f64) -> TakingPart {
        let max = (0..n).map(weight).fold(0.0, f64::max);
        if max <= 0.0 || (0..n).all(|i| weight(i) >= max) {
            return TakingPart::All;
        }
        let mut rng = self.rng();
        let mut takes = |i: usize| {
            let w = weight(i);
            w >= max || rng.random::<f64>() * max < w
        };
        if n <= 64 {
            TakingPart::Mask((0..n).fold(0, |bits, i| bits | (u64::from(takes(i)) << i)))
        } else {
            TakingPart::List((0..n).map(takes).collect())
        }
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
    fn fresh_pickers_start_at_random_positions() {
        for strategy in [
            LoadBalancingStrategy::RoundRobin,
            LoadBalancingStrategy::LeastConnections,
        ] {
            let first = |seed| Picker::new(strategy, seed).pick(&[0, 0, 0]).unwrap();
            let c = counts((0..300).map(first), 3);
            for n in &c {
                assert!((70..=130).contains(n), "{strategy:?}: {c:?}");
            }
            assert_eq!(first(5), first(5), "the same seed starts at the same place");
        }
    }

    #[test]
    fn weights_thin_a_candidate_to_its_weight_and_equal_weights_change_nothing() {
        for strategy in [
            LoadBalancingStrategy::RoundRobin,
            LoadBalancingStrategy::Random,
            LoadBalancingStrategy::LeastConnections,
        ] {
            let p = Picker::new(strategy, 3);
            // Candidate 2 at a tenth of the others' weight, and idle: it
            // gets a tenth of what it would get at full weight (every call
            // under least-connections, a third otherwise).
            let loads = [1, 1, 0];
            let c = counts(
                (0..6000).map(|_| p.pick_weighted(&loads, &[1.0, 1.0, 0.1]).unwrap()),
                3,
            );
            let full = match strategy {
                LoadBalancingStrategy::LeastConnections => 6000,
                _ => 2000,
            };
            let expected = full / 10;
            assert!(
                (expected / 2..=expected * 3 / 2).contains(&c[2]),
                "{strategy:?}: {c:?}"
            );
            // Relative weights: all at the minimum is all equal.
            let a = Picker::new(strategy, 9);
            let b = Picker::new(strategy, 9);
            for _ in 0..100 {
                assert_eq!(
                    a.pick_weighted(&loads, &[0.1, 0.1, 0.1]),
                    b.pick(&loads),
                    "{strategy:?}"
                );
            }
        }
    }

    #[test]
    fn round_robin_is_exactly_even() {
        let p = Picker::new(LoadBalancingStrategy::RoundRobin, 7);
        let loads = [5, 0, 9];
        let c = counts((0..300).map(|_| p.pick(&loads).unwrap()), 3);
        assert_eq!(c, vec![100, 100, 100], "load is ignored, turns are not");
    }

    #[test]
    fn least_connections_takes_the_least_loaded() {
        let p = Picker::new(LoadBalancingStrategy::LeastConnections, 7);
        for _ in 0..10 {
            assert_eq!(p.pick(&[3, 1, 2]), Some(1));
            assert_eq!(p.pick(&[0, 4, 4, 4]), Some(0));
        }
    }

    #[test]
    fn least_connections_spreads_ties_in_turn() {
        let p = Picker::new(LoadBalancingStrategy::LeastConnections, 7);
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
        let p = Picker::new(LoadBalancingStrategy::LeastConnections, 3);
        let widest = widest_spread(|loads| p.pick(loads).unwrap());
        assert!(widest <= 2, "spread {widest}");
    }

    #[test]
    fn random_is_seeded_and_roughly_uniform() {
        let run = |seed| {
            let p = Picker::new(LoadBalancingStrategy::Random, seed);
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
        let random = Picker::new(LoadBalancingStrategy::Random, 3);
        let blind = widest_spread(|loads| random.pick(loads).unwrap());
        // Looser than LeastConnections's 2, far tighter than a blind pick.
        assert!(two <= 8, "two choices: spread {two}");
        assert!(
            blind >= 3 * two,
            "random: spread {blind}, two choices: {two}"
        );
    }
}
