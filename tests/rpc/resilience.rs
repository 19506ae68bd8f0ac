//! Failure modes users meet in production: long calls under a
//! short idle timeout, a server restarted under its clients, connection
//! floods past the limit, dropped clients, refused uploads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_stream::stream;
use futures::StreamExt;
use rpcnet::{RpcClient, RpcError, RpcServer};

use crate::support::*;

#[path = "../support/process.rs"]
mod process;

use process::{ready_anywhere, Proc};

#[tokio::test]
async fn calls_outlive_the_idle_timer_and_end_at_their_own_deadline() {
    // Idle timeout 2 s on both ends, no keep-alive configured: a 5 s
    // handler and a 5 s gap between stream items must still complete.
    let idle = Duration::from_secs(2);
    let server = RpcServer::new(server_config().with_idle_timeout(idle));
    server
        .register("slow", |p| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(p)
        })
        .await;
    server
        .register_streaming("gap", |_reqs| async move {
            stream! {
                yield Ok(b"first".to_vec());
                tokio::time::sleep(Duration::from_secs(5)).await;
                yield Ok(b"second".to_vec());
            }
        })
        .await;
    let server = spawn(server);
    let config = client_config()
        .with_idle_timeout(idle)
        .with_default_timeout(Duration::from_secs(10));
    let client = RpcClient::connect(server.addr, config).await.unwrap();
    let unary = client.call_with_timeout("slow", b"done".to_vec(), Duration::from_secs(10));
    let streaming = {
        let client = client.clone();
        async move {
            let responses = client.call_server_streaming("gap", vec![]).await?;
            responses
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
        }
    };
    let (unary, streaming) = promptly("slow calls", futures::future::join(unary, streaming)).await;
    assert_eq!(unary.unwrap(), b"done");
    assert_eq!(
        streaming.unwrap(),
        vec![b"first".to_vec(), b"second".to_vec()]
    );

    // The deadline, not the idle timer, still ends a call that is too slow.
    let err = client
        .call_with_timeout("slow", vec![], Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout), "{err:?}");
}

/// The server process of [`a_client_survives_a_server_process_restart`]:
/// runs only when that test starts this test binary with
/// `RPCNET_CHILD_SERVER_ADDR` set (otherwise it returns at once).
#[test]
#[ignore = "the server process of a_client_survives_a_server_process_restart"]
fn child_echo_server() {
    let Ok(addr) = std::env::var("RPCNET_CHILD_SERVER_ADDR") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut config =
            rpcnet::RpcConfig::new(cert("test_cert.pem"), addr).with_key_path(cert("test_key.pem"));
        if std::env::var_os("RPCNET_CHILD_RESET_KEY").is_some() {
            config = config.with_stateless_reset_key([42; 32]);
        }
        let mut server = RpcServer::new(config);
        server.register("echo", |p| async move { Ok(p) }).await;
        let quic = server.bind().unwrap();
        println!("READY {}", server.socket_addr.unwrap());
        server.start(quic).await.unwrap();
    });
}

/// A server process of [`child_echo_server`] on `addr`, once it is ready;
/// killed with SIGKILL when dropped.
async fn server_process(addr: &str, reset_key: bool) -> Proc {
    let mut command = process::command(std::env::current_exe().unwrap());
    command
        .args([
            "resilience::child_echo_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RPCNET_CHILD_SERVER_ADDR", addr);
    if reset_key {
        command.env("RPCNET_CHILD_RESET_KEY", "1");
    }
    Proc::start(&mut command, PROMPTLY, ready_anywhere).await
}

#[tokio::test]
async fn a_client_survives_a_server_process_restart() {
    client_survives_a_restart(true).await;
}

/// With no setting at all: the restarted server derives the same reset
/// key from its private key and address as its predecessor did.
#[tokio::test]
async fn a_default_configured_client_recovers_from_a_server_restart_within_2_s() {
    client_survives_a_restart(false).await;
}

/// `kill -9` of a server process and a restart on the same address; the
/// client, configured by default, recovers within 2 s.
async fn client_survives_a_restart(reset_key: bool) {
    let mut first = server_process("127.0.0.1:0", reset_key).await;
    let addr = first.addr;
    let client = RpcClient::connect(addr, client_config()).await.unwrap();
    assert_eq!(client.call("echo", b"1".to_vec()).await.unwrap(), b"1");

    first.kill().await;
    let _second = server_process(&addr.to_string(), reset_key).await;

    // The restarted server answers the old connection's packets with a
    // stateless reset: the call gets a typed error (or, had the client
    // known already, a success) within 2 s, not a 30 s timeout.
    let started = Instant::now();
    let outcome = client
        .call_with_timeout("echo", b"2".to_vec(), Duration::from_secs(10))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{outcome:?} after {:?}",
        started.elapsed()
    );
    match outcome {
        Ok(echo) => assert_eq!(echo, b"2"),
        Err(e) => assert!(matches!(e, RpcError::ConnectionError(_)), "{e:?}"),
    }
    // ... and then works again on a new connection.
    assert_eq!(client.call("echo", b"3".to_vec()).await.unwrap(), b"3");
    assert!(client.is_connected());
}

async fn echo_server(config: rpcnet::RpcConfig) -> TestServer {
    let server = RpcServer::new(config);
    server.register("echo", |p| async move { Ok(p) }).await;
    spawn(server)
}

#[tokio::test]
async fn every_client_over_the_connection_limit_is_told_why() {
    const LIMIT: usize = 10;
    const CLIENTS: usize = 200;
    let server = echo_server(server_config().with_max_connections(LIMIT)).await;
    let attempts = (0..CLIENTS).map(|_| async {
        match RpcClient::connect(server.addr, client_config()).await {
            Ok(client) => client.call("echo", vec![]).await.map(|_| client),
            Err(e) => Err(e),
        }
    });
    let outcomes = promptly("connection flood", futures::future::join_all(attempts)).await;
    let mut admitted = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(client) => admitted.push(client),
            Err(RpcError::Unavailable(reason)) => {
                assert!(reason.contains("connection limit"), "{reason}")
            }
            Err(other) => panic!("refused without the limit's reason: {other:?}"),
        }
    }
    assert!(
        !admitted.is_empty() && admitted.len() <= LIMIT,
        "{}",
        admitted.len()
    );
    for client in &admitted {
        assert_eq!(client.call("echo", b"x".to_vec()).await.unwrap(), b"x");
    }
}

#[tokio::test]
async fn a_dropped_client_frees_its_server_slot_within_a_second() {
    let server = echo_server(server_config().with_max_connections(1)).await;
    // The client lives in a runtime of its own that ends with it, as at
    // the end of a program's `main`.
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let first = RpcClient::connect(addr, client_config()).await.unwrap();
            first.call("echo", vec![]).await.unwrap();
        });
    })
    .await
    .unwrap();
    let dropped = Instant::now();
    loop {
        let attempt = async {
            let client = RpcClient::connect(server.addr, client_config()).await?;
            client.call("echo", b"second".to_vec()).await
        };
        match attempt.await {
            Ok(echo) => {
                assert_eq!(echo, b"second");
                break;
            }
            Err(RpcError::Unavailable(_)) if dropped.elapsed() < Duration::from_secs(1) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!(
                "slot not freed {:?} after the drop: {e:?}",
                dropped.elapsed()
            ),
        }
    }
}

#[tokio::test]
async fn a_refused_upload_always_reports_the_server_reason() {
    let server = echo_server(server_config()).await;
    // A small send buffer keeps the upload in flight when the server's
    // refusal (status, then STOP_SENDING) arrives.
    let config = client_config().with_send_buffer_size(64 * 1024);
    let client = RpcClient::connect(server.addr, config).await.unwrap();
    let upload = vec![7u8; 2 << 20];
    for round in 0..20 {
        let calls = (0..10).map(|_| client.call("no_such_method", upload.clone()));
        for result in promptly("refused uploads", futures::future::join_all(calls)).await {
            let err = result.unwrap_err();
            assert!(
                matches!(err, RpcError::UnknownMethod(_)),
                "round {round}: {err:?}"
            );
        }
    }
}

/// One way a call can end early (every one must give its stream slot back).
#[derive(Clone, Copy, Debug)]
enum EarlyEnd {
    UnaryDropped,
    UnaryTimedOut,
    ServerStreamDroppedAfterOneItem,
    BidirectionalDroppedMidUpload,
    UnknownMethod,
    HandlerError,
    HandlerPanic,
}

const EARLY_ENDS: [EarlyEnd; 7] = [
    EarlyEnd::UnaryDropped,
    EarlyEnd::UnaryTimedOut,
    EarlyEnd::ServerStreamDroppedAfterOneItem,
    EarlyEnd::BidirectionalDroppedMidUpload,
    EarlyEnd::UnknownMethod,
    EarlyEnd::HandlerError,
    EarlyEnd::HandlerPanic,
];

/// Runs one early-ending call; every wait is bounded (a call that waits
/// too long for a stream slot is abandoned, the last way to end early).
async fn end_early(client: &RpcClient, how: EarlyEnd) {
    let bound = Duration::from_millis(20);
    match how {
        EarlyEnd::UnaryDropped => {
            let _ = tokio::time::timeout(bound, client.call("hang", vec![])).await;
        }
        EarlyEnd::UnaryTimedOut => {
            let _ = client.call_with_timeout("hang", vec![], bound).await;
        }
        EarlyEnd::ServerStreamDroppedAfterOneItem => {
            let _ = tokio::time::timeout(bound, async {
                let mut items = client.call_server_streaming("ticks", vec![]).await?;
                items.next().await.transpose()
            })
            .await;
        }
        EarlyEnd::BidirectionalDroppedMidUpload => {
            let _ = tokio::time::timeout(bound, async {
                let uploads = futures::stream::iter(0..).then(|_| async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    vec![0u8; 1024]
                });
                let mut items = client.call_streaming("ticks", uploads).await?;
                items.next().await.transpose()
            })
            .await;
        }
        EarlyEnd::UnknownMethod => {
            let _ = tokio::time::timeout(bound, client.call("missing", vec![])).await;
        }
        EarlyEnd::HandlerError => {
            let _ = tokio::time::timeout(bound, client.call("fail", vec![])).await;
        }
        EarlyEnd::HandlerPanic => {
            let _ = tokio::time::timeout(bound, client.call("panic", vec![])).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_slot_comes_back_however_calls_end() {
    const SLOTS: u64 = 4;
    let server = RpcServer::new(server_config().with_max_concurrent_streams(SLOTS));
    server
        .register("hang", |_| async move {
            std::future::pending::<()>().await;
            Ok(vec![])
        })
        .await;
    server
        .register("fail", |_| async move {
            Err(RpcError::RemoteError("no".into()))
        })
        .await;
    server
        // `resume_unwind` skips the panic hook: thousands of panics would
        // otherwise print (and, with RUST_BACKTRACE set, capture) a
        // backtrace each, slowing the server down far more than the test.
        .register("panic", |_| async move {
            std::panic::resume_unwind(Box::new("handler panics on purpose"))
        })
        .await;
    server
        .register_streaming("ticks", |_reqs| async move {
            stream! {
                loop {
                    yield Ok(vec![1u8; 512]);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
        .await;
    let all_in = Arc::new(tokio::sync::Barrier::new(SLOTS as usize));
    let barrier = all_in.clone();
    server
        .register("together", move |p| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                Ok(p)
            }
        })
        .await;
    let server = spawn(server);
    let client = server.client().await;

    // Twice as many calls at once as there are slots, so some of them wait
    // for a slot and are abandoned while waiting.
    let mut calls = 0;
    let width = 2 * SLOTS as usize;
    while calls < 3000 {
        let batch = (0..width).map(|i| {
            let how = EARLY_ENDS[(calls + i) % EARLY_ENDS.len()];
            let client = client.clone();
            async move { end_early(&client, how).await }
        });
        futures::future::join_all(batch).await;
        calls += width;
    }

    // Every slot is free again: four calls that can only finish together.
    let together =
        (0..SLOTS).map(|i| client.call_with_timeout("together", vec![i as u8], PROMPTLY));
    for (i, result) in promptly("4 calls at once", futures::future::join_all(together))
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(result.unwrap(), vec![i as u8]);
    }
}

#[tokio::test]
async fn opens_abandoned_while_waiting_for_a_slot_do_not_delay_live_callers() {
    const SLOTS: u64 = 4;
    let server = RpcServer::new(server_config().with_max_concurrent_streams(SLOTS));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let holding = Arc::new(tokio::sync::Semaphore::new(0));
    let (r, h) = (release.clone(), holding.clone());
    server
        .register("hold", move |_| {
            let (r, h) = (r.clone(), h.clone());
            async move {
                h.add_permits(1);
                r.acquire().await.unwrap().forget();
                Ok(vec![])
            }
        })
        .await;
    server.register("echo", |p| async move { Ok(p) }).await;
    let server = spawn(server);
    let client = server.client().await;

    // Every slot taken...
    let holders: Vec<_> = (0..SLOTS)
        .map(|_| tokio::spawn(client.call_with_timeout("hold", vec![], PROMPTLY)))
        .collect();
    promptly("all slots held", holding.acquire_many(SLOTS as u32))
        .await
        .unwrap()
        .forget();
    // ... callers that give up waiting for one ...
    for _ in 0..10 {
        let err = client
            .call_with_timeout("echo", vec![], Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Timeout), "{err:?}");
    }
    // ... and one that waits, while the slots come free.
    let live = tokio::spawn(client.call_with_timeout("echo", b"live".to_vec(), PROMPTLY));
    tokio::task::yield_now().await;
    release.add_permits(SLOTS as usize);
    for holder in holders {
        holder.await.unwrap().unwrap();
    }
    let started = Instant::now();
    assert_eq!(live.await.unwrap().unwrap(), b"live");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Parks `parked` server streams (each read up to its first item, then not
/// read any more) on one connection, waits until they have together
/// received more than a connection window of s2n-quic's default size
/// (which one unread stream used to exhaust), then checks that a unary call
/// on a clone of the same client returns promptly.
async fn unread_streams_slow_only_themselves(window: Option<u32>, parked: usize) {
    const ITEM: usize = 64 * 1024;
    const SEND_BUFFER: usize = 64 * 1024;
    // What the server has handed to its send buffers; at most
    // SEND_BUFFER + ITEM per stream of it is not yet received.
    let (yielded, mut yielded_rx) = tokio::sync::watch::channel(0usize);
    let yielded = Arc::new(yielded);
    let server = RpcServer::new(server_config().with_send_buffer_size(SEND_BUFFER as u32));
    server
        .register_streaming("flood", move |_reqs| {
            let yielded = yielded.clone();
            async move {
                stream! {
                    loop {
                        yield Ok(vec![0u8; ITEM]);
                        yielded.send_modify(|n| *n += ITEM);
                    }
                }
            }
        })
        .await;
    server.register("echo", |p| async move { Ok(p) }).await;
    let server = spawn(server);
    let mut config = client_config();
    if let Some(window) = window {
        config = config.with_stream_window(window);
    }
    let client = RpcClient::connect(server.addr, config).await.unwrap();
    let mut streams = Vec::new();
    for i in 0..parked {
        let mut items = client.call_server_streaming("flood", vec![]).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(2), items.next()).await;
        assert!(
            matches!(first, Ok(Some(Ok(_)))),
            "parked stream {i} got no first item: {first:?}"
        );
        streams.push(items);
    }
    let received_more_than_a_default_window =
        parked * (SEND_BUFFER + ITEM) + rpcnet::DEFAULT_STREAM_WINDOW as usize + ITEM;
    promptly(
        "parked streams receiving more than one default window",
        yielded_rx.wait_for(|n| *n >= received_more_than_a_default_window),
    )
    .await
    .unwrap();
    let echo = client
        .call_with_timeout("echo", b"prompt".to_vec(), Duration::from_secs(2))
        .await;
    assert_eq!(echo.unwrap(), b"prompt");
}

#[tokio::test]
async fn an_unread_stream_slows_only_itself_with_small_windows() {
    unread_streams_slow_only_themselves(Some(256 * 1024), 32).await;
}

#[tokio::test]
async fn an_unread_stream_slows_only_itself_with_default_windows() {
    unread_streams_slow_only_themselves(None, 4).await;
}

/// A UDP relay on loopback between QUIC clients and a server that counts
/// the Retry packets the server sends (RFC 9000 §17.2.5: a long header,
/// version 1, packet type 0b11). Each client address gets its own upstream
/// socket, so the server sees one address per client. Its tasks end when
/// it is dropped.
struct RetryCountingRelay {
    addr: SocketAddr,
    retries: Arc<std::sync::atomic::AtomicUsize>,
    _tasks: tokio::task::JoinSet<()>,
}

fn is_quic_v1_retry(datagram: &[u8]) -> bool {
    datagram.len() > 5
        && datagram[0] & 0x80 != 0
        && datagram[1..5] == [0, 0, 0, 1]
        && (datagram[0] >> 4) & 0x03 == 0x03
}

impl RetryCountingRelay {
    async fn start(server: SocketAddr) -> Self {
        use std::collections::HashMap;
        use tokio::net::UdpSocket;
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let counted = retries.clone();
        tasks.spawn(async move {
            let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut replies = tokio::task::JoinSet::new();
            let mut buf = vec![0u8; 65536];
            // Ends when the relay (and with it this task) is dropped.
            while let Ok((len, client)) = front.recv_from(&mut buf).await {
                let upstream = match upstreams.get(&client) {
                    Some(upstream) => upstream.clone(),
                    None => {
                        let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        upstream.connect(server).await.unwrap();
                        let (front, back, counted) =
                            (front.clone(), upstream.clone(), counted.clone());
                        replies.spawn(async move {
                            let mut buf = vec![0u8; 65536];
                            while let Ok(len) = back.recv(&mut buf).await {
                                if is_quic_v1_retry(&buf[..len]) {
                                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                }
                                let _ = front.send_to(&buf[..len], client).await;
                            }
                        });
                        upstreams.insert(client, upstream.clone());
                        upstream
                    }
                };
                let _ = upstream.send(&buf[..len]).await;
            }
        });
        Self {
            addr,
            retries,
            _tasks: tasks,
        }
    }

    fn retries(&self) -> usize {
        self.retries.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn handshakes_beyond_the_inflight_limit_are_retried_and_all_complete() {
    // With one handshake allowed in progress, clients connecting at once
    // are asked to retry (address validation) instead of being handshaken
    // in parallel; every one still connects, and the server keeps serving.
    // With the limit ignored (s2n-quic's own default has none) no Retry is
    // sent, which the relay between them would see.
    const CLIENTS: usize = 24;
    let server = RpcServer::new(server_config().with_max_inflight_handshakes(1));
    server.register("echo", |p| async move { Ok(p) }).await;
    let server = spawn(server);
    let relay = RetryCountingRelay::start(server.addr).await;

    let connects = (0..CLIENTS).map(|i| async move {
        // Separate endpoints: separate client addresses, as many clients.
        let config = client_config().with_shared_endpoint(false);
        let client = RpcClient::connect(relay.addr, config).await?;
        let answer = client.call("echo", vec![i as u8]).await?;
        assert_eq!(answer, vec![i as u8]);
        Ok::<_, RpcError>(client)
    });
    let clients = promptly(
        "every client connected",
        futures::future::join_all(connects),
    )
    .await;
    let clients: Vec<RpcClient> = clients
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every client connects and calls");
    eprintln!("{} Retry packets for {CLIENTS} clients", relay.retries());
    assert!(
        relay.retries() > 0,
        "{CLIENTS} concurrent handshakes against a limit of 1, but no Retry was sent"
    );
    // The server keeps serving, new clients and old.
    let late = promptly("a late client", server.client()).await;
    assert_eq!(late.call("echo", b"late".to_vec()).await.unwrap(), b"late");
    assert_eq!(
        clients[0].call("echo", b"old".to_vec()).await.unwrap(),
        b"old"
    );
}

/// The server process's address space (`VmSize`), in bytes.
fn vm_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("VmSize in /proc/<pid>/status");
    kib * 1024
}

/// Opens `streams` streams on `connection`, each with a call header and a
/// message frame announcing `announced` bytes, none of which follow; then
/// proves the server has read them all: the data of each is acknowledged,
/// and an echo call on a later stream of the same connection is answered
/// (the server accepts and first reads streams in order).
async fn stall_streams(
    connection: &mut s2n_quic::Connection,
    streams: usize,
    announced: usize,
) -> Vec<s2n_quic::stream::BidirectionalStream> {
    use bytes::BytesMut;
    use rpcnet::wire::{encode_frame_header, CallKind, Frame, FrameType, RequestHeader};
    let mut stalled = Vec::with_capacity(streams);
    for i in 0..streams {
        let mut bytes = BytesMut::new();
        Frame::Header(RequestHeader {
            request_id: i as u64,
            kind: CallKind::Unary,
            deadline_ms: 0,
            method: "echo".into(),
            metadata: vec![],
            schema: None,
        })
        .encode(&mut bytes);
        encode_frame_header(FrameType::Message, announced, &mut bytes);
        let mut stream = promptly("open a stream", connection.open_bidirectional_stream())
            .await
            .unwrap();
        stream.send(bytes.freeze()).await.unwrap();
        stalled.push(stream);
    }
    promptly(
        "stalled streams' data acknowledged",
        futures::future::try_join_all(stalled.iter_mut().map(|s| s.flush())),
    )
    .await
    .unwrap();
    let mut bytes = BytesMut::new();
    Frame::Header(RequestHeader {
        request_id: u64::MAX,
        kind: CallKind::Unary,
        deadline_ms: 0,
        method: "echo".into(),
        metadata: vec![],
        schema: None,
    })
    .encode(&mut bytes);
    Frame::Message(bytes::Bytes::from_static(b"after")).encode(&mut bytes);
    Frame::End.encode(&mut bytes);
    assert_eq!(
        crate::abuse::send_raw(connection, bytes.to_vec(), true).await,
        rpcnet::wire::StatusCode::Ok
    );
    stalled
}

#[tokio::test]
async fn stalled_announcements_of_large_messages_do_not_grow_the_server() {
    // 2 connections × 256 streams each announce a message just under the
    // 16 MiB limit and send none of it: 8 GiB announced. The server
    // (its own process, so its address space is its own) must grow by far
    // less: the bound is 1 MiB per stalled stream (512 MiB in all, a
    // sixteenth of what was announced), slack for its allocator's arenas
    // and per-stream buffers; reserving each announcement grew it by 8 GiB.
    const CONNECTIONS: usize = 2;
    const STREAMS: usize = 256;
    const ANNOUNCED: usize = (16 << 20) - 1;
    const BOUND: u64 = (CONNECTIONS * STREAMS) as u64 * (1 << 20);
    let mut server = server_process("127.0.0.1:0", false).await;
    let pid = server.child.id().expect("server process running");
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        let limits = s2n_quic::provider::limits::Limits::new()
            .with_max_open_local_bidirectional_streams(2 * STREAMS as u64)
            .unwrap();
        let (endpoint, connection) = promptly(
            "raw connection",
            crate::abuse::raw_connect_with_limits(server.addr, limits),
        )
        .await;
        connections.push((endpoint, connection));
    }
    // Warm up the server's tasks and allocator with a few stalled streams.
    let mut stalled = Vec::new();
    for (_, connection) in &mut connections {
        stalled.push(stall_streams(connection, 8, ANNOUNCED).await);
    }
    let before = vm_size(pid);
    for (_, connection) in &mut connections {
        stalled.push(stall_streams(connection, STREAMS, ANNOUNCED).await);
    }
    let after = vm_size(pid);
    let growth = after.saturating_sub(before);
    eprintln!(
        "server VmSize {} -> {} MiB for {} stalled streams",
        before >> 20,
        after >> 20,
        CONNECTIONS * STREAMS
    );
    assert!(
        growth < BOUND,
        "the server's address space grew by {} MiB ({} -> {} MiB) for {} stalled streams; bound {} MiB",
        growth >> 20,
        before >> 20,
        after >> 20,
        CONNECTIONS * STREAMS,
        BOUND >> 20
    );
    drop(stalled);
    server.kill().await;
}

/// A streaming handler that keeps its request stream without reading it
/// stops the client's upload: what the client gets to send is bounded by
/// the server's request queue and the two ends' flow-control windows, not
/// by how long the handler waits.
#[tokio::test]
async fn a_handler_that_does_not_read_its_requests_stops_the_upload() {
    const ITEM: usize = 1024;
    const WINDOW: u32 = 64 * 1024;
    let server = RpcServer::new(
        server_config()
            .with_stream_window(WINDOW)
            .with_send_buffer_size(WINDOW),
    );
    let (held, mut held_rx) = tokio::sync::mpsc::channel(1);
    server
        .register_streaming("hold", move |requests| {
            let held = held.clone();
            async move {
                // The handler takes its requests and never reads them.
                let _ = held.send(requests).await;
                std::future::pending::<()>().await;
                stream! { yield Ok(Vec::new()) }
            }
        })
        .await;
    let server = spawn(server);
    let client = RpcClient::connect(
        server.addr,
        client_config()
            .with_stream_window(WINDOW)
            .with_send_buffer_size(WINDOW),
    )
    .await
    .unwrap();
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = pulled.clone();
    let requests = futures::stream::repeat_with(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        vec![0u8; ITEM]
    });
    let upload = tokio::spawn(async move { client.call_client_streaming("hold", requests).await });
    let _requests = held_rx.recv().await.expect("the handler ran");
    // Bounded wait until the upload stalls: no new request taken for
    // half a second.
    let mut last = usize::MAX;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = pulled.load(std::sync::atomic::Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let taken = pulled.load(std::sync::atomic::Ordering::Relaxed);
    // Two 64 KiB windows and send buffers of 1 KiB messages, the queue
    // and the frames in flight: a few hundred. An unbounded queue would
    // take millions in the same time.
    assert!(
        taken < 1_000,
        "the client kept uploading: {taken} requests taken"
    );
    assert!(!upload.is_finished(), "the call is still open");
    upload.abort();
}
