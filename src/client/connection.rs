//! One QUIC connection of a client, the task that serves it, and the
//! client's link to its server: the current connection or the state of
//! reconnecting.
//!
//! A connection is kept alive while calls are in flight on it ([`Busy`]
//! guards count them), so a call ends at its own deadline and never at the
//! transport's idle timer; with nothing in flight it may close at its idle
//! timeout. The connection task notices a closed connection (reset, idle
//! timeout, server gone) and the [`Link`] replaces it on the next call,
//! with [`reconnect_delay`] between failed attempts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::BytesMut;
use futures::channel::mpsc;
use futures::StreamExt;
use s2n_quic::connection::{Handle, StreamAcceptor};
use s2n_quic::stream::BidirectionalStream;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::endpoint::Endpoint;
use crate::keepalive::CallKeepAlive;
use crate::wire::{reset, Frame};
use crate::RpcError;

/// Cancels queued before the connection task sends them.
const CANCEL_QUEUE: usize = 1024;

/// An open (or lately open) QUIC connection. Dropping the last reference
/// (the client's, and those of its calls in flight) closes it at once, so
/// the server frees its slot without waiting for the idle timeout.
pub(crate) struct Conn {
    handle: Handle,
    /// Stream ids of dropped unary calls, for the connection task.
    /// `futures`' channel: it allocates a node per id queued, where
    /// tokio's allocates room for 32 ids with the channel, memory every
    /// idle connection would hold for cancels that are rare. Its sender
    /// sends through `&mut`, hence the lock (taken once per cancel).
    control: std::sync::Mutex<mpsc::Sender<u64>>,
    activity: Arc<Activity>,
    /// The waker every stream open registers with s2n-quic (see `open`).
    doorbell: Waker,
    rung: Arc<Doorbell>,
    _endpoint: Arc<Endpoint>,
}

/// Rings every caller waiting to open a stream on a connection.
#[derive(Default)]
struct Doorbell(Notify);

impl Wake for Doorbell {
    fn wake(self: Arc<Self>) {
        self.0.notify_waiters();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify_waiters();
    }
}

impl Conn {
    /// Wraps a fresh connection and starts its task. `idle_timeout` is the
    /// configured one; `keep_alive_always` whether the user asked for
    /// keep-alive on idle connections too.
    pub(crate) fn start(
        connection: s2n_quic::Connection,
        endpoint: Arc<Endpoint>,
        idle_timeout: Duration,
        keep_alive_always: bool,
    ) -> Result<Arc<Self>, RpcError> {
        let (mut handle, acceptor) = connection.split();
        if keep_alive_always {
            handle.keep_alive(true)?;
        }
        let activity = Arc::new(Activity {
            keep_alive: CallKeepAlive::new(handle.clone(), keep_alive_always),
            closed: AtomicBool::new(false),
        });
        // The one sender has a slot of its own on top of the buffer.
        let (control, cancels) = mpsc::channel(CANCEL_QUEUE - 1);
        // Keep-alive that calls turned on is turned off again by the task
        // at most a quarter of the idle timeout after the last call ended.
        let sweep =
            (!keep_alive_always && idle_timeout > Duration::ZERO).then_some(idle_timeout / 4);
        tokio::spawn(run(
            handle.clone(),
            acceptor,
            cancels,
            activity.clone(),
            sweep,
        ));
        let rung = Arc::new(Doorbell::default());
        Ok(Arc::new(Self {
            handle,
            control: std::sync::Mutex::new(control),
            activity,
            doorbell: Waker::from(rung.clone()),
            rung,
            _endpoint: endpoint,
        }))
    }

    /// Opens a call stream, waiting for a slot if the server's limit is
    /// reached. Cancel-safe: dropping the future leaves nothing behind
    /// that could delay other callers.
    ///
    /// s2n-quic (0.91) keeps the waker of every open that had to wait in a
    /// list and, when slots free up, wakes as many of the *first* entries
    /// as there are free slots; an open that was abandoned (its call timed
    /// out or was dropped) stays in that list, so its entry takes the
    /// wake-up and a live caller behind it sleeps past a free slot, for
    /// good once enough entries are stale. Here every open registers the
    /// same waker, the connection's doorbell, which wakes all callers
    /// waiting on this connection (a `Notify`, whose waiters are removed
    /// when dropped): whichever entry s2n-quic wakes, the live callers
    /// poll again and the free slot is taken.
    pub(crate) async fn open(&self) -> Result<BidirectionalStream, RpcError> {
        let mut handle = self.handle.clone();
        let poll_open = |handle: &mut Handle| {
            handle.poll_open_bidirectional_stream(&mut Context::from_waker(&self.doorbell))
        };
        loop {
            if let Poll::Ready(opened) = poll_open(&mut handle) {
                return Ok(opened?);
            }
            // Listen before polling again, so a ring in between is not lost.
            let rung = self.rung.0.notified();
            let mut rung = std::pin::pin!(rung);
            rung.as_mut().enable();
            if let Poll::Ready(opened) = poll_open(&mut handle) {
                return Ok(opened?);
            }
            rung.await;
        }
    }

    /// Whether the connection task has not seen the connection close.
    pub(crate) fn is_open(&self) -> bool {
        !self.activity.closed.load(Ordering::Acquire)
    }

    /// Records that the connection is unusable (opening a stream failed).
    pub(crate) fn mark_closed(&self) {
        self.activity.closed.store(true, Ordering::Release);
    }

    /// Counts a call in flight until the guard is dropped; keeps the
    /// connection alive meanwhile.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.activity.keep_alive.begin();
        Busy { conn: self.clone() }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.handle.close(reset::NO_ERROR.into());
    }
}

/// A call in flight on a connection (and a reference keeping it open).
pub(crate) struct Busy {
    conn: Arc<Conn>,
}

impl Busy {
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Asks the server to stop the unary call on `stream_id` (its request
    /// side is already finished, so the call stream cannot say it).
    pub(crate) fn cancel(&self, stream_id: u64) {
        // A full queue means the connection is not draining its control
        // stream; the server's deadline still ends the handler.
        let _ = crate::sync::lock(&self.conn.control).try_send(stream_id);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn.activity.keep_alive.end();
    }
}

/// Calls in flight and the keep-alive they hold on; whether the
/// connection closed.
struct Activity {
    keep_alive: CallKeepAlive,
    closed: AtomicBool,
}

/// Serves one connection: sends `CANCEL` frames for dropped unary calls on
/// the connection's one unidirectional control stream (opened on first
/// use), switches call-held keep-alive off when idle, and records when the
/// connection closes. Ends when the connection closes or the [`Conn`] is
/// dropped (the queue closes).
async fn run(
    mut handle: Handle,
    mut acceptor: StreamAcceptor,
    mut cancels: mpsc::Receiver<u64>,
    activity: Arc<Activity>,
    sweep: Option<Duration>,
) {
    let mut stream: Option<s2n_quic::stream::SendStream> = None;
    let mut buf = BytesMut::new();
    let mut sweeps = sweep.map(|period| tokio::time::interval_at(Instant::now() + period, period));
    loop {
        tokio::select! {
            id = cancels.next() => {
                let Some(id) = id else { break };
                Frame::Cancel(id).encode(&mut buf);
                while let Ok(id) = cancels.try_recv() {
                    Frame::Cancel(id).encode(&mut buf);
                }
                let tx = match &mut stream {
                    Some(tx) => tx,
                    None => match handle.open_send_stream().await {
                        Ok(tx) => stream.insert(tx),
                        Err(_) => break,
                    },
                };
                if tx.send(buf.split().freeze()).await.is_err() {
                    break;
                }
            }
            // The server opens no streams; this resolves when the
            // connection closes.
            accepted = acceptor.accept() => match accepted {
                Ok(Some(_unexpected)) => {}
                Ok(None) | Err(_) => break,
            },
            _ = tick(&mut sweeps) => activity.keep_alive.sweep(),
        }
    }
    activity.closed.store(true, Ordering::Release);
    if let Some(mut tx) = stream {
        let _ = tx.finish();
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The first delay after a failed reconnect.
pub(crate) const RECONNECT_INITIAL: Duration = Duration::from_millis(100);
/// The longest delay between reconnect attempts.
pub(crate) const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The delay before the next reconnect attempt after `failures` failed ones
/// in a row (`failures >= 1`): exponential from [`RECONNECT_INITIAL`],
/// doubling, capped at [`RECONNECT_MAX`], then spread by ±20 % with
/// `unit_random` in `[0, 1)` so clients of one restarted server do not
/// reconnect in lockstep. The shape of gRPC's connection backoff
/// (`doc/connection-backoff.md`: multiplier 1.6, jitter 0.2), with shorter
/// delays because a call, not a background loop, triggers each attempt.
pub(crate) fn reconnect_delay(failures: u32, unit_random: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let base = RECONNECT_INITIAL
        .saturating_mul(1 << exponent)
        .min(RECONNECT_MAX);
    base.mul_f64(0.8 + 0.4 * unit_random.clamp(0.0, 1.0))
}

/// Where a client's connection stands.
#[derive(Clone)]
pub(crate) enum LinkState {
    /// Connected (the connection may have closed since; see [`Conn::is_open`]).
    Up(Arc<Conn>),
    /// An attempt to connect is under way.
    Connecting,
    /// The last `failures` attempts failed; the next may start at `retry_at`.
    Down {
        failures: u32,
        retry_at: Instant,
        error: Arc<str>,
    },
}

/// What a call does about the link's state.
pub(crate) enum Step {
    /// Use this open connection.
    Use(Arc<Conn>),
    /// Start an attempt (the state now says `Connecting`), then wait.
    Connect { failures: u32 },
    /// Wait for the attempt under way.
    Wait,
    /// Give up: the last attempt failed and the next is not due.
    Fail { error: Arc<str>, retry_at: Instant },
}

/// Decides a call's next step and updates `state` (pure: `now` is passed
/// in). Returns whether `state` changed.
pub(crate) fn next_step(state: &mut LinkState, now: Instant) -> (Step, bool) {
    match state {
        LinkState::Up(conn) if conn.is_open() => (Step::Use(conn.clone()), false),
        LinkState::Up(_) => {
            *state = LinkState::Connecting;
            (Step::Connect { failures: 0 }, true)
        }
        LinkState::Connecting => (Step::Wait, false),
        LinkState::Down {
            failures,
            retry_at,
            error,
        } => {
            if now >= *retry_at {
                let failures = *failures;
                *state = LinkState::Connecting;
                (Step::Connect { failures }, true)
            } else {
                (
                    Step::Fail {
                        error: error.clone(),
                        retry_at: *retry_at,
                    },
                    false,
                )
            }
        }
    }
}

/// The state after an attempt that started after `failures` failed ones.
pub(crate) fn after_attempt(
    result: Result<Arc<Conn>, RpcError>,
    failures: u32,
    now: Instant,
    unit_random: f64,
) -> LinkState {
    match result {
        Ok(conn) => LinkState::Up(conn),
        Err(e) => {
            let failures = failures.saturating_add(1);
            LinkState::Down {
                failures,
                retry_at: now + reconnect_delay(failures, unit_random),
                error: e.to_string().into(),
            }
        }
    }
}

/// The link shared by a client's clones.
pub(crate) type Link = watch::Sender<LinkState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_to_the_cap_within_the_jitter() {
        let ms = |failures, r| reconnect_delay(failures, r).as_millis();
        assert_eq!(ms(1, 0.5), 100);
        assert_eq!(ms(2, 0.5), 200);
        assert_eq!(ms(3, 0.5), 400);
        assert_eq!(ms(7, 0.5), 5000, "capped");
        assert_eq!(ms(1000, 0.5), 5000, "no overflow");
        assert_eq!(ms(1, 0.0), 80);
        assert_eq!(ms(1, 0.999_999), 119);
        assert_eq!(ms(7, 0.0), 4000);
    }

    #[test]
    fn a_failed_attempt_defers_the_next_and_calls_fail_fast_meanwhile() {
        let start = Instant::now();
        let mut state = LinkState::Connecting;
        assert!(matches!(next_step(&mut state, start), (Step::Wait, false)));
        state = after_attempt(Err(RpcError::Timeout), 0, start, 0.5);
        let (step, changed) = next_step(&mut state, start + Duration::from_millis(50));
        assert!(!changed);
        match step {
            Step::Fail { error, retry_at } => {
                assert_eq!(&*error, "the call timed out");
                assert_eq!(retry_at, start + Duration::from_millis(100));
            }
            _ => panic!("expected to fail fast"),
        }
        let (step, changed) = next_step(&mut state, start + Duration::from_millis(100));
        assert!(changed);
        assert!(matches!(step, Step::Connect { failures: 1 }));
        assert!(matches!(state, LinkState::Connecting));
        state = after_attempt(Err(RpcError::Timeout), 1, start, 0.5);
        assert!(matches!(
            state,
            LinkState::Down { failures: 2, retry_at, .. } if retry_at == start + Duration::from_millis(200)
        ));
    }
}
