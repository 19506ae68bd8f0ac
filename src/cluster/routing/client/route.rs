//! One routed call's state across its attempts: what `failover::decide`
//! reads and what the next attempt needs, for calls and streams alike.

use std::borrow::Cow;
use std::time::Duration;

use tokio::time::Instant;

use super::replay::Requests;
use crate::cluster::routing::failover::{FailedAttempt, StopReason};
use crate::wire::CallKind;
use crate::{CallOptions, RpcError};

/// One routed call's progress across attempts: what `failover::decide`
/// reads, and what the next attempt needs. A stream owns its route
/// (`'static`) to open itself again later.
pub(super) struct Route<'a> {
    pub(super) method: Cow<'a, str>,
    pub(super) filter: Option<Cow<'a, str>>,
    pub(super) options: Cow<'a, CallOptions>,
    pub(super) kind: CallKind,
    /// Whether the call may run more than once (a resumable stream may,
    /// from its position).
    pub(super) idempotent: bool,
    /// When the call's timeout passes; for a stream without one, the
    /// bound on finding a worker that takes it.
    pub(super) deadline: Instant,
    /// The workers that failed since the call last started over.
    pub(super) failed: Vec<FailedAttempt>,
    /// A request stream, kept while it can be sent again.
    pub(super) requests: Option<Requests>,
    /// Whether the call was counted for the retry budget.
    pub(super) counted: bool,
    /// When the call began (for the time a failover took).
    pub(super) started: Instant,
}

impl<'a> Route<'a> {
    pub(super) fn new(
        method: &'a str,
        filter: Option<&'a str>,
        options: &'a CallOptions,
        kind: CallKind,
        default_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            method: Cow::Borrowed(method),
            filter: filter.map(Cow::Borrowed),
            idempotent: options.is_idempotent(),
            deadline: now + options.timeout().unwrap_or(default_timeout),
            options: Cow::Borrowed(options),
            kind,
            failed: Vec::new(),
            requests: None,
            counted: false,
            started: now,
        }
    }

    pub(super) fn into_owned(self) -> Route<'static> {
        Route {
            method: Cow::Owned(self.method.into_owned()),
            filter: self.filter.map(|f| Cow::Owned(f.into_owned())),
            options: Cow::Owned(self.options.into_owned()),
            kind: self.kind,
            idempotent: self.idempotent,
            deadline: self.deadline,
            failed: self.failed,
            requests: self.requests,
            counted: self.counted,
            started: self.started,
        }
    }

    /// A new round of attempts (a stream that delivered responses is
    /// opened again): nothing failed yet, and a stream without a timeout
    /// gets a fresh bound on finding a worker.
    pub(super) fn restart(&mut self, default_timeout: Duration) {
        self.failed.clear();
        self.rebound(default_timeout);
    }

    /// A stream without a timeout gets a fresh bound on finding a worker
    /// (its first response may come long after it opened).
    pub(super) fn rebound(&mut self, default_timeout: Duration) {
        if self.options.timeout().is_none() {
            self.deadline = Instant::now() + default_timeout;
        }
    }

    /// The round of attempts succeeded: later failures start a new one.
    pub(super) fn succeeded(&mut self) {
        self.failed.clear();
    }

    /// Whether the request can be sent again: a single message always,
    /// a request stream while every request taken is kept.
    pub(super) fn replayable(&self) -> bool {
        self.requests.as_ref().is_none_or(Requests::replayable)
    }

    /// Ends the round: the routing failure listing the workers tried.
    pub(super) fn stop(&mut self, stopped: StopReason) -> RpcError {
        RpcError::Failover {
            attempts: std::mem::take(&mut self.failed),
            stopped,
        }
    }
}
