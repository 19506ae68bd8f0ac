//! Every stop rule and every retry case of [`decide`], and the
//! classification table, without a network.

use std::cell::Cell;
use std::time::Duration;

use super::*;

fn conn() -> RpcError {
    RpcError::ConnectionError("lost".into())
}

fn refused() -> RpcError {
    RpcError::Unavailable("draining".into())
}

/// A unary call, not idempotent, after its first attempt, with time left.
fn unary(now: Instant) -> CallState {
    CallState {
        attempts: 1,
        max_attempts: 3,
        idempotent: false,
        replayable: true,
        deadline: now + Duration::from_secs(1),
    }
}

/// `decide` with a budget that grants; panics if the budget is asked
/// although the decision is to stop for another reason.
fn decide_granting(error: &RpcError, connected: bool, call: &CallState, now: Instant) -> Decision {
    let asked = Cell::new(false);
    let decision = decide(error, connected, call, now, || {
        asked.set(true);
        true
    });
    let retried = matches!(decision.next, Next::RetryElsewhere);
    assert_eq!(
        asked.get(),
        retried,
        "the budget is drawn exactly when the call retries: {decision:?}"
    );
    decision
}

#[test]
fn the_classification_table() {
    use Outcome::*;
    use Verdict::*;
    let io = || RpcError::IoError(std::io::Error::other("x"));
    let cases: Vec<(RpcError, bool, Verdict, Outcome)> = vec![
        (conn(), false, NeverRan, ConnectionFailed),
        (RpcError::Timeout, false, NeverRan, ConnectionFailed),
        (
            RpcError::TlsError("x".into()),
            false,
            NeverRan,
            ConnectionFailed,
        ),
        (refused(), false, NeverRan, ConnectionFailed),
        (
            RpcError::ConfigError("x".into()),
            false,
            Final,
            ConnectionFailed,
        ),
        (refused(), true, NeverRan, Refused),
        (conn(), true, MayHaveRun, ConnectionFailed),
        (io(), true, MayHaveRun, ConnectionFailed),
        (RpcError::Timeout, true, MayHaveRun, TimedOut),
        (
            RpcError::StreamError("reset".into()),
            true,
            MayHaveRun,
            Declined,
        ),
        (RpcError::RemoteError("boom".into()), true, Final, Declined),
        (RpcError::UnknownMethod("m".into()), true, Final, Declined),
        (
            RpcError::MessageTooLarge { size: 2, limit: 1 },
            true,
            Final,
            Declined,
        ),
        (RpcError::ProtocolError("x".into()), true, Final, Declined),
        (RpcError::Internal("panicked".into()), true, Final, Failed),
        (
            RpcError::ResourceExhausted("queue full".into()),
            true,
            NeverRan,
            Failed,
        ),
    ];
    for (error, connected, verdict, outcome) in cases {
        assert_eq!(
            classify(&error, connected),
            (verdict, outcome),
            "{error:?}, connected: {connected}"
        );
    }
}

#[test]
fn a_call_that_never_ran_is_retried_elsewhere_even_if_not_idempotent() {
    let now = Instant::now();
    let call = unary(now);
    let d = decide_granting(&conn(), false, &call, now);
    assert!(matches!(d.next, Next::RetryElsewhere), "{d:?}");
    assert_eq!(d.outcome, Outcome::ConnectionFailed);
    let d = decide_granting(&refused(), true, &call, now);
    assert!(matches!(d.next, Next::RetryElsewhere), "{d:?}");
    assert_eq!(d.outcome, Outcome::Refused);
}

#[test]
fn a_call_that_may_have_run_is_retried_only_if_idempotent() {
    let now = Instant::now();
    let call = unary(now);
    for error in [conn(), RpcError::Timeout, RpcError::StreamError("x".into())] {
        let d = decide_granting(&error, true, &call, now);
        assert!(
            matches!(d.next, Next::Stop(StopReason::MayHaveRun)),
            "{d:?}"
        );
        let idempotent = CallState {
            idempotent: true,
            ..call
        };
        let d = decide_granting(&error, true, &idempotent, now);
        assert!(matches!(d.next, Next::RetryElsewhere), "{d:?}");
    }
    let d = decide_granting(&RpcError::Timeout, true, &call, now);
    assert_eq!(d.outcome, Outcome::TimedOut);
}

#[test]
fn a_final_answer_is_returned_as_is_first_and_stops_later() {
    let now = Instant::now();
    let call = CallState {
        idempotent: true,
        ..unary(now)
    };
    let answer = RpcError::RemoteError("no".into());
    let d = decide_granting(&answer, true, &call, now);
    assert!(matches!(d.next, Next::Return), "{d:?}");
    assert_eq!(d.outcome, Outcome::Declined, "the request's fault");
    let second = CallState {
        attempts: 2,
        ..call
    };
    let d = decide_granting(&answer, true, &second, now);
    assert!(
        matches!(d.next, Next::Stop(StopReason::FinalAnswer)),
        "{d:?}"
    );
    // A local configuration error while connecting is final too.
    let d = decide_granting(&RpcError::ConfigError("ca".into()), false, &call, now);
    assert!(matches!(d.next, Next::Return), "{d:?}");
}

#[test]
fn a_request_that_cannot_be_sent_again_stays_once_connected() {
    let now = Instant::now();
    // A request stream past its replay buffer, or a stream that delivered.
    let stream = CallState {
        idempotent: true,
        replayable: false,
        ..unary(now)
    };
    let d = decide_granting(&conn(), false, &stream, now);
    assert!(matches!(d.next, Next::RetryElsewhere), "{d:?}");
    for error in [refused(), conn()] {
        let d = decide_granting(&error, true, &stream, now);
        assert!(
            matches!(d.next, Next::Stop(StopReason::StreamAlreadySent)),
            "{d:?}"
        );
    }
    // A stream whose request is kept moves on when refused, idempotent or not.
    let kept = CallState {
        replayable: true,
        ..unary(now)
    };
    let d = decide_granting(&refused(), true, &kept, now);
    assert!(matches!(d.next, Next::RetryElsewhere), "{d:?}");
}

#[test]
fn max_attempts_stops_after_that_many_workers() {
    let now = Instant::now();
    let call = CallState {
        attempts: 3,
        ..unary(now)
    };
    let d = decide_granting(&refused(), true, &call, now);
    assert!(
        matches!(d.next, Next::Stop(StopReason::MaxAttempts(3))),
        "{d:?}"
    );
    let one = CallState {
        attempts: 1,
        max_attempts: 1,
        ..call
    };
    let d = decide_granting(&conn(), false, &one, now);
    assert!(
        matches!(d.next, Next::Stop(StopReason::MaxAttempts(1))),
        "{d:?}"
    );
}

#[test]
fn a_passed_deadline_stops() {
    let now = Instant::now();
    let call = unary(now);
    let at = call.deadline;
    let d = decide_granting(&refused(), true, &call, at);
    assert!(
        matches!(d.next, Next::Stop(StopReason::DeadlinePassed)),
        "{d:?}"
    );
    let just_before = at - Duration::from_millis(1);
    let d = decide_granting(&refused(), true, &call, just_before);
    assert!(matches!(d.next, Next::RetryElsewhere), "{d:?}");
}

#[test]
fn an_exhausted_budget_stops_a_retry_that_every_other_rule_allows() {
    let now = Instant::now();
    let d = decide(&refused(), true, &unary(now), now, || false);
    assert!(
        matches!(d.next, Next::Stop(StopReason::RetryBudgetExhausted)),
        "{d:?}"
    );
    assert_eq!(
        d.outcome,
        Outcome::Refused,
        "recorded whatever the decision"
    );
}

#[test]
fn the_rules_apply_in_order() {
    let now = Instant::now();
    // Everything stops this call; the first rule names the reason.
    let late = CallState {
        attempts: 3,
        max_attempts: 3,
        idempotent: false,
        replayable: false,
        deadline: now,
    };
    let reason =
        |error: &RpcError, call: &CallState| match decide_granting(error, true, call, now).next {
            Next::Stop(reason) => reason.to_string(),
            other => panic!("{other:?}"),
        };
    let answer = RpcError::RemoteError("no".into());
    assert_eq!(reason(&answer, &late), "the worker's answer is final");
    assert_eq!(
        reason(&conn(), &late),
        "the call may have run and is not idempotent"
    );
    let late = CallState {
        idempotent: true,
        ..late
    };
    assert_eq!(
        reason(&conn(), &late),
        "a streaming call is not repeated once sent"
    );
    let late = CallState {
        replayable: true,
        ..late
    };
    assert_eq!(reason(&conn(), &late), "3 attempts made (max_attempts)");
    let late = CallState {
        max_attempts: 4,
        ..late
    };
    assert_eq!(reason(&conn(), &late), "the call's timeout passed");
}

#[test]
fn reasons_read_as_before_in_the_error_message() {
    let no_workers = RpcError::NoWorkers {
        filter: "role=worker".into(),
        members: 2,
        unavailable: 0,
        avoided: 2,
    };
    let text = no_workers.to_string();
    assert_eq!(
        StopReason::NoMoreWorkers(Box::new(no_workers)).to_string(),
        text
    );
    assert_eq!(
        StopReason::RetryBudgetExhausted.to_string(),
        "retry budget exhausted"
    );
    let failover = RpcError::Failover {
        attempts: vec![FailedAttempt {
            worker: NodeId::new("127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap(), 1),
            error: RpcError::Timeout,
        }],
        stopped: StopReason::MayHaveRun,
    };
    let text = failover.to_string();
    assert!(
        text.starts_with("call failed on 1 worker(s): ")
            && text.ends_with(
                "the call timed out; stopped: the call may have run and is not idempotent"
            ),
        "{text}"
    );
}
