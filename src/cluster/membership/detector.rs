//! The Phi Accrual failure detector (Hayashibara et al., 2004), as Akka and
//! Cassandra use it: instead of a yes/no timeout it reports φ, the
//! confidence that a peer is down given the history of heartbeat
//! inter-arrival times. φ = 1 means a 10% chance of being wrong, φ = 2 a 1%
//! chance, φ = 8 one in 10⁸.
//!
//! Two kinds of arrival feed it, as in Akka's cluster heartbeat: the
//! periodic *heartbeats* (one every health-check interval), whose
//! inter-arrival times make the history φ is computed from, and any other
//! *sign of life* (SWIM traffic, a direct tag update), which only moves
//! the point the silence is measured from. Irregular traffic therefore
//! never widens the distribution: a member's verdict comes as soon after
//! its last sign of life as its heartbeat rhythm allows, whether it joined
//! a second ago or an hour ago.
//!
//! Pure and deterministic: time is passed in as a `Duration` since any
//! fixed origin; the detector never reads a clock.

use std::collections::VecDeque;
use std::time::Duration;

/// Tuning for [`PhiAccrualDetector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhiConfig {
    /// φ above which a peer is considered failed (default 8).
    pub threshold: f64,
    /// Inter-arrival samples kept (default 200).
    pub max_samples: usize,
    /// Floor for the standard deviation, so a perfectly regular peer is
    /// not declared failed by the first small delay (default 100 ms).
    pub min_std_deviation: Duration,
    /// Pause tolerated on top of the mean before φ rises (GC, scheduling;
    /// default 1 s).
    pub acceptable_pause: Duration,
    /// Interval assumed before any sample exists (default 1 s).
    pub first_heartbeat_estimate: Duration,
}

impl Default for PhiConfig {
    fn default() -> Self {
        Self {
            threshold: 8.0,
            max_samples: 200,
            min_std_deviation: Duration::from_millis(100),
            acceptable_pause: Duration::from_secs(1),
            first_heartbeat_estimate: Duration::from_secs(1),
        }
    }
}

/// Heartbeat history of one peer.
#[derive(Debug, Clone)]
pub struct PhiAccrualDetector {
    config: PhiConfig,
    intervals_ms: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    /// Arrival of the last periodic heartbeat (the start of the next interval sample).
    last_heartbeat: Option<Duration>,
    /// The last sign of life of any kind (where silence is measured from).
    last_seen: Option<Duration>,
}

impl PhiAccrualDetector {
    /// A detector that has heard nothing yet (φ is 0 until the first sign of life).
    pub fn new(config: PhiConfig) -> Self {
        Self {
            config,
            intervals_ms: VecDeque::with_capacity(config.max_samples.min(1024)),
            sum: 0.0,
            sum_sq: 0.0,
            last_heartbeat: None,
            last_seen: None,
        }
    }

    /// Records one of the peer's periodic heartbeats arriving at `now`:
    /// a sign of life, and (from the second heartbeat on) an inter-arrival
    /// sample. Timestamps earlier than the last heartbeat are ignored.
    ///
    /// An interval at whose end φ had already passed the threshold (this
    /// node would have judged the peer failed) is a fault the peer came back
    /// from (a partition, a pause, a loss burst), not its rhythm: it is not
    /// a sample, as Cassandra ignores inter-arrival times above its maximum
    /// interval. Otherwise one 5 s partition would widen the distribution,
    /// and slow every verdict, for the next `max_samples` heartbeats. A
    /// peer that slows down is still learned, step by step.
    pub fn heartbeat(&mut self, now: Duration) {
        self.heard(now);
        match self.last_heartbeat {
            Some(last) if now > last => {
                let interval = (now - last).as_secs_f64() * 1000.0;
                if self.phi_after(interval) < self.config.threshold {
                    self.push(interval);
                }
            }
            Some(_) => return,
            None => {}
        }
        self.last_heartbeat = Some(now);
    }

    /// Records a sign of life other than a heartbeat (any other message
    /// from the peer, or learning that it is up) at `now`: silence is
    /// measured from here, the interval history is unchanged.
    ///
    /// The first sign of life seeds the history as Akka does, with two
    /// samples around `first_heartbeat_estimate` (± a quarter), so φ is
    /// meaningful before the second heartbeat.
    pub fn heard(&mut self, now: Duration) {
        if self.intervals_ms.is_empty() {
            let mean = self.config.first_heartbeat_estimate.as_secs_f64() * 1000.0;
            let std = mean / 4.0;
            self.push(mean - std);
            self.push(mean + std);
        }
        self.last_seen = Some(self.last_seen.map_or(now, |l| l.max(now)));
    }

    fn push(&mut self, interval_ms: f64) {
        if self.intervals_ms.len() >= self.config.max_samples.max(1) {
            if let Some(old) = self.intervals_ms.pop_front() {
                self.sum -= old;
                self.sum_sq -= old * old;
            }
        }
        self.intervals_ms.push_back(interval_ms);
        self.sum += interval_ms;
        self.sum_sq += interval_ms * interval_ms;
    }

    /// Mean inter-arrival time in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        if self.intervals_ms.is_empty() {
            0.0
        } else {
            self.sum / self.intervals_ms.len() as f64
        }
    }

    /// Standard deviation of inter-arrival times in milliseconds (before the floor).
    pub fn std_deviation_ms(&self) -> f64 {
        let n = self.intervals_ms.len() as f64;
        if n == 0.0 {
            return 0.0;
        }
        let mean = self.sum / n;
        (self.sum_sq / n - mean * mean).max(0.0).sqrt()
    }

    /// Discounts the silence between `from` and `to` that was not the
    /// peer's: this node itself was paused then (a stall, a VM hiccup), so
    /// it could not hear anyone. The last heartbeat and the last sign of
    /// life each move forward by the part of the pause that followed them
    /// (so the next interval sample does not contain the pause either); the
    /// inter-arrival history is unchanged.
    pub fn discount_silence(&mut self, from: Duration, to: Duration) {
        let shift = |last: &mut Option<Duration>| {
            if let Some(l) = *last {
                if l < to {
                    *last = Some(l + (to - from.max(l)));
                }
            }
        };
        shift(&mut self.last_heartbeat);
        shift(&mut self.last_seen);
    }

    /// When the last periodic heartbeat arrived.
    pub fn last_heartbeat(&self) -> Option<Duration> {
        self.last_heartbeat
    }

    /// When the last sign of life of any kind arrived.
    pub fn last_seen(&self) -> Option<Duration> {
        self.last_seen
    }

    /// φ at `now`, for the silence since the last sign of life: 0 before any.
    pub fn phi(&self, now: Duration) -> f64 {
        let Some(last) = self.last_seen else {
            return 0.0;
        };
        self.phi_after(now.saturating_sub(last).as_secs_f64() * 1000.0)
    }

    /// φ for a silence of `elapsed_ms` under the current history.
    fn phi_after(&self, elapsed_ms: f64) -> f64 {
        let mean = self.mean_ms() + self.config.acceptable_pause.as_secs_f64() * 1000.0;
        let std = self
            .std_deviation_ms()
            .max(self.config.min_std_deviation.as_secs_f64() * 1000.0);
        phi(elapsed_ms, mean, std)
    }

    /// Whether φ is below the threshold at `now`.
    pub fn is_available(&self, now: Duration) -> bool {
        self.phi(now) < self.config.threshold
    }

    /// The configuration.
    pub fn config(&self) -> &PhiConfig {
        &self.config
    }
}

/// −log10(1 − F(elapsed)) for a normal distribution N(mean, std), with
/// the logistic approximation of the CDF that Akka uses (error < 0.0002).
fn phi(elapsed: f64, mean: f64, std: f64) -> f64 {
    let y = (elapsed - mean) / std;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if elapsed > mean {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A detector with a history of exactly-1 s intervals and no acceptable pause.
    fn regular() -> PhiAccrualDetector {
        let mut d = PhiAccrualDetector::new(PhiConfig {
            acceptable_pause: Duration::ZERO,
            max_samples: 10,
            ..PhiConfig::default()
        });
        for i in 0..=20 {
            d.heartbeat(ms(i * 1000));
        }
        d
    }

    // Expected values computed independently from Akka's formula:
    // y = (t - mean) / std; e = exp(-y (1.5976 + 0.070566 y²));
    // φ = -log10(e / (1 + e)) if t > mean else -log10(1 - 1 / (1 + e)).
    #[test]
    fn phi_matches_hand_computed_values() {
        let d = regular();
        assert_eq!(d.mean_ms(), 1000.0);
        assert_eq!(d.std_deviation_ms(), 0.0); // floored to 100 ms
        let last = 20_000;
        let cases = [
            (900, 0.0750330321409399),
            (1000, std::f64::consts::LOG10_2), // at the mean: -log10(1/2)
            (1100, 0.7995083208395598),
            (1300, 2.9094753264849538),
            (1500, 7.299947394460206),
        ];
        for (elapsed, expected) in cases {
            let got = d.phi(ms(last + elapsed));
            assert!(
                (got - expected).abs() < 1e-9,
                "elapsed {elapsed}: {got} != {expected}"
            );
        }
    }

    #[test]
    fn acceptable_pause_shifts_the_mean() {
        // History 800, 1200 → mean 1000, std 200; pause 500 → effective mean 1500.
        let mut d = PhiAccrualDetector::new(PhiConfig {
            acceptable_pause: ms(500),
            ..PhiConfig::default()
        });
        d.intervals_ms.clear();
        d.sum = 0.0;
        d.sum_sq = 0.0;
        d.push(800.0);
        d.push(1200.0);
        d.last_seen = Some(ms(10_000));
        assert!((d.std_deviation_ms() - 200.0).abs() < 1e-9);
        assert!((d.phi(ms(11_500)) - std::f64::consts::LOG10_2).abs() < 1e-9);
        assert!((d.phi(ms(12_000)) - 2.2160712662941497).abs() < 1e-9);
    }

    #[test]
    fn no_heartbeat_means_no_suspicion_and_first_heartbeat_seeds_history() {
        let mut d = PhiAccrualDetector::new(PhiConfig::default());
        assert_eq!(d.phi(ms(1_000_000)), 0.0);
        d.heartbeat(ms(5_000));
        assert_eq!(d.mean_ms(), 1000.0);
        assert_eq!(d.std_deviation_ms(), 250.0);
        assert!(d.is_available(ms(6_000)));
    }

    #[test]
    fn a_sign_of_life_seeds_the_history_and_the_first_heartbeat_adds_no_sample() {
        // Learning a member is up (at 5 s) is not a heartbeat: the first
        // heartbeat 120 ms later starts the rhythm, it is not a 120 ms interval.
        let mut d = PhiAccrualDetector::new(PhiConfig::default());
        d.heard(ms(5_000));
        assert_eq!(d.last_heartbeat(), None);
        d.heartbeat(ms(5_120));
        assert_eq!(d.intervals_ms, [750.0, 1250.0]);
        d.heartbeat(ms(6_120));
        assert_eq!(d.intervals_ms, [750.0, 1250.0, 1000.0]);
    }

    #[test]
    fn other_traffic_moves_the_silence_but_not_the_history() {
        let mut d = regular();
        let before = d.intervals_ms.clone();
        // SWIM traffic 300 ms and 700 ms after the last heartbeat.
        d.heard(ms(20_300));
        d.heard(ms(20_700));
        assert_eq!(d.intervals_ms, before, "no 300/400 ms samples");
        assert_eq!(d.last_heartbeat(), Some(ms(20_000)));
        // φ is measured from the last sign of life: 1.1 s after it, not after the heartbeat.
        assert!((d.phi(ms(21_800)) - 0.7995083208395598).abs() < 1e-9);
        // The next heartbeat's sample is its distance from the previous heartbeat.
        d.heartbeat(ms(21_000));
        assert_eq!(d.intervals_ms.back(), Some(&1000.0));
    }

    #[test]
    fn an_interval_past_the_threshold_is_not_a_sample() {
        // Mean 1 s, acceptable pause 1 s (default): a 2 s interval is still
        // the peer's rhythm (a lost heartbeat: φ 0.3 at its end), a 5 s one
        // is a fault (φ far past 8 at its end).
        let mut d = PhiAccrualDetector::new(PhiConfig {
            max_samples: 10,
            ..PhiConfig::default()
        });
        for i in 0..=20 {
            d.heartbeat(ms(i * 1000));
        }
        d.heartbeat(ms(22_000));
        assert_eq!(d.intervals_ms.back(), Some(&2000.0));
        let before = d.intervals_ms.clone();
        d.heartbeat(ms(27_000));
        assert_eq!(d.intervals_ms, before, "the 5 s silence is not a sample");
        assert_eq!(d.last_heartbeat(), Some(ms(27_000)));
        d.heartbeat(ms(28_000));
        assert_eq!(d.intervals_ms.back(), Some(&1000.0));
    }

    #[test]
    fn a_discounted_pause_is_kept_out_of_the_next_sample() {
        let mut d = regular();
        // This node was paused from 20.2 s to 22.2 s.
        d.discount_silence(ms(20_200), ms(22_200));
        assert_eq!(d.last_heartbeat(), Some(ms(22_000)));
        assert_eq!(d.last_seen(), Some(ms(22_000)));
        d.heartbeat(ms(23_000));
        assert_eq!(d.intervals_ms.back(), Some(&1000.0));
    }

    #[test]
    fn phi_grows_with_silence_and_crosses_the_threshold() {
        let d = regular();
        let mut previous = 0.0;
        for elapsed in (1000..3000).step_by(100) {
            let p = d.phi(ms(20_000 + elapsed));
            assert!(p >= previous, "phi must not decrease with silence");
            previous = p;
        }
        assert!(d.is_available(ms(21_400)));
        assert!(!d.is_available(ms(21_600)));
    }

    #[test]
    fn window_is_bounded_and_adapts_to_a_slower_peer() {
        let mut d = regular();
        // The peer slows down, 5% per heartbeat, to 3 s heartbeats; every
        // step is within φ's threshold, so each is learned, and the 10-sample
        // window forgets the old rhythm.
        let (mut t, mut interval) = (20_000, 1000);
        while interval < 3000 {
            interval = (interval * 105 / 100).min(3000);
            t += interval;
            let samples = d.intervals_ms.len();
            d.heartbeat(ms(t));
            let last = d.intervals_ms.back().copied().unwrap_or_default();
            assert!(
                (last - interval as f64).abs() < 1e-6,
                "{last} != {interval}"
            );
            assert_eq!((samples, d.intervals_ms.len()), (10, 10));
        }
        for _ in 0..10 {
            t += 3000;
            d.heartbeat(ms(t));
        }
        assert_eq!(d.intervals_ms.len(), 10);
        assert_eq!(d.mean_ms(), 3000.0);
        // A 3.1 s gap is now unremarkable (y = 1: φ = 0.7995), where under
        // the old 1 s rhythm it would have been far past any threshold.
        assert!((d.phi(ms(t + 3100)) - 0.7995083208395598).abs() < 1e-9);
        assert!(regular().phi(ms(20_000 + 3100)) > 100.0);
    }

    #[test]
    fn out_of_order_timestamps_are_ignored() {
        let mut d = regular();
        let before = d.clone();
        d.heartbeat(ms(19_000));
        assert_eq!(d.intervals_ms, before.intervals_ms);
        assert_eq!(d.last_heartbeat(), Some(ms(20_000)));
    }
}
