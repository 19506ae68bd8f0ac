//! Passive outlier ejection (after Envoy's outlier detection): the client
//! takes a worker out of rotation on its own evidence, without waiting for
//! the membership's verdict. Sans-IO: the caller passes `now`.
//!
//! This file holds the policy, what a call's ending means for its worker
//! ([`Outcome`]), and one worker identity's record ([`Health`]); the
//! registry applies the record's judgements within the limits of the pool
//! (`select.rs`): the ejection limit, the comparison with the other
//! workers (`rate.rs`), the memory of each address (`memory.rs`).
//!
//! * **At once**: a connection failure, or the worker refusing the call
//!   (`Unavailable`).
//! * **In a row**: [`EjectionPolicy::consecutive_failures`] worker faults
//!   (panics and internal failures, `ResourceExhausted`, timeouts) with no
//!   answer in between (Envoy's `consecutive_5xx`).
//! * **By success rate**: a worker whose share of failed calls (any
//!   failure, handler errors included) is far above the other workers'
//!   (see `rate.rs`). A handler's `Err` alone is the request's fault: it
//!   never ejects in a row, and the same error from every worker ejects
//!   nobody.
//! * An ejection lasts `base_ejection × s`, `s` being the strikes (recent
//!   ejections and crashes) of the worker's address, at most
//!   `max_ejection`. When it ends one call is let through (the probe; the
//!   ejection is re-armed meanwhile, half-open): a good answer puts the
//!   worker back, anything else ejects it again, for longer.
//! * Outcomes of calls selected before an ejection (they were in flight
//!   when it began) change nothing: a stall that fails every call in
//!   flight ejects once, not once per call.
//! * **Weight** (before any judgement): a worker's weight halves with each
//!   failure in a row, of any kind, down to the minimum weight; one
//!   successful answer restores it. Calls that fail fast leave a worker
//!   idle, which least-connections would take for spare capacity: the
//!   weight keeps such a worker from being favoured while its success rate
//!   gathers the calls to be judged. Workers failing alike (an error every
//!   worker gives) keep equal weights, so nothing changes among them.

use std::time::Duration;

use tokio::time::Instant;

use super::rate::Window;

/// When a worker is taken out of rotation, for how long, how much of the
/// pool may be out, and how a new or restarted worker is brought in; set
/// on the registry that keeps each worker's record
/// ([`WorkerRegistry::with_ejection_policy`](super::WorkerRegistry::with_ejection_policy)),
/// for every client routing through it. Every field has a default (see
/// `Default`); the sources are Envoy's outlier detection and slow start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectionPolicy {
    /// Worker faults in a row that eject a worker: timeouts, panics and
    /// internal failures (`RpcError::Internal`), `RpcError::ResourceExhausted`
    /// (default 5, Envoy's `consecutive_5xx`; 0 counts as 1). Any answer
    /// in between, a handler error included, starts the count again.
    /// Connection failures and refusals (`Unavailable`) eject at once.
    pub consecutive_failures: u32,
    /// First ejection's length (default 1 s; Envoy's `base_ejection_time`
    /// defaults to 30 s, this library takes a worker back sooner, after one
    /// successful probe call).
    pub base_ejection: Duration,
    /// Longest ejection (default 30 s; Envoy's `max_ejection_time`
    /// defaults to 300 s).
    pub max_ejection: Duration,
    /// The most workers ejected at once, in percent of the pool (default
    /// 50; at least one worker may always be ejected). A worker judged an
    /// outlier beyond that stays in rotation at the minimum weight. When
    /// too few of the workers matching a call's filter are selectable
    /// (more than this share ejected or suspect, or none left), the call
    /// is routed among all of them, the ejected and suspect ones at the
    /// minimum weight (Envoy's panic mode, `healthy_panic_threshold` 50%),
    /// so ejection alone never fails a call with `NoWorkers`. Envoy's
    /// `max_ejection_percent` defaults to 10, made for large clusters; 100
    /// removes both limits.
    pub max_ejection_percent: u32,
    /// The period over which success rates are counted: a worker's rate is
    /// that of its calls in the current and the previous period (default
    /// 10 s, Envoy's `interval`).
    pub success_rate_interval: Duration,
    /// Calls a worker must have made in the success-rate window before its
    /// rate is judged, or taken as a comparison for another's (default 20;
    /// Envoy's `success_rate_request_volume` is 100 and
    /// `failure_percentage_request_volume` 50, per evaluation interval).
    /// A worker failing fast gets about this many calls before it is
    /// judged; with every worker failing 30% of its calls at random, one
    /// window in a thousand or fewer singles one out (`rate.rs`).
    pub success_rate_volume: u32,
    /// How far, in percentage points, a worker's failure rate must be above
    /// the typical other worker's (the lower median of the others' rates)
    /// for it to be ejected (default 50: a worker failing 60% of its calls
    /// while the others fail 10%). Envoy ejects below the mean success rate
    /// minus 1.9 standard deviations, which needs at least 5 hosts
    /// (`success_rate_minimum_hosts`); a margin over the others works from
    /// two workers up, and ejects nobody for an error every worker gives.
    /// 0 turns success-rate ejection off.
    pub success_rate_margin_percent: u32,
    /// How long a worker that joins (or comes back under a new generation)
    /// after the registry's first selection takes to reach its full weight
    /// (default 10 s; Envoy's `slow_start_window`, no default there). The
    /// weight grows linearly from `slow_start_min_weight_percent`; each
    /// strike of its address lengthens the window by as much again. The
    /// workers present at the first selection start at full weight. Zero
    /// turns slow start off.
    pub slow_start_window: Duration,
    /// The lowest weight, in percent of a full one, of a worker in slow
    /// start, held back beyond the ejection limit, or routed to in panic
    /// mode (default 10, Envoy's `min_weight_percent`). A worker of weight
    /// `w` takes part in a selection with probability `w` (relative to the
    /// heaviest candidate).
    pub slow_start_min_weight_percent: u32,
    /// How long an address's strikes are remembered (default 60 s): its
    /// ejections, and the lives that ended without leaving gracefully (a
    /// crash, a kill, a restart without drain). Each strike lengthens the
    /// next ejection and the slow start of a new life at that address,
    /// whatever its generation. Envoy lowers its ejection multiplier by one
    /// per `interval` spent in rotation; here each strike is forgotten on
    /// its own.
    pub crash_memory: Duration,
}

impl Default for EjectionPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
            success_rate_interval: Duration::from_secs(10),
            success_rate_volume: 20,
            success_rate_margin_percent: 50,
            slow_start_window: Duration::from_secs(10),
            slow_start_min_weight_percent: 10,
            crash_memory: Duration::from_secs(60),
        }
    }
}

impl EjectionPolicy {
    /// How long an ejection lasts for an address with `strikes` strikes,
    /// this one included.
    pub(crate) fn ejection_for(&self, strikes: u32) -> Duration {
        self.base_ejection
            .saturating_mul(strikes.max(1))
            .min(self.max_ejection)
    }

    /// The minimum weight, in (0, 1].
    pub(crate) fn min_weight(&self) -> f64 {
        f64::from(self.slow_start_min_weight_percent.clamp(1, 100)) / 100.0
    }

    /// How many of `n` workers may be ejected at once (at least one).
    pub(crate) fn ejectable(&self, n: usize) -> usize {
        (n * self.max_ejection_percent.min(100) as usize / 100).max(1)
    }

    /// Whether ejection is limited (and panic routing on).
    pub(crate) fn limited(&self) -> bool {
        self.max_ejection_percent < 100
    }
}

/// How a call to a worker ended, as far as the worker's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The worker answered with a result.
    Answered,
    /// The worker answered with an error that is the request's by default:
    /// a handler's `Err`, an unknown method, a message too large, a reset
    /// stream. Counts only toward the success rate.
    Declined,
    /// The worker failed the call itself: it panicked or failed internally,
    /// or lacked the resources (`ResourceExhausted`). Counts in a row and
    /// toward the success rate.
    Failed,
    /// No answer in time: counts in a row and toward the success rate.
    TimedOut,
    /// The worker refused the call (shutting down, over a limit): eject at once.
    Refused,
    /// No connection, or the connection was lost: eject at once.
    ConnectionFailed,
}

impl Outcome {
    fn is_success(self) -> bool {
        self == Outcome::Answered
    }
}

/// Why a worker was ejected: what its probe must show to put it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A fault (connection, refusal, faults in a row): any answer that is
    /// not a fault puts it back.
    Fault,
    /// Its success rate: only a successful answer puts it back.
    SuccessRate,
}

/// How a call came to a worker, kept by the selected `Worker` until its
/// outcome is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The worker's ejection count when it was selected: an outcome from
    /// before the latest ejection is stale.
    epoch: u32,
    kind: Pick,
}

impl Ticket {
    /// The ticket of a call selected in rotation from a worker in plain
    /// health at `epoch` ([`Health::plain_epoch`]).
    pub(crate) fn normal(epoch: u32) -> Self {
        Self {
            epoch,
            kind: Pick::Normal,
        }
    }
}

/// What a selection was for the worker's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    /// In rotation.
    Normal,
    /// The first call after an ejection ended.
    Probe,
    /// While ejected, in panic mode.
    Panic,
}

/// What the registry does after an outcome was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Nothing changes.
    Keep,
    /// The worker is back in rotation.
    Restored,
    /// Eject it, within the pool's limit.
    Eject(Reason),
    /// Its failures are numerous enough to compare with the other workers'.
    CompareRate,
}

#[derive(Debug, Clone, Copy)]
struct Ejection {
    until: Instant,
    reason: Reason,
}

/// One worker identity's record.
#[derive(Debug, Default, Clone)]
pub(crate) struct Health {
    /// Worker faults in a row.
    consecutive: u32,
    /// Failures of any kind in a row.
    streak: u32,
    window: Window,
    ejection: Option<Ejection>,
    /// Judged an outlier when the ejection limit was reached: selectable,
    /// at the minimum weight, until then.
    held: Option<Instant>,
    epoch: u32,
    /// Whether this life has already cost its address a strike.
    struck: bool,
}

impl Health {
    /// Whether the worker is out of rotation at `now`.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.ejection.is_some_and(|e| now < e.until)
    }

    /// Whether the worker is held at the minimum weight at `now`.
    pub(crate) fn is_held(&self, now: Instant) -> bool {
        self.held.is_some_and(|until| now < until)
    }

    /// Its weight at `now`: halved by each failure in a row, the minimum
    /// while held back, never below the minimum `min`.
    pub(crate) fn weight(&self, now: Instant, min: f64) -> f64 {
        if self.is_held(now) {
            return min;
        }
        0.5f64.powi(self.streak.min(64) as i32).max(min)
    }

    /// Whether this life has already cost its address a strike.
    pub(crate) fn struck(&self) -> bool {
        self.struck
    }

    /// Calls and failures in the success-rate window at `now`.
    pub(crate) fn rate(&self, now: Instant, policy: &EjectionPolicy) -> (u32, u32) {
        self.window.totals(now, policy.success_rate_interval)
    }

    /// The epoch of a worker in plain health: no ejection on record, not
    /// held back, no failure in a row, so that a selection needs nothing
    /// else from its record (see [`WorkerCell::plain`](super::load::WorkerCell::plain)).
    /// `None` otherwise.
    pub(crate) fn plain_epoch(&self) -> Option<u32> {
        (self.ejection.is_none() && self.held.is_none() && self.streak == 0).then_some(self.epoch)
    }

    /// Whether an outcome with `ticket` is still current: no ejection
    /// since the call was selected.
    pub(crate) fn is_current(&self, ticket: Ticket) -> bool {
        ticket.epoch == self.epoch
    }

    /// The ticket of a call selected now, when the worker has no ejection
    /// on record (the common case: no probe to arm, nothing to change);
    /// `None` when [`on_selected`](Self::on_selected) must decide.
    pub(crate) fn plain_ticket(&self) -> Option<Ticket> {
        self.ejection
            .is_none()
            .then_some(Ticket::normal(self.epoch))
    }

    /// The worker was chosen for a call at `now`. After an ended ejection
    /// this call is the probe: the ejection is re-armed for
    /// `base_ejection` so that other calls keep away meanwhile.
    pub(crate) fn on_selected(&mut self, now: Instant, policy: &EjectionPolicy) -> Ticket {
        let kind = match &mut self.ejection {
            Some(e) if now < e.until => Pick::Panic,
            Some(e) => {
                e.until = now + policy.base_ejection;
                Pick::Probe
            }
            None => Pick::Normal,
        };
        Ticket {
            epoch: self.epoch,
            kind,
        }
    }

    /// Records how the call with `ticket` ended; says what the registry
    /// must do about it.
    pub(crate) fn record(
        &mut self,
        ticket: Ticket,
        outcome: Outcome,
        now: Instant,
        policy: &EjectionPolicy,
    ) -> Judgement {
        // A hold that ended is dropped, so the record can be plain again.
        if self.held.is_some_and(|until| now >= until) {
            self.held = None;
        }
        if !self.is_current(ticket) {
            return Judgement::Keep;
        }
        match (ticket.kind, self.ejection) {
            (Pick::Panic, Some(_)) if outcome.is_success() => return self.restore(),
            (Pick::Panic, _) => return Judgement::Keep,
            (Pick::Probe, Some(e)) => {
                let passed = match e.reason {
                    Reason::Fault => matches!(outcome, Outcome::Answered | Outcome::Declined),
                    Reason::SuccessRate => outcome.is_success(),
                };
                return if passed {
                    self.restore()
                } else {
                    self.streak = self.streak.saturating_add(1);
                    Judgement::Eject(e.reason)
                };
            }
            _ => {}
        }
        let interval = policy.success_rate_interval;
        self.window.add(now, interval, !outcome.is_success());
        self.streak = if outcome.is_success() {
            0
        } else {
            self.streak.saturating_add(1)
        };
        match outcome {
            Outcome::ConnectionFailed | Outcome::Refused => Judgement::Eject(Reason::Fault),
            Outcome::Answered => {
                self.consecutive = 0;
                Judgement::Keep
            }
            Outcome::Declined => {
                self.consecutive = 0;
                self.rate_judgement(now, policy)
            }
            Outcome::Failed | Outcome::TimedOut => {
                self.consecutive += 1;
                if self.consecutive >= policy.consecutive_failures.max(1) {
                    Judgement::Eject(Reason::Fault)
                } else {
                    self.rate_judgement(now, policy)
                }
            }
        }
    }

    /// [`Judgement::CompareRate`] when this worker alone could be an
    /// outlier: enough calls, and enough of them failed.
    fn rate_judgement(&self, now: Instant, policy: &EjectionPolicy) -> Judgement {
        let (calls, failures) = self.rate(now, policy);
        let margin = policy.success_rate_margin_percent;
        let enough = margin > 0
            && calls >= policy.success_rate_volume.max(1)
            && u64::from(failures) * 100 >= u64::from(calls) * u64::from(margin.min(100));
        if enough {
            Judgement::CompareRate
        } else {
            Judgement::Keep
        }
    }

    fn restore(&mut self) -> Judgement {
        self.ejection = None;
        self.consecutive = 0;
        self.streak = 0;
        self.window = Window::default();
        Judgement::Restored
    }

    /// Ejects the worker at `now` for `period`: outcomes of calls already
    /// in flight become stale, and its counts start again.
    pub(crate) fn eject(&mut self, now: Instant, period: Duration, reason: Reason) {
        self.ejection = Some(Ejection {
            until: now + period,
            reason,
        });
        self.epoch = self.epoch.wrapping_add(1);
        self.consecutive = 0;
        self.window = Window::default();
        self.held = None;
        self.struck = true;
    }

    /// Holds the worker at the minimum weight for `period` instead of
    /// ejecting it (the ejection limit is reached); its counts start again.
    pub(crate) fn hold(&mut self, now: Instant, period: Duration) {
        self.held = Some(now + period);
        self.consecutive = 0;
        self.window = Window::default();
    }
}

#[cfg(test)]
mod tests;
