//! What happens after a failed attempt: the one failover decision of a
//! [`ClusterClient`](super::ClusterClient) call, and the one classification
//! of an [`RpcError`] it rests on. Sans-IO and pure: the caller passes the
//! attempt's error, whether a connection existed, the call's state, `now`,
//! and the retry budget's answer.
//!
//! [`classify`] reads an error once, for both uses:
//!
//! | failure | verdict | recorded for ejection |
//! |---|---|---|
//! | connecting failed (refused, handshake timeout, TLS) | never ran | connection failed (ejects at once) |
//! | connecting failed on the local configuration (`ConfigError`) | final | connection failed |
//! | `Unavailable` (the worker refused: draining, shutting down, over a limit) | never ran | refused (ejects at once) |
//! | `ResourceExhausted` (a handler had not the resources, and did nothing) | never ran | failed (the worker's fault) |
//! | connection lost, IO error after connecting | may have run | connection failed (ejects at once) |
//! | timeout after connecting | may have run | timed out (the worker's fault) |
//! | stream reset | may have run | declined (the request's) |
//! | `Internal`: the handler panicked, the server failed | final | failed (the worker's fault) |
//! | anything else: handler error, unknown method, message too large, ... | final | declined (the request's) |
//!
//! The worker's faults count toward ejection in a row; the request's
//! count only toward the success rate, which compares each worker with
//! the others, so an error every worker gives ejects none (see `eject`).
//! A handler says "the fault is mine" by answering
//! `Err(RpcError::ResourceExhausted(..))` (before doing anything); a
//! handler's other errors are the request's. `Err(Unavailable)` from a
//! handler stays a handler error: it is what a handler relaying another
//! server's refusal with `?` returns, perhaps after its own effects, and
//! taking it as "never ran" would run such a call twice.
//!
//! [`decide`] then applies the stop rules in this order; the first that
//! holds ends the call ([`StopReason`]), and a call none of them stops is
//! retried on another worker:
//!
//! 1. Final: the worker's own answer, returned as it is on the first
//!    attempt, [`StopReason::FinalAnswer`] after others failed.
//! 2. May have run and not idempotent: [`StopReason::MayHaveRun`].
//! 3. A request that cannot be sent again reached a connection (a request
//!    stream gone past the replay buffer, a stream committed to its worker
//!    by its first response): [`StopReason::StreamAlreadySent`]. A single
//!    message, and a request stream still kept whole, can be sent again:
//!    so a stream a worker refused before running it moves on.
//! 4. `max_attempts` workers tried: [`StopReason::MaxAttempts`].
//! 5. The call's deadline passed: [`StopReason::DeadlinePassed`].
//! 6. The retry budget refuses: [`StopReason::RetryBudgetExhausted`] (asked
//!    last, so only a retry that would happen draws on it).
//!
//! Before each attempt the caller stops with [`StopReason::NoMoreWorkers`]
//! when no untried worker is selectable, and with
//! [`StopReason::DeadlinePassed`] when the deadline passed meanwhile.
//!
//! Sources: rules 1–3 are gRPC's retry design (gRFC A6): a call that never
//! left the client or that the server refused is retried transparently,
//! whatever the call; one that may have run only if the method is declared
//! retryable (here [`CallOptions::idempotent`](crate::CallOptions::idempotent)),
//! and a retry never replays a stream already consumed. Rule 4 is A6's
//! `maxAttempts`; rule 6 is Finagle's `RetryBudget` (see `budget`), which
//! plays the part of A6's retry throttling across calls. The ejection
//! outcomes feed Envoy-style outlier detection (see `eject`).

use std::fmt;

use tokio::time::Instant;

use super::eject::Outcome;
use crate::cluster::NodeId;
use crate::RpcError;

/// Why a [`ClusterClient`](super::ClusterClient) call stopped trying
/// workers: the `stopped` field of [`RpcError::Failover`]. Its `Display`
/// is the reason as the error's message gives it.
#[derive(Debug)]
#[non_exhaustive]
pub enum StopReason {
    /// The last worker answered (handler error, unknown method, message
    /// too large, ...) after earlier workers failed: another worker would
    /// answer the same. "the worker's answer is final"
    FinalAnswer,
    /// The last worker may have run the call (connection lost, stream
    /// reset, timed out after the request was sent) and the call is not
    /// declared idempotent. "the call may have run and is not idempotent"
    MayHaveRun,
    /// A streaming call reached a worker and its request can no longer be
    /// sent again (the request stream went past the replay buffer, or the
    /// stream delivered a response). "a streaming call is not repeated once sent"
    StreamAlreadySent,
    /// This many workers were tried, the most
    /// [`with_max_attempts`](super::ClusterClientConfig::with_max_attempts)
    /// allows. "`n` attempts made (max_attempts)"
    MaxAttempts(usize),
    /// The call's timeout (retries included) passed. "the call's timeout passed"
    DeadlinePassed,
    /// The retry budget across calls is spent (see
    /// [`RetryBudgetConfig`](super::RetryBudgetConfig)). "retry budget exhausted"
    RetryBudgetExhausted,
    /// No worker not yet tried is selectable: the selection's error,
    /// [`RpcError::NoWorkers`], whose message this is.
    NoMoreWorkers(Box<RpcError>),
}

impl StopReason {
    /// A short name for metrics (`reason` label).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            StopReason::FinalAnswer => "final_answer",
            StopReason::MayHaveRun => "may_have_run",
            StopReason::StreamAlreadySent => "stream_already_sent",
            StopReason::MaxAttempts(_) => "max_attempts",
            StopReason::DeadlinePassed => "deadline_passed",
            StopReason::RetryBudgetExhausted => "retry_budget_exhausted",
            StopReason::NoMoreWorkers(_) => "no_more_workers",
            #[allow(unreachable_patterns)]
            _ => "other",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FinalAnswer => f.write_str("the worker's answer is final"),
            Self::MayHaveRun => f.write_str("the call may have run and is not idempotent"),
            Self::StreamAlreadySent => f.write_str("a streaming call is not repeated once sent"),
            Self::MaxAttempts(n) => write!(f, "{n} attempts made (max_attempts)"),
            Self::DeadlinePassed => f.write_str("the call's timeout passed"),
            Self::RetryBudgetExhausted => f.write_str("retry budget exhausted"),
            Self::NoMoreWorkers(error) => error.fmt(f),
        }
    }
}

/// One worker that failed a call, and how.
#[derive(Debug)]
pub struct FailedAttempt {
    /// The worker.
    pub worker: NodeId,
    /// What went wrong there.
    pub error: RpcError,
}

impl fmt::Display for FailedAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.worker, self.error)
    }
}

/// `a; b; c` for [`RpcError::Failover`]'s message.
pub(crate) fn format_attempts(attempts: &[FailedAttempt]) -> String {
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a failed attempt means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The worker never ran the call: any call may go elsewhere.
    NeverRan,
    /// It may have run: only an idempotent call may go elsewhere.
    MayHaveRun,
    /// Another worker would fail the same way: give up.
    Final,
}

/// The one classification of an attempt's error: what it means for the
/// call and for the worker's health (see the module's table). `connected`
/// is false when the failure happened while connecting (nothing was sent).
pub(crate) fn classify(error: &RpcError, connected: bool) -> (Verdict, Outcome) {
    if !connected {
        let verdict = match error {
            RpcError::ConfigError(_) => Verdict::Final,
            _ => Verdict::NeverRan,
        };
        return (verdict, Outcome::ConnectionFailed);
    }
    match error {
        RpcError::Unavailable(_) => (Verdict::NeverRan, Outcome::Refused),
        RpcError::ResourceExhausted(_) => (Verdict::NeverRan, Outcome::Failed),
        RpcError::ConnectionError(_) | RpcError::IoError(_) => {
            (Verdict::MayHaveRun, Outcome::ConnectionFailed)
        }
        RpcError::Timeout => (Verdict::MayHaveRun, Outcome::TimedOut),
        RpcError::StreamError(_) => (Verdict::MayHaveRun, Outcome::Declined),
        RpcError::Internal(_) => (Verdict::Final, Outcome::Failed),
        _ => (Verdict::Final, Outcome::Declined),
    }
}

/// A call's state after one of its attempts failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallState {
    /// Attempts made, the failed one included (at least 1).
    pub(crate) attempts: usize,
    /// Attempts allowed (at least 1).
    pub(crate) max_attempts: usize,
    /// Whether the call may run more than once.
    pub(crate) idempotent: bool,
    /// Whether the request can be sent again once a connection took it:
    /// a unary or server-streaming call's one message (a stream until its
    /// first response, a resumable one with its resume request), a request
    /// stream while every request taken is kept (`with_replay_limit`).
    pub(crate) replayable: bool,
    /// When the call's timeout passes.
    pub(crate) deadline: Instant,
}

/// What the caller does after a failed attempt.
#[derive(Debug)]
pub(crate) enum Next {
    /// Try another worker; one retry was drawn from the budget.
    RetryElsewhere,
    /// Return the attempt's error as it is: the first worker's own answer.
    Return,
    /// Stop with [`RpcError::Failover`] for this reason.
    Stop(StopReason),
}

/// The decision after a failed attempt.
#[derive(Debug)]
pub(crate) struct Decision {
    /// What the call does next.
    pub(crate) next: Next,
    /// What to record for the worker's ejection.
    pub(crate) outcome: Outcome,
}

/// Decides what follows an attempt that failed with `error` (`connected`:
/// whether a connection existed), for a call in state `call` at `now`.
/// `retry_budget` is asked only when every other rule allows a retry, and
/// answers whether the budget grants one (drawing it).
pub(crate) fn decide(
    error: &RpcError,
    connected: bool,
    call: &CallState,
    now: Instant,
    retry_budget: impl FnOnce() -> bool,
) -> Decision {
    let (verdict, outcome) = classify(error, connected);
    let stop = match verdict {
        Verdict::Final if call.attempts <= 1 => {
            return Decision {
                next: Next::Return,
                outcome,
            }
        }
        Verdict::Final => Some(StopReason::FinalAnswer),
        Verdict::MayHaveRun if !call.idempotent => Some(StopReason::MayHaveRun),
        _ if connected && !call.replayable => Some(StopReason::StreamAlreadySent),
        _ if call.attempts >= call.max_attempts => Some(StopReason::MaxAttempts(call.attempts)),
        _ if call.deadline <= now => Some(StopReason::DeadlinePassed),
        _ if !retry_budget() => Some(StopReason::RetryBudgetExhausted),
        _ => None,
    };
    Decision {
        next: stop.map_or(Next::RetryElsewhere, Next::Stop),
        outcome,
    }
}

#[cfg(test)]
mod tests;
