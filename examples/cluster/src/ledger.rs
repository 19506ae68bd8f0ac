//! The client's account of its token stream: which sequence it needs
//! next, what arrived out of order, how many failovers and the longest
//! silence between two tokens. Pure: the caller passes the time in.

use std::time::{Duration, Instant};

/// How one received token fits the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The next one expected.
    InOrder,
    /// Already received (a repeat).
    Duplicate,
    /// Later than expected: this many tokens were skipped.
    Gap(u64),
}

/// The stream so far.
#[derive(Debug, Clone)]
pub struct StreamLedger {
    next: u64,
    received: u64,
    duplicated: u64,
    missing: u64,
    failovers: u64,
    last_token_at: Option<Instant>,
    longest_gap: Duration,
}

impl Default for StreamLedger {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamLedger {
    /// A stream expecting sequence 1.
    pub fn new() -> Self {
        Self {
            next: 1,
            received: 0,
            duplicated: 0,
            missing: 0,
            failovers: 0,
            last_token_at: None,
            longest_gap: Duration::ZERO,
        }
    }

    /// The sequence to ask a worker to resume from.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Records a token that arrived at `now`.
    pub fn record(&mut self, sequence: u64, now: Instant) -> Delivery {
        self.received += 1;
        if let Some(last) = self.last_token_at {
            self.longest_gap = self.longest_gap.max(now.saturating_duration_since(last));
        }
        self.last_token_at = Some(now);
        if sequence < self.next {
            self.duplicated += 1;
            return Delivery::Duplicate;
        }
        let skipped = sequence - self.next;
        self.missing += skipped;
        self.next = sequence.saturating_add(1);
        if skipped == 0 {
            Delivery::InOrder
        } else {
            Delivery::Gap(skipped)
        }
    }

    /// Counts a switch to another worker (or the same one, back from a failure).
    pub fn failover(&mut self) {
        self.failovers += 1;
    }

    /// The figures so far.
    pub fn summary(&self) -> Summary {
        Summary {
            received: self.received,
            failovers: self.failovers,
            longest_gap: self.longest_gap,
            missing: self.missing,
            duplicated: self.duplicated,
        }
    }
}

/// What the client prints when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Tokens received (repeats included).
    pub received: u64,
    /// Switches to a worker after a failure.
    pub failovers: u64,
    /// Longest time between two consecutive tokens.
    pub longest_gap: Duration,
    /// Sequence numbers never received.
    pub missing: u64,
    /// Tokens received more than once.
    pub duplicated: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "📋 summary: tokens received={}, failovers={}, longest gap={} ms, missing/duplicated={}/{}",
            self.received,
            self.failovers,
            self.longest_gap.as_millis(),
            self.missing,
            self.duplicated
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unbroken_stream_has_no_gaps_or_repeats() {
        let t0 = Instant::now();
        let mut ledger = StreamLedger::new();
        for s in 1..=5 {
            assert_eq!(
                ledger.record(s, t0 + Duration::from_millis(100 * s)),
                Delivery::InOrder
            );
        }
        assert_eq!(ledger.next_sequence(), 6);
        let summary = ledger.summary();
        assert_eq!(
            (summary.received, summary.missing, summary.duplicated),
            (5, 0, 0)
        );
        assert_eq!(summary.longest_gap, Duration::from_millis(100));
    }

    #[test]
    fn repeats_and_skips_are_counted_and_the_longest_silence_kept() {
        let t0 = Instant::now();
        let mut ledger = StreamLedger::new();
        ledger.record(1, t0);
        ledger.record(2, t0 + Duration::from_millis(100));
        ledger.failover();
        // A worker that resumed one too early, then one that skipped two.
        assert_eq!(
            ledger.record(2, t0 + Duration::from_millis(1300)),
            Delivery::Duplicate
        );
        assert_eq!(
            ledger.record(5, t0 + Duration::from_millis(1400)),
            Delivery::Gap(2)
        );
        assert_eq!(ledger.next_sequence(), 6);
        assert_eq!(
            ledger.summary(),
            Summary {
                received: 4,
                failovers: 1,
                longest_gap: Duration::from_millis(1200),
                missing: 2,
                duplicated: 1,
            }
        );
        assert!(ledger
            .summary()
            .to_string()
            .ends_with("longest gap=1200 ms, missing/duplicated=2/1"));
    }
}
