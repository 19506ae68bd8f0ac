//! The UDP socket under a QUIC endpoint, and the endpoint's event loop.
//!
//! s2n-quic's stock tokio IO provider runs three tasks per endpoint: a
//! reader filling a packet ring from the socket, the endpoint's event loop,
//! and a writer draining a second ring into the socket. Every outgoing
//! packet is handed from the event loop to the writer task, which on a
//! multi-threaded runtime often means waking a second worker thread, and
//! the event loop builds packets on every turn, whatever is about to be
//! sent next.
//!
//! [`UdpIo`] builds the same rings and the same batched `sendmmsg` /
//! `recvmmsg` socket code (GSO, GRO, ECN, packet info) from s2n-quic's
//! public crates, keeps the reader task (receiving in parallel with the
//! event loop pays off for bulk transfers), and runs its own event loop
//! ([`Driver`]) with the writer inside it:
//!
//! * packets go to the socket from the event loop's task, right after they
//!   are built: a call on an idle connection leaves without a task
//!   hand-off;
//! * the event loop takes in everything that is ready (application
//!   wake-ups, datagrams, timers) before it builds packets, and once input
//!   has settled it lets the tasks that input woke run first (one deferred
//!   yield): under load, one packet carries the frames of many calls.
//!
//! The writer's ring wakes the writer when packets are queued. With both
//! on one task that wake-up is the task waking itself, which would only
//! make tokio poll the endpoint once more for nothing; [`SelfWake`] drops
//! it (see there for why that is safe).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use s2n_quic_core::endpoint::Endpoint;
use s2n_quic_core::inet::SocketAddress;
use s2n_quic_core::io::{rx::Rx as _, tx::Tx as _};
use s2n_quic_core::path::{mtu, MaxMtu};
use s2n_quic_core::task::cooldown::Cooldown;
use s2n_quic_core::time::{self, clock::Timer as _, ClockWithTimer as _, StdClock, Timestamp};
use s2n_quic_platform::features::Gso;
use s2n_quic_platform::message::default as message;
use s2n_quic_platform::socket::{io as ring_io, ring, stats, task as ring_task};
use s2n_quic_platform::syscall;
use tokio::io::unix::AsyncFd;

type Message = message::Message;
type Reader = ring_task::rx::Receiver<Message, AsyncFd<std::net::UdpSocket>>;
type Writer = ring_task::tx::Sender<Message, AsyncFd<std::net::UdpSocket>>;

/// A UDP socket for one QUIC endpoint (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct UdpIo {
    pub addr: SocketAddr,
    /// Upper bound for MTU discovery.
    pub max_mtu: u16,
    /// `SO_RCVBUF`.
    pub socket_recv_buffer: usize,
    /// Bytes of received packets the endpoint may hold before reading them.
    pub ring_recv_buffer: u32,
}

/// Bytes of outgoing packets queued for the socket.
const RING_SEND_BUFFER: u32 = 128 * 1024;

impl s2n_quic::provider::io::Provider for UdpIo {
    type PathHandle = message::Handle;
    type Error = io::Error;

    fn start<E: Endpoint<PathHandle = Self::PathHandle>>(
        self,
        endpoint: E,
    ) -> Result<SocketAddress, io::Error> {
        self.spawn(endpoint)
    }
}

impl UdpIo {
    fn spawn<E: Endpoint<PathHandle = message::Handle>>(
        self,
        mut endpoint: E,
    ) -> io::Result<SocketAddress> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let socket = syscall::bind_udp(self.addr, false, false, false)?;
        socket.set_recv_buffer_size(self.socket_recv_buffer)?;
        let local: SocketAddr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("socket has no IP address"))?;

        let mut mtu_config = mtu::Config::builder()
            .with_max_mtu(self.max_mtu)
            .and_then(|b| b.build())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let received_mtu: u16 = mtu_config.max_mtu().into();
        if !syscall::configure_mtu_disc(&socket) {
            // Without "don't fragment" MTU probes prove nothing.
            mtu_config = mtu::Config::MIN;
        }
        let gro = syscall::configure_gro(&socket);
        syscall::configure_pktinfo(&socket);
        syscall::configure_tos(&socket);

        let std_socket: std::net::UdpSocket = socket.into();
        std_socket.set_nonblocking(true)?;
        let tx_socket = std_socket.try_clone()?;
        // Registration needs the runtime's reactor.
        let _entered = runtime.enter();
        let rx_fd = register(std_socket)?;
        let tx_fd = register(tx_socket)?;

        // Socket statistics are published as s2n-quic events; rpcnet
        // subscribes to none, so the receiving end is dropped.
        let (stats_tx, _) = stats::channel();

        let rx = {
            let payload_len = if gro {
                u32::from(u16::MAX)
            } else {
                u32::from(received_mtu)
            };
            let entries = (self.ring_recv_buffer / payload_len)
                .max(2)
                .next_power_of_two();
            let (producer, consumer) = ring::pair(entries, payload_len);
            let max_mtu = MaxMtu::try_from(payload_len.min(u32::from(u16::MAX)) as u16)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let reader = Reader::new(producer, rx_fd, None, Cooldown::default(), stats_tx.clone());
            // Ends when the socket fails or the event loop drops the ring.
            runtime.spawn(async move {
                if let Some(error) = reader.await {
                    tracing::warn!(%error, "UDP receive failed; endpoint stops");
                }
            });
            let address: SocketAddress = local.into();
            ring_io::rx::Rx::new(vec![consumer], max_mtu, address.into())
        };

        let tx = {
            let gso = Gso::default();
            let max_mtu: u16 = mtu_config.max_mtu().into();
            let payload_len =
                (u32::from(max_mtu) * gso.max_segments() as u32).min(u32::from(u16::MAX));
            let entries = (RING_SEND_BUFFER / payload_len).max(2).next_power_of_two();
            let (producer, consumer) = ring::pair(entries, payload_len);
            InlineTx {
                writer: Writer::new(consumer, tx_fd, gso.clone(), Cooldown::default(), stats_tx),
                ring: ring_io::tx::Tx::new(vec![producer], gso, mtu_config.max_mtu()),
                waker: SelfWake::new(),
            }
        };

        endpoint.set_mtu_config(mtu_config);
        let address: SocketAddress = local.into();
        let clock = Clock::default();
        let timer = clock.timer();
        runtime.spawn(
            Driver {
                endpoint,
                clock,
                timer,
                rx,
                tx,
                // The first packets (and timer) need no wait for others.
                dirty: true,
                held: true,
                ended: false,
            }
            .run(),
        );
        Ok(address)
    }
}

/// Turns of the loop that take input before the endpoint builds packets
/// anyway, so a steady stream of input cannot hold back output.
const TURNS_PER_TRANSMIT: u32 = 16;

/// Packet rounds per poll before the task yields to the runtime.
const TRANSMITS_PER_POLL: u32 = 8;

/// One endpoint's event loop (s2n-quic's `EventLoop`, with input batched
/// ahead of output; see the module docs).
struct Driver<E: Endpoint<PathHandle = message::Handle>> {
    endpoint: E,
    clock: Clock,
    timer: Timer,
    rx: ring_io::rx::Rx<Message>,
    tx: InlineTx,
    /// Input taken in since packets were last built.
    dirty: bool,
    /// Yielded once with input settled (see `poll`).
    held: bool,
    /// The loop ended by itself (endpoint closed, socket failed): nothing
    /// is left to send when it is dropped.
    ended: bool,
}

impl<E: Endpoint<PathHandle = message::Handle>> Driver<E> {
    async fn run(mut self) {
        let end = std::future::poll_fn(|cx| self.poll(cx)).await;
        if end == End::ReaderGone {
            // The runtime is shutting down (it dropped the reader task
            // first) or the socket stopped receiving: what the application
            // asked for last, such as the close of a dropped client's
            // connection, can still be sent.
            self.send_last_packets();
        }
        self.ended = true;
    }

    /// Takes in the last application requests and sends the packets they
    /// make once, without waiting.
    fn send_last_packets(&mut self) {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let _ = self.endpoint.poll_wakeups(&mut cx, &self.clock);
        let Self {
            tx,
            endpoint,
            clock,
            ..
        } = self;
        tx.queue(|queue| endpoint.transmit(queue, clock));
        tx.waker.pending.store(true, Ordering::Release);
        let _ = tx.flush(&mut cx);
    }

    /// Ready when the endpoint has closed, its reader ended or its socket
    /// failed.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        let mut turns = 0;
        let mut transmits = 0;
        loop {
            let mut busy = false;
            match self.endpoint.poll_wakeups(cx, &self.clock) {
                Poll::Ready(Ok(_)) => busy = true,
                Poll::Ready(Err(_closed)) => return Poll::Ready(End::Closed),
                Poll::Pending => {}
            }
            match self.rx.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let Self {
                        rx,
                        endpoint,
                        clock,
                        ..
                    } = self;
                    rx.queue(|queue| endpoint.receive(queue, clock));
                    busy = true;
                }
                // The reader task ended; it logged why.
                Poll::Ready(Err(())) => return Poll::Ready(End::ReaderGone),
                Poll::Pending => {}
            }
            busy |= self.timer.poll_ready(cx).is_ready();
            match self.tx.poll_ready(cx) {
                // The ring had been full and has room again.
                Poll::Ready(Ok(())) => busy = true,
                Poll::Ready(Err(error)) => return send_failed(error),
                Poll::Pending => {}
            }

            if busy {
                self.dirty = true;
                turns += 1;
                if turns < TURNS_PER_TRANSMIT {
                    continue;
                }
            } else if !self.dirty {
                // Nothing happened since the last packets went out, and
                // every source above is registered for a wake-up.
                return Poll::Pending;
            } else if !self.held {
                // Input has settled. Before building packets, let the tasks
                // that are runnable now (often the callers and handlers this
                // input just woke) run once: what they send joins this
                // round of packets instead of the next one.
                self.held = true;
                defer(cx);
                return Poll::Pending;
            }

            let Self {
                tx,
                endpoint,
                clock,
                ..
            } = self;
            tx.queue(|queue| endpoint.transmit(queue, clock));
            if let Some(error) = tx.flush(cx) {
                return send_failed(error);
            }
            if let Some(at) = self.endpoint.timeout() {
                self.timer.update(at);
            }
            self.dirty = false;
            self.held = false;
            turns = 0;
            transmits += 1;
            if transmits >= TRANSMITS_PER_POLL {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // One more turn registers the timer just set and catches what
            // arrived meanwhile.
        }
    }
}

impl<E: Endpoint<PathHandle = message::Handle>> Drop for Driver<E> {
    /// The runtime is dropping the endpoint's task while it runs (the
    /// runtime is shutting down):
    /// take in the last application requests and send the packets they
    /// make once more, without waiting, so connection closes requested
    /// just before (the last `RpcClient` of a program's `main` dropped)
    /// reach their peers instead of leaving them to their idle timeout.
    fn drop(&mut self) {
        if !self.ended {
            self.send_last_packets();
        }
    }
}

/// Asks tokio to poll this task again once the worker has run the tasks
/// that are ready now (`yield_now`'s deferred wake-up).
fn defer(cx: &mut Context<'_>) {
    let yielded = std::pin::pin!(tokio::task::yield_now());
    // The first poll hands the waker to the scheduler and is pending.
    let _ = yielded.poll(cx);
}

/// Why an endpoint's event loop ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The endpoint closed: nothing is left to send.
    Closed,
    /// The reader task ended (runtime shutdown, socket error).
    ReaderGone,
    /// The writer stopped.
    SendFailed,
}

/// The writer stopped: the socket failed (`Some`) or its ring closed.
fn send_failed(error: Option<io::Error>) -> Poll<End> {
    match error {
        Some(error) => tracing::warn!(%error, "UDP send failed; endpoint stops"),
        None => tracing::debug!("UDP send ring closed; endpoint stops"),
    }
    Poll::Ready(End::SendFailed)
}

/// Registers a socket with the reactor. `AsyncFd::new` is deprecated
/// because an arbitrary `T: AsRawFd` may close or swap its descriptor while
/// registered; a `UdpSocket` owns its descriptor until it is dropped, which
/// happens only after the `AsyncFd` deregisters it, so the condition of
/// the `unsafe` replacement holds here.
#[allow(deprecated)]
fn register(socket: std::net::UdpSocket) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    AsyncFd::new(socket)
}

/// The waker handed to the socket writer and its ring. It records that the
/// writer asked to run again ([`SelfWake::take_pending`]) and forwards to
/// the event loop task's waker, except while that task is itself inside
/// [`InlineTx`] on this thread.
///
/// Those wake-ups come from the ring (packets queued, or room freed by the
/// writer), and the driver flushes after queueing and polls the writer
/// whenever its flag is set before it sleeps, so forwarding them would only
/// make tokio poll the task once more for nothing. Wake-ups from elsewhere
/// (the reactor reporting the socket writable, on another thread or after
/// this poll) are always forwarded.
struct SelfWake {
    task: Mutex<Option<Waker>>,
    pending: AtomicBool,
}

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

impl SelfWake {
    fn new() -> Arc<SelfWake> {
        Arc::new(SelfWake {
            task: Mutex::new(None),
            // Poll once to register.
            pending: AtomicBool::new(true),
        })
    }

    /// Whether this side was woken since the last call.
    fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// Runs `f` with a context whose waker is this one, after recording
    /// `cx`'s waker as the one to forward to.
    fn inside<R>(self: &Arc<Self>, cx: &Context<'_>, f: impl FnOnce(&mut Context<'_>) -> R) -> R {
        {
            let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
            match task.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *task = Some(cx.waker().clone()),
            }
        }
        let waker = Waker::from(self.clone());
        let mut own = Context::from_waker(&waker);
        let was = INSIDE.with(|i| i.replace(true));
        let out = f(&mut own);
        INSIDE.with(|i| i.set(was));
        out
    }
}

impl Wake for SelfWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.pending.store(true, Ordering::Release);
        if INSIDE.with(Cell::get) {
            return;
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// The send side: the ring and the socket writer draining it, polled inline.
struct InlineTx {
    writer: Writer,
    ring: ring_io::tx::Tx<Message>,
    waker: Arc<SelfWake>,
}

impl InlineTx {
    /// Ready when the ring, full before, has room; `Err` when the socket
    /// failed.
    fn poll_ready(&mut self, cx: &mut Context) -> Poll<Result<(), Option<io::Error>>> {
        let Self {
            writer,
            ring,
            waker,
        } = self;
        let flush = waker.take_pending();
        // One trip inside for both: this runs on every turn of the loop.
        waker.inside(cx, |own| {
            if flush {
                if let Poll::Ready(end) = Pin::new(writer).poll(own) {
                    return Poll::Ready(Err(end));
                }
            }
            ring.poll_ready(own).map_err(|()| None)
        })
    }

    /// Lets the writer send what the ring holds, if it asked to run (new
    /// packets, or the socket writable again). `Some` when it stopped.
    fn flush(&mut self, cx: &mut Context) -> Option<Option<io::Error>> {
        let Self { writer, waker, .. } = self;
        if !waker.take_pending() {
            return None;
        }
        match waker.inside(cx, |own| Pin::new(writer).poll(own)) {
            Poll::Ready(end) => Some(end),
            Poll::Pending => None,
        }
    }

    fn queue(
        &mut self,
        f: impl FnOnce(&mut <ring_io::tx::Tx<Message> as s2n_quic_core::io::tx::Tx>::Queue),
    ) {
        // Filling ring slots wakes the writer (inside: flagged only).
        let was = INSIDE.with(|i| i.replace(true));
        self.ring.queue(f);
        INSIDE.with(|i| i.set(was));
    }
}

/// The endpoint's clock: tokio's (so a paused runtime pauses it too), as
/// s2n-quic timestamps counted from the endpoint's start.
#[derive(Clone)]
struct Clock {
    epoch: tokio::time::Instant,
    zero: Timestamp,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            epoch: tokio::time::Instant::now(),
            // A timestamp near zero, from the one safe constructor.
            zero: time::Clock::get_time(&StdClock::new(std::time::Instant::now())),
        }
    }
}

impl time::Clock for Clock {
    fn get_time(&self) -> Timestamp {
        self.zero + self.epoch.elapsed()
    }
}

impl time::ClockWithTimer for Clock {
    type Timer = Timer;

    fn timer(&self) -> Timer {
        Timer {
            clock: self.clone(),
            target: None,
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
        }
    }
}

struct Timer {
    clock: Clock,
    target: Option<tokio::time::Instant>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl time::clock::Timer for Timer {
    fn poll_ready(&mut self, cx: &mut Context) -> Poll<()> {
        if self.target.is_none() {
            return Poll::Pending;
        }
        let ready = self.sleep.as_mut().poll(cx);
        if ready.is_ready() {
            self.target = None;
        }
        ready
    }

    fn update(&mut self, at: Timestamp) {
        // Whole milliseconds (tokio's timer resolution), rounded up, so a
        // deadline that did not move is not registered again.
        let since_start = at.saturating_duration_since(self.clock.zero);
        let ms = since_start.as_nanos().div_ceil(1_000_000);
        let target = u64::try_from(ms)
            .ok()
            .and_then(|ms| self.clock.epoch.checked_add(Duration::from_millis(ms)));
        let Some(target) = target else {
            // Beyond any clock: never.
            self.target = None;
            return;
        };
        if self.target == Some(target) {
            return;
        }
        self.sleep.as_mut().reset(target);
        self.target = Some(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_from_inside_are_recorded_but_not_forwarded() {
        let task = Arc::new(Count(AtomicUsize::new(0)));
        let task_waker = Waker::from(task.clone());
        let cx = Context::from_waker(&task_waker);
        let own = SelfWake::new();
        assert!(own.take_pending(), "a new side asks to be polled once");
        assert!(!own.take_pending());

        let kept = own.inside(&cx, |inner| inner.waker().clone());
        own.inside(&cx, |_| kept.wake_by_ref());
        assert_eq!(task.0.load(Ordering::SeqCst), 0, "self-wake dropped");
        assert!(own.take_pending(), "but recorded");

        // The same waker used from elsewhere (the reactor) reaches the task.
        std::thread::spawn(move || kept.wake()).join().unwrap();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(own.take_pending());
    }

    #[tokio::test]
    async fn a_closed_endpoint_releases_its_socket() {
        let io = UdpIo {
            addr: "127.0.0.1:0".parse().unwrap(),
            max_mtu: 1500,
            socket_recv_buffer: 1 << 20,
            ring_recv_buffer: 1 << 20,
        };
        let client = s2n_quic::Client::builder()
            .with_io(io)
            .unwrap()
            .start()
            .unwrap();
        let addr = client.local_addr().unwrap();
        assert!(std::net::UdpSocket::bind(addr).is_err(), "in use");
        drop(client);
        // The event loop and the reader task end on their own; nothing to
        // await but the port coming free.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind(addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "socket still open");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
