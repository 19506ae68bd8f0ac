//! Timeouts, cancellation, graceful shutdown, keep-alive.

use std::sync::Arc;
use std::time::Duration;

use async_stream::stream;
use futures::StreamExt;
use rpcnet::{RpcClient, RpcError, RpcServer};
use tokio::sync::{oneshot, Mutex, Notify};

use crate::support::*;

/// A server whose "hang" handler signals when it starts and when its future is dropped.
struct Hanging {
    server: TestServer,
    started: Arc<Notify>,
    dropped: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

async fn hanging_server() -> Hanging {
    let started = Arc::new(Notify::new());
    let dropped: Arc<Mutex<Option<oneshot::Receiver<()>>>> = Arc::default();
    let server = RpcServer::new(server_config());
    let (s, d) = (started.clone(), dropped.clone());
    server
        .register("hang", move |_| {
            let (s, d) = (s.clone(), d.clone());
            async move {
                let (tx, rx) = oneshot::channel();
                *d.lock().await = Some(rx);
                let _guard = DropSignal(Some(tx));
                s.notify_one();
                std::future::pending::<()>().await;
                Ok(vec![])
            }
        })
        .await;
    let (s, d) = (started.clone(), dropped.clone());
    server
        .register_streaming("hang_stream", move |_reqs| {
            let (s, d) = (s.clone(), d.clone());
            async move {
                let (tx, rx) = oneshot::channel();
                *d.lock().await = Some(rx);
                stream! {
                    let _guard = DropSignal(Some(tx));
                    yield Ok(b"first".to_vec());
                    s.notify_one();
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
    server.register("echo", |p| async move { Ok(p) }).await;
    Hanging {
        server: spawn(server),
        started,
        dropped,
    }
}

impl Hanging {
    async fn handler_cancelled(&self) {
        let rx = self.dropped.lock().await.take().expect("handler ran");
        promptly("handler cancellation", rx)
            .await
            .expect("guard dropped");
    }
}

#[tokio::test]
async fn call_timeout_is_typed_and_cancels_the_handler() {
    let h = hanging_server().await;
    let client = h.server.client().await;
    let err = client
        .call_with_timeout("hang", vec![], Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout), "{err:?}");
    h.handler_cancelled().await;
    assert_eq!(client.call("echo", b"ok".to_vec()).await.unwrap(), b"ok");
}

#[tokio::test]
async fn dropping_a_unary_call_cancels_its_handler() {
    let h = hanging_server().await;
    let client = h.server.client().await;
    let call = client.call("hang", vec![]);
    tokio::select! {
        _ = call => panic!("hang returned"),
        _ = h.started.notified() => {} // handler running: drop the call
    }
    h.handler_cancelled().await;
    assert_eq!(client.call("echo", b"ok".to_vec()).await.unwrap(), b"ok");
}

#[tokio::test]
async fn dropping_a_response_stream_cancels_its_handler() {
    let h = hanging_server().await;
    let client = h.server.client().await;
    let mut responses = client
        .call_server_streaming("hang_stream", vec![])
        .await
        .unwrap();
    assert_eq!(responses.next().await.unwrap().unwrap(), b"first");
    h.started.notified().await;
    drop(responses);
    h.handler_cancelled().await;
}

#[tokio::test]
async fn server_enforces_the_deadline_it_was_told() {
    // A raw client that never gives up: only the 300 ms deadline in the
    // header can end the call, so the server must cancel the handler and
    // answer DeadlineExceeded itself.
    use bytes::BytesMut;
    use rpcnet::wire::{CallKind, Frame, RequestHeader, StatusCode};

    let h = hanging_server().await;
    let (_endpoint, mut raw) = crate::abuse::raw_connect(h.server.addr).await;
    let mut request = BytesMut::new();
    Frame::Header(RequestHeader {
        request_id: 1,
        kind: CallKind::Unary,
        deadline_ms: 300,
        method: "hang".into(),
        metadata: vec![],
        schema: None,
    })
    .encode(&mut request);
    Frame::Message(bytes::Bytes::new()).encode(&mut request);
    Frame::End.encode(&mut request);
    let status = crate::abuse::send_raw(&mut raw, request.to_vec(), true).await;
    assert_eq!(status, StatusCode::DeadlineExceeded);
    h.handler_cancelled().await;
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_calls_finish() {
    let Gated {
        mut server,
        started,
        release,
    } = gated_server().await;
    let client = server.client().await;
    let in_flight = slow_call(&client);
    started.notified().await;
    server.shutdown.shutdown();

    // New calls are refused while draining...
    let refused = promptly("refusal", client.call("slow", vec![]))
        .await
        .unwrap_err();
    assert!(matches!(refused, RpcError::Unavailable(_)), "{refused:?}");
    // ...the in-flight one completes...
    release.notify_one();
    assert_eq!(in_flight.await.unwrap().unwrap(), b"done");
    // ...and start() returns by itself.
    let task = server.task.take().unwrap();
    promptly("server stop", task).await.unwrap().unwrap();
    let after = client.call("slow", vec![]).await.unwrap_err();
    assert!(
        matches!(
            after,
            RpcError::Unavailable(_) | RpcError::ConnectionError(_)
        ),
        "{after:?}"
    );
}

#[tokio::test]
async fn drain_timeout_bounds_graceful_shutdown() {
    let started = Arc::new(Notify::new());
    let server = RpcServer::new(server_config().with_drain_timeout(Duration::from_millis(300)));
    let s = started.clone();
    server
        .register("forever", move |_| {
            let s = s.clone();
            async move {
                s.notify_one();
                std::future::pending::<()>().await;
                Ok(vec![])
            }
        })
        .await;
    let mut server = spawn(server);
    let client = server.client().await;
    let call = tokio::spawn(async move {
        client
            .call_with_timeout("forever", vec![], Duration::from_secs(30))
            .await
    });
    started.notified().await;
    server.shutdown.shutdown();
    let task = server.task.take().unwrap();
    promptly("server stop after drain timeout", task)
        .await
        .unwrap()
        .unwrap();
    let err = promptly("client error", call).await.unwrap().unwrap_err();
    assert!(
        !matches!(err, RpcError::Timeout),
        "the call must fail fast, got {err:?}"
    );
}

#[tokio::test]
async fn start_with_shutdown_stops_on_the_signal() {
    let mut server = RpcServer::new(server_config());
    server.register("echo", |p| async move { Ok(p) }).await;
    let quic = server.bind().unwrap();
    let addr = server.socket_addr.unwrap();
    let (stop, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .start_with_shutdown(quic, async move {
                let _ = signal.await;
            })
            .await
    });
    let client = RpcClient::connect(addr, client_config()).await.unwrap();
    assert_eq!(client.call("echo", b"x".to_vec()).await.unwrap(), b"x");
    stop.send(()).unwrap();
    promptly("server stop", task).await.unwrap().unwrap();
}

#[tokio::test]
async fn keep_alive_holds_an_idle_connection_open_from_either_end() {
    // Idle timeout 1 s everywhere; keep-alive pings every 200 ms where
    // enabled. Idle connections without pings from either end close after
    // one second; a ping from either end keeps them open.
    let idle = Duration::from_secs(1);
    let ka = Duration::from_millis(200);
    async fn echo(config: rpcnet::RpcConfig) -> TestServer {
        let server = RpcServer::new(config);
        server.register("echo", |p| async move { Ok(p) }).await;
        spawn(server)
    }
    let plain = echo(server_config().with_idle_timeout(idle)).await;
    let pinging = echo(
        server_config()
            .with_idle_timeout(idle)
            .with_keep_alive_interval(ka),
    )
    .await;
    let connect = |addr, keep_alive: bool| {
        let mut config = client_config().with_idle_timeout(idle);
        if keep_alive {
            config = config.with_keep_alive_interval(ka);
        }
        async move { RpcClient::connect(addr, config).await.unwrap() }
    };
    let client_pings = connect(plain.addr, true).await;
    let nobody_pings = connect(plain.addr, false).await;
    let server_pings = connect(pinging.addr, false).await;
    for c in [&client_pings, &nobody_pings, &server_pings] {
        c.call("echo", vec![]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        client_pings.call("echo", b"a".to_vec()).await.unwrap(),
        b"a"
    );
    assert_eq!(
        server_pings.call("echo", b"b".to_vec()).await.unwrap(),
        b"b"
    );
    // Nothing in flight and nobody pinging: that connection closed at its
    // idle timeout, and the next call reconnects.
    assert!(client_pings.is_connected() && server_pings.is_connected());
    assert!(!nobody_pings.is_connected());
    assert_eq!(
        nobody_pings.call("echo", b"c".to_vec()).await.unwrap(),
        b"c"
    );
    assert!(nobody_pings.is_connected());
}
