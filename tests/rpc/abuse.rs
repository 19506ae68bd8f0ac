//! A raw QUIC peer breaking the protocol; slow consumers. The server must
//! answer with errors, allocate nothing on a peer's say-so, and keep
//! serving everyone else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_stream::stream;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use rpcnet::wire::{CallKind, Frame, FrameDecoder, RequestHeader, StatusCode, ALPN};
use rpcnet::{RpcError, RpcServer};
use s2n_quic::client::Connect;
use s2n_quic::provider::tls::default as s2n_tls;

use crate::support::*;

pub(crate) async fn raw_connect(addr: SocketAddr) -> (s2n_quic::Client, s2n_quic::Connection) {
    raw_connect_with_limits(addr, s2n_quic::provider::limits::Limits::new()).await
}

/// [`raw_connect`] with transport limits (e.g. more streams open at once
/// than s2n-quic's default of 100).
pub(crate) async fn raw_connect_with_limits(
    addr: SocketAddr,
    limits: s2n_quic::provider::limits::Limits,
) -> (s2n_quic::Client, s2n_quic::Connection) {
    let ca = std::fs::read_to_string(cert("ca.pem")).unwrap();
    let tls = s2n_tls::Client::builder()
        .with_application_protocols([ALPN])
        .unwrap()
        .with_empty_trust_store()
        .unwrap()
        .with_certificate(ca)
        .unwrap()
        .build()
        .unwrap();
    let endpoint = s2n_quic::Client::builder()
        .with_tls(tls)
        .unwrap()
        .with_limits(limits)
        .unwrap()
        .with_io("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let connection = endpoint
        .connect(Connect::new(addr).with_server_name("localhost"))
        .await
        .unwrap();
    (endpoint, connection)
}

fn header(method: &str) -> Frame {
    Frame::Header(RequestHeader {
        request_id: 1,
        kind: CallKind::Unary,
        deadline_ms: 0,
        method: method.into(),
        metadata: vec![],
        schema: None,
    })
}

/// Sends raw bytes on a new stream and returns the status the server answers with.
pub(crate) async fn send_raw(
    connection: &mut s2n_quic::Connection,
    bytes: Vec<u8>,
    fin: bool,
) -> StatusCode {
    let mut stream = connection.open_bidirectional_stream().await.unwrap();
    stream.send(Bytes::from(bytes)).await.unwrap();
    if fin {
        stream.finish().unwrap();
    }
    let decoder = FrameDecoder::new(1 << 20, 1 << 14);
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = decoder.decode(&mut buf).unwrap() {
            match frame {
                Frame::Status(s) => return s.code,
                Frame::Message(_) => continue,
                other => panic!("expected a status, got {other:?}"),
            }
        }
        match promptly("server answer", stream.receive()).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            other => panic!("stream ended without a status: {other:?}"),
        }
    }
}

async fn echo_server(config: rpcnet::RpcConfig) -> TestServer {
    let server = RpcServer::new(config);
    server.register("echo", |p| async move { Ok(p) }).await;
    spawn(server)
}

#[tokio::test]
async fn malformed_frames_get_protocol_errors_and_the_connection_keeps_working() {
    let server = echo_server(server_config()).await;
    let (_endpoint, mut raw) = raw_connect(server.addr).await;
    let bystander = server.client().await;

    // Unknown frame type.
    assert_eq!(
        send_raw(&mut raw, vec![0x7f, 0, 0, 0, 0], false).await,
        StatusCode::ProtocolError
    );
    // A message before any header.
    assert_eq!(
        send_raw(&mut raw, vec![0x02, 0, 0, 0, 1, 9], false).await,
        StatusCode::ProtocolError
    );
    // A header whose payload is garbage.
    assert_eq!(
        send_raw(&mut raw, vec![0x01, 0, 0, 0, 3, 1, 2, 3], false).await,
        StatusCode::ProtocolError
    );
    // A valid header followed by something that is not a message.
    let mut bytes = BytesMut::new();
    header("echo").encode(&mut bytes);
    Frame::Status(rpcnet::wire::Status::ok()).encode(&mut bytes);
    assert_eq!(
        send_raw(&mut raw, bytes.to_vec(), false).await,
        StatusCode::ProtocolError
    );
    // A request cut off by FIN inside a frame.
    let mut bytes = BytesMut::new();
    header("echo").encode(&mut bytes);
    bytes.extend_from_slice(&[0x02, 0, 0, 0, 10, 1, 2]);
    assert_eq!(
        send_raw(&mut raw, bytes.to_vec(), true).await,
        StatusCode::ProtocolError
    );

    // The same raw connection can still make a well-formed call.
    assert_eq!(
        send_raw(&mut raw, echo_request(b"fine"), false).await,
        StatusCode::Ok
    );
    assert_eq!(
        bystander
            .call("echo", b"unaffected".to_vec())
            .await
            .unwrap(),
        b"unaffected"
    );
}

#[tokio::test]
async fn huge_length_prefixes_are_refused_before_allocating() {
    let server = echo_server(server_config()).await;
    let (_endpoint, mut raw) = raw_connect(server.addr).await;
    let bystander = server.client().await;

    // A 4 GiB message announced after a valid header: refused by length alone.
    let mut bytes = BytesMut::new();
    header("echo").encode(&mut bytes);
    bytes.extend_from_slice(&[0x02, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        send_raw(&mut raw, bytes.to_vec(), false).await,
        StatusCode::MessageTooLarge
    );
    // A 4 GiB header.
    assert_eq!(
        send_raw(&mut raw, vec![0x01, 0xff, 0xff, 0xff, 0xff], false).await,
        StatusCode::ProtocolError
    );
    // Metadata beyond max_header_size.
    let big = Frame::Header(RequestHeader {
        request_id: 1,
        kind: CallKind::Unary,
        deadline_ms: 0,
        method: "echo".into(),
        metadata: vec![("k".into(), vec![0; 40_000])],
        schema: None,
    });
    let mut bytes = BytesMut::new();
    big.encode(&mut bytes);
    assert_eq!(
        send_raw(&mut raw, bytes.to_vec(), false).await,
        StatusCode::ProtocolError
    );

    assert_eq!(bystander.call("echo", b"ok".to_vec()).await.unwrap(), b"ok");
}

#[tokio::test]
async fn a_peer_vanishing_mid_request_does_not_disturb_the_server() {
    let server = echo_server(server_config()).await;
    let bystander = server.client().await;
    for _ in 0..5 {
        let (endpoint, mut raw) = raw_connect(server.addr).await;
        let mut stream = raw.open_bidirectional_stream().await.unwrap();
        let mut bytes = BytesMut::new();
        header("echo").encode(&mut bytes);
        bytes.put_u8(0x02);
        bytes.put_u32(1000);
        bytes.extend_from_slice(&[1; 100]);
        stream.send(bytes.freeze()).await.unwrap();
        stream.flush().await.unwrap();
        raw.close(0u32.into());
        drop((stream, raw, endpoint));
    }
    assert_eq!(bystander.call("echo", b"ok".to_vec()).await.unwrap(), b"ok");
}

#[tokio::test]
async fn a_client_gets_a_typed_error_when_the_server_vanishes_mid_stream() {
    let server = RpcServer::new(server_config());
    server
        .register_streaming("ticks", |_reqs| async move {
            stream! {
                for i in 0u32.. {
                    yield Ok(i.to_be_bytes().to_vec());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
        .await;
    let mut server = spawn(server);
    let client = server.client().await;
    let mut ticks = client.call_server_streaming("ticks", vec![]).await.unwrap();
    assert!(ticks.next().await.unwrap().is_ok());
    // Kill the server outright (no graceful shutdown).
    server.task.take().unwrap().abort();
    let outcome = promptly("stream error", async {
        loop {
            match ticks.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        }
    })
    .await;
    let err = outcome
        .expect("an error item, not a silent end")
        .unwrap_err();
    assert!(
        matches!(err, RpcError::ConnectionError(_) | RpcError::StreamError(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_slow_consumer_bounds_what_the_server_produces() {
    const TOTAL: u64 = 100_000;
    let produced = Arc::new(AtomicU64::new(0));
    let server = RpcServer::new(server_config().with_send_buffer_size(256 * 1024));
    let p = produced.clone();
    server
        .register_streaming("firehose", move |_reqs| {
            let p = p.clone();
            async move {
                stream! {
                    for _ in 0..TOTAL {
                        p.fetch_add(1, Ordering::Relaxed);
                        yield Ok(vec![0u8; 1024]);
                    }
                }
            }
        })
        .await;
    let server = spawn(server);
    // The client lets 256 KiB be in flight per stream.
    let client =
        rpcnet::RpcClient::connect(server.addr, client_config().with_stream_window(256 * 1024))
            .await
            .unwrap();
    let mut items = client
        .call_server_streaming("firehose", vec![])
        .await
        .unwrap();
    for _ in 0..10 {
        items.next().await.unwrap().unwrap();
    }
    // Stop reading; wait until the producer stalls (its count stops moving).
    let mut last = produced.load(Ordering::Relaxed);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = produced.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    // In flight at most: the client's stream window (256 KiB), the
    // server's send buffer (256 KiB) and one 64 KiB write batch: ~560 items.
    let stalled_at = produced.load(Ordering::Relaxed);
    assert!(
        stalled_at < 1_000,
        "producer ran ahead to {stalled_at} of {TOTAL} items"
    );
    // Reading resumes the producer and everything arrives.
    let mut received = 10;
    while let Some(item) = items.next().await {
        item.unwrap();
        received += 1;
    }
    assert_eq!(received, TOTAL);
}

/// Opens the raw connection's control stream and sends `frames` on it,
/// waiting until the server has acknowledged them (or closed the connection).
async fn send_control(
    connection: &mut s2n_quic::Connection,
    frames: &[Frame],
) -> (
    s2n_quic::stream::SendStream,
    Result<(), s2n_quic::stream::Error>,
) {
    let mut control = connection.open_send_stream().await.unwrap();
    let mut bytes = BytesMut::new();
    for frame in frames {
        frame.encode(&mut bytes);
    }
    control.send(bytes.freeze()).await.unwrap();
    let flushed = promptly("control data acknowledged", control.flush()).await;
    (control, flushed)
}

fn echo_request(payload: &'static [u8]) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    header("echo").encode(&mut bytes);
    Frame::Message(Bytes::from_static(payload)).encode(&mut bytes);
    Frame::End.encode(&mut bytes);
    bytes.to_vec()
}

#[tokio::test]
async fn a_cancel_that_arrives_before_its_call_refuses_the_call() {
    let server = echo_server(server_config()).await;
    let (_endpoint, mut raw) = raw_connect(server.addr).await;
    // Client-initiated bidirectional stream ids are 0, 4, 8, ...: cancel the second.
    let (_control, flushed) = send_control(&mut raw, &[Frame::Cancel(4)]).await;
    flushed.unwrap();
    assert_eq!(
        send_raw(&mut raw, echo_request(b"first"), true).await,
        StatusCode::Ok
    );

    let mut second = raw.open_bidirectional_stream().await.unwrap();
    assert_eq!(second.id(), 4);
    second
        .send(Bytes::from(echo_request(b"second")))
        .await
        .unwrap();
    second.finish().unwrap();
    match promptly("refusal", second.receive()).await {
        Err(s2n_quic::stream::Error::StreamReset { error, .. }) => {
            assert_eq!(u64::from(error), u64::from(rpcnet::wire::reset::CANCELLED))
        }
        other => panic!("expected the cancelled call to be reset, got {other:?}"),
    }
    // Later calls are served.
    assert_eq!(
        send_raw(&mut raw, echo_request(b"third"), true).await,
        StatusCode::Ok
    );
}

#[tokio::test]
async fn a_broken_control_stream_closes_only_its_connection() {
    let server = echo_server(server_config()).await;
    let bystander = server.client().await;
    for garbage in [
        // A frame that does not belong on the control stream.
        vec![Frame::Message(Bytes::from_static(b"hi"))],
        // More early cancels than the client may have calls open (512).
        (1..=513u64)
            .map(|i| Frame::Cancel(i * 4 + 1_000_000))
            .collect(),
    ] {
        let (_endpoint, mut raw) = raw_connect(server.addr).await;
        // The server may close the connection before acknowledging it all.
        let _control = send_control(&mut raw, &garbage).await;
        let closed = async {
            loop {
                match raw.open_bidirectional_stream().await {
                    Ok(mut stream) => {
                        let _ = stream.send(Bytes::from(echo_request(b"x"))).await;
                        if stream.receive().await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        };
        promptly("the offending connection closes", closed).await;
        assert!(raw.open_bidirectional_stream().await.is_err());
    }
    assert_eq!(
        bystander
            .call("echo", b"still here".to_vec())
            .await
            .unwrap(),
        b"still here"
    );
}
