//! One worker's record, without a pool: what each outcome asks for, the
//! probe, stale outcomes, panic selections. The pool's side (the limit,
//! the comparison, strikes) is tested in `rate`, `memory` and the routing
//! integration tests.

use super::*;

const S: Duration = Duration::from_secs(1);

/// Selects the worker and records `outcome`; applies an ejection the way
/// the registry does when the limit allows it, for `strikes`.
fn call(h: &mut Health, outcome: Outcome, now: Instant, p: &EjectionPolicy) -> Judgement {
    let ticket = h.on_selected(now, p);
    let judgement = h.record(ticket, outcome, now, p);
    if let Judgement::Eject(reason) = judgement {
        h.eject(now, p.ejection_for(1), reason);
    }
    judgement
}

#[test]
fn a_connection_failure_or_a_refusal_ejects_at_once_and_a_probe_restores() {
    let p = EjectionPolicy::default();
    let t0 = Instant::now();
    for outcome in [Outcome::ConnectionFailed, Outcome::Refused] {
        let mut h = Health::default();
        assert_eq!(
            call(&mut h, outcome, t0, &p),
            Judgement::Eject(Reason::Fault)
        );
        assert!(h.is_ejected(t0) && h.is_ejected(t0 + S / 2));
        assert!(
            !h.is_ejected(t0 + S),
            "the ejection ends after base_ejection"
        );
        let probe = h.on_selected(t0 + S, &p);
        assert!(h.is_ejected(t0 + S), "re-armed while the probe runs");
        // A handler error is an answer: the worker is reachable again.
        assert_eq!(
            h.record(probe, Outcome::Declined, t0 + S, &p),
            Judgement::Restored
        );
        assert!(!h.is_ejected(t0 + S));
    }
}

#[test]
fn worker_faults_eject_in_a_row_and_any_answer_starts_the_count_again() {
    let p = EjectionPolicy::default();
    let t = Instant::now();
    for fault in [Outcome::Failed, Outcome::TimedOut] {
        let mut h = Health::default();
        for _ in 0..4 {
            assert_eq!(call(&mut h, fault, t, &p), Judgement::Keep);
        }
        call(&mut h, Outcome::Declined, t, &p);
        for _ in 0..4 {
            assert_eq!(call(&mut h, fault, t, &p), Judgement::Keep);
        }
        assert!(!h.is_ejected(t));
        assert_eq!(call(&mut h, fault, t, &p), Judgement::Eject(Reason::Fault));
        assert!(h.is_ejected(t));
    }
}

#[test]
fn handler_errors_never_eject_in_a_row_but_ask_for_a_comparison_once_numerous() {
    let p = EjectionPolicy::default();
    let t = Instant::now();
    let mut h = Health::default();
    for _ in 0..19 {
        assert_eq!(call(&mut h, Outcome::Declined, t, &p), Judgement::Keep);
    }
    assert_eq!(
        call(&mut h, Outcome::Declined, t, &p),
        Judgement::CompareRate,
        "20 calls, all failed"
    );
    // Mostly answered: no comparison asked for.
    let mut h = Health::default();
    for i in 0..100 {
        let outcome = if i % 4 == 0 {
            Outcome::Declined
        } else {
            Outcome::Answered
        };
        assert_ne!(call(&mut h, outcome, t, &p), Judgement::CompareRate);
    }
}

#[test]
fn outcomes_of_calls_in_flight_when_the_worker_was_ejected_change_nothing() {
    let p = EjectionPolicy::default();
    let t0 = Instant::now();
    let mut h = Health::default();
    // Eight calls in flight when the connection dies.
    let tickets: Vec<Ticket> = (0..8).map(|_| h.on_selected(t0, &p)).collect();
    let first = h.record(tickets[0], Outcome::ConnectionFailed, t0, &p);
    assert_eq!(first, Judgement::Eject(Reason::Fault));
    h.eject(t0, p.ejection_for(1), Reason::Fault);
    for &ticket in &tickets[1..] {
        assert_eq!(
            h.record(ticket, Outcome::ConnectionFailed, t0, &p),
            Judgement::Keep,
            "stale"
        );
    }
    assert!(!h.is_ejected(t0 + S), "one ejection, of the base length");
}

#[test]
fn a_failed_probe_ejects_again_and_a_success_rate_probe_needs_a_success() {
    let p = EjectionPolicy::default();
    let t0 = Instant::now();
    let mut h = Health::default();
    h.eject(t0, S, Reason::SuccessRate);
    let probe = h.on_selected(t0 + S, &p);
    assert_eq!(
        h.record(probe, Outcome::Declined, t0 + S, &p),
        Judgement::Eject(Reason::SuccessRate),
        "still failing: out again"
    );
    h.eject(t0 + S, 2 * S, Reason::SuccessRate);
    let probe = h.on_selected(t0 + 3 * S, &p);
    assert_eq!(
        h.record(probe, Outcome::Answered, t0 + 3 * S, &p),
        Judgement::Restored
    );
    let mut h = Health::default();
    h.eject(t0, S, Reason::Fault);
    let probe = h.on_selected(t0 + S, &p);
    assert_eq!(
        h.record(probe, Outcome::TimedOut, t0 + S, &p),
        Judgement::Eject(Reason::Fault)
    );
}

#[test]
fn a_call_routed_to_an_ejected_worker_in_panic_mode_restores_it_only_on_success() {
    let p = EjectionPolicy::default();
    let t0 = Instant::now();
    let mut h = Health::default();
    h.eject(t0, 30 * S, Reason::Fault);
    let panic = h.on_selected(t0 + S, &p);
    assert_eq!(
        h.record(panic, Outcome::ConnectionFailed, t0 + S, &p),
        Judgement::Keep,
        "no longer ejection for a call it was not meant to get"
    );
    let panic = h.on_selected(t0 + S, &p);
    assert_eq!(
        h.record(panic, Outcome::Answered, t0 + S, &p),
        Judgement::Restored
    );
    assert!(!h.is_ejected(t0 + S));
}

#[test]
fn ejections_last_base_times_strikes_up_to_the_cap() {
    let p = EjectionPolicy {
        max_ejection: 3 * S,
        ..EjectionPolicy::default()
    };
    let lengths: Vec<Duration> = (1..=5).map(|s| p.ejection_for(s)).collect();
    assert_eq!(lengths, vec![S, 2 * S, 3 * S, 3 * S, 3 * S]);
    assert_eq!(p.ejection_for(0), S);
}

#[test]
fn the_limit_allows_at_least_one_and_the_share_beyond() {
    let p = EjectionPolicy::default();
    let allowed: Vec<usize> = [1, 2, 3, 4, 10].iter().map(|&n| p.ejectable(n)).collect();
    assert_eq!(allowed, vec![1, 1, 1, 2, 5]);
    assert!(p.limited());
    let all = EjectionPolicy {
        max_ejection_percent: 100,
        ..p
    };
    assert!(!all.limited());
    assert_eq!(all.ejectable(3), 3);
}

#[test]
fn a_held_worker_is_selectable_and_starts_its_counts_again() {
    let p = EjectionPolicy::default();
    let t0 = Instant::now();
    let mut h = Health::default();
    for _ in 0..20 {
        call(&mut h, Outcome::Declined, t0, &p);
    }
    h.hold(t0, S);
    assert!(h.is_held(t0) && !h.is_ejected(t0) && !h.is_held(t0 + S));
    assert_eq!(h.rate(t0, &p), (0, 0));
}

#[test]
fn the_weight_halves_with_each_failure_in_a_row_and_one_answer_restores_it() {
    let p = EjectionPolicy::default();
    let t = Instant::now();
    let mut h = Health::default();
    let mut weights = vec![h.weight(t, 0.1)];
    for _ in 0..4 {
        call(&mut h, Outcome::Declined, t, &p);
        weights.push(h.weight(t, 0.1));
    }
    assert_eq!(weights, vec![1.0, 0.5, 0.25, 0.125, 0.1]);
    call(&mut h, Outcome::Answered, t, &p);
    assert_eq!(h.weight(t, 0.1), 1.0);
    h.hold(t, S);
    assert_eq!(h.weight(t, 0.1), 0.1, "held back");
}
