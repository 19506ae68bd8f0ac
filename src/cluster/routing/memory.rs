//! What a registry remembers of an address across its workers' lives, and
//! how a new life is brought in; sans-IO (the caller passes `now`).
//!
//! * **Strikes**: an ejection, or a life that ended without leaving
//!   gracefully (membership failed it, or a new generation replaced it
//!   with no `Left` and no draining tag), costs its address a strike (at
//!   most one per life besides its ejections). Strikes are forgotten
//!   [`crash_memory`](super::EjectionPolicy::crash_memory) after they
//!   happened. An ejection lasts `base_ejection` × the strikes, this one
//!   included; a new life's slow start lasts `slow_start_window` × (1 +
//!   the strikes).
//! * **Slow start** (Envoy's `slow_start_config`, linear, aggression 1):
//!   a worker's weight grows from the minimum weight to 1 over its window.

use crate::cluster::MemberAddr;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::eject::EjectionPolicy;

/// Strikes kept per address at most (older ones are dropped first).
const MAX_STRIKES: usize = 64;

/// Addresses remembered at most; beyond, the one struck longest ago is
/// forgotten first.
const MAX_ADDRESSES: usize = 4096;

/// Recent strikes by address.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    strikes: HashMap<MemberAddr, VecDeque<Instant>>,
}

impl Memory {
    /// Records a strike for `addr` at `now`; returns its strikes within
    /// the memory, this one included.
    pub(crate) fn strike(
        &mut self,
        addr: MemberAddr,
        now: Instant,
        policy: &EjectionPolicy,
    ) -> u32 {
        self.forget(now, policy.crash_memory);
        if !self.strikes.contains_key(&addr) && self.strikes.len() >= MAX_ADDRESSES {
            let oldest = self
                .strikes
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(a, _)| *a);
            if let Some(oldest) = oldest {
                self.strikes.remove(&oldest);
            }
        }
        let times = self.strikes.entry(addr).or_default();
        if times.len() >= MAX_STRIKES {
            times.pop_front();
        }
        times.push_back(now);
        times.len() as u32
    }

    /// The strikes of `addr` within the memory at `now`.
    pub(crate) fn strikes(&self, addr: MemberAddr, now: Instant, policy: &EjectionPolicy) -> u32 {
        self.strikes.get(&addr).map_or(0, |times| {
            times
                .iter()
                .filter(|&&t| now.saturating_duration_since(t) < policy.crash_memory)
                .count() as u32
        })
    }

    fn forget(&mut self, now: Instant, memory: Duration) {
        self.strikes.retain(|_, times| {
            while times
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= memory)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// The slow start of a life beginning at `now` at `addr`, if any.
    pub(crate) fn warmup(
        &self,
        addr: MemberAddr,
        now: Instant,
        policy: &EjectionPolicy,
    ) -> Option<Warmup> {
        let strikes = self.strikes(addr, now, policy);
        let window = policy.slow_start_window.saturating_mul(1 + strikes);
        (!window.is_zero()).then_some(Warmup { since: now, window })
    }
}

/// A worker's slow start: its weight grows linearly over `window` from
/// `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Warmup {
    since: Instant,
    window: Duration,
}

impl Warmup {
    /// The weight at `now`, in [`min`, 1].
    pub(crate) fn weight(&self, now: Instant, min: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= self.window {
            return 1.0;
        }
        (elapsed.as_secs_f64() / self.window.as_secs_f64()).clamp(min, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn addr(port: u16) -> MemberAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()
    }

    #[test]
    fn strikes_add_up_per_address_and_are_forgotten_one_by_one() {
        let p = EjectionPolicy::default(); // 60 s memory
        let t0 = Instant::now();
        let mut m = Memory::default();
        assert_eq!(m.strike(addr(1), t0, &p), 1);
        assert_eq!(m.strike(addr(1), t0 + 10 * S, &p), 2);
        assert_eq!(m.strike(addr(2), t0 + 10 * S, &p), 1, "per address");
        assert_eq!(m.strikes(addr(1), t0 + 59 * S, &p), 2);
        assert_eq!(
            m.strikes(addr(1), t0 + 60 * S, &p),
            1,
            "the first is forgotten"
        );
        assert_eq!(m.strikes(addr(1), t0 + 70 * S, &p), 0);
        assert_eq!(m.strike(addr(1), t0 + 70 * S, &p), 1);
    }

    #[test]
    fn memory_is_bounded() {
        let p = EjectionPolicy::default();
        let t0 = Instant::now();
        let mut m = Memory::default();
        for i in 0..100 {
            m.strike(addr(1), t0 + Duration::from_millis(i), &p);
        }
        assert_eq!(m.strikes(addr(1), t0 + S, &p), MAX_STRIKES as u32);
        for port in 0..(MAX_ADDRESSES as u16 + 10) {
            m.strike(addr(port), t0 + S, &p);
        }
        assert!(m.strikes.len() <= MAX_ADDRESSES);
    }

    #[test]
    fn slow_start_ramps_from_the_minimum_and_strikes_lengthen_it() {
        let p = EjectionPolicy::default(); // 10 s window, 10% minimum
        let t0 = Instant::now();
        let mut m = Memory::default();
        let fresh = m.warmup(addr(1), t0, &p).unwrap();
        assert_eq!(fresh.weight(t0, 0.1), 0.1);
        assert!((fresh.weight(t0 + 5 * S, 0.1) - 0.5).abs() < 1e-9);
        assert_eq!(fresh.weight(t0 + 10 * S, 0.1), 1.0);
        m.strike(addr(1), t0, &p);
        m.strike(addr(1), t0, &p);
        let scarred = m.warmup(addr(1), t0, &p).unwrap();
        assert!(
            (scarred.weight(t0 + 15 * S, 0.1) - 0.5).abs() < 1e-9,
            "30 s window"
        );
        let off = EjectionPolicy {
            slow_start_window: Duration::ZERO,
            ..p
        };
        assert_eq!(m.warmup(addr(1), t0, &off), None);
    }
}
