//! Every call mode, concurrency, empty and large messages, remote errors.

use std::sync::Arc;

use async_stream::stream;
use futures::{stream, StreamExt};
use rpcnet::{RpcClient, RpcError, RpcServer};

use crate::support::*;

async fn echo_server() -> TestServer {
    let server = RpcServer::new(server_config());
    server.register("echo", |p| async move { Ok(p) }).await;
    server
        .register("fail", |_| async move {
            Err(RpcError::ConfigError("the handler says no".into()))
        })
        .await;
    server
        .register("panic", |_| async move { panic!("handler exploded") })
        .await;
    server
        .register_streaming("echo_stream", |mut reqs| async move {
            stream! {
                while let Some(payload) = reqs.next().await {
                    yield Ok(payload);
                }
            }
        })
        .await;
    server
        .register_streaming("count", |mut reqs| async move {
            stream! {
                let n: u32 = reqs.next().await.map(|b| u32::from_be_bytes(b[..4].try_into().unwrap())).unwrap_or(0);
                for i in 0..n {
                    yield Ok(i.to_be_bytes().to_vec());
                }
            }
        })
        .await;
    server
        .register_streaming("sum", |mut reqs| async move {
            stream! {
                let (mut total, mut count) = (0u64, 0u64);
                while let Some(chunk) = reqs.next().await {
                    total += chunk.iter().map(|&b| b as u64).sum::<u64>();
                    count += 1;
                }
                yield Ok(format!("{count}:{total}").into_bytes());
            }
        })
        .await;
    server
        .register_streaming("mixed", |_reqs| async move {
            stream! {
                yield Ok(b"one".to_vec());
                yield Err(RpcError::ConfigError("item two failed".into()));
                yield Ok(b"three".to_vec());
            }
        })
        .await;
    server
        .register_streaming("panic_stream", |_reqs| async move {
            stream! {
                yield Ok(b"before".to_vec());
                panic!("stream exploded");
            }
        })
        .await;
    spawn(server)
}

#[tokio::test]
async fn unary_call_round_trips() {
    let server = echo_server().await;
    let client = server.client().await;
    assert_eq!(
        client.call("echo", b"hello".to_vec()).await.unwrap(),
        b"hello"
    );
    assert_eq!(client.call("echo", vec![]).await.unwrap(), Vec::<u8>::new());
}

#[tokio::test]
async fn request_ids_increase_per_call() {
    let server = echo_server().await;
    let client = server.client().await;
    let first = client.next_id();
    client.call("echo", vec![]).await.unwrap();
    client.call("echo", vec![]).await.unwrap();
    assert_eq!(client.next_id(), first + 2);
}

#[tokio::test]
async fn bidirectional_stream_echoes_every_message_including_empty_ones() {
    let server = echo_server().await;
    let client = server.client().await;
    let sent = vec![b"a".to_vec(), vec![], b"ccc".to_vec(), vec![], vec![]];
    let responses = client
        .call_streaming("echo_stream", stream::iter(sent.clone()))
        .await
        .unwrap();
    let got: Vec<Vec<u8>> = responses.map(|r| r.unwrap()).collect().await;
    assert_eq!(got, sent);
}

#[tokio::test]
async fn bidirectional_directions_are_independent() {
    // The client sends request n+1 only after receiving response n: this
    // deadlocks unless responses flow while the request stream is open.
    let server = echo_server().await;
    let client = server.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    tx.send(b"0".to_vec()).await.unwrap();
    let mut responses = client
        .call_streaming(
            "echo_stream",
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )
        .await
        .unwrap();
    for i in 1..=50u32 {
        let got = promptly("echo", responses.next()).await.unwrap().unwrap();
        assert_eq!(got, (i - 1).to_string().into_bytes());
        tx.send(i.to_string().into_bytes()).await.unwrap();
    }
    drop(tx);
    let rest: Vec<_> = responses.collect().await;
    assert_eq!(rest.len(), 1);
}

#[tokio::test]
async fn server_streaming_yields_all_items_in_order() {
    let server = echo_server().await;
    let client = server.client().await;
    let responses = client
        .call_server_streaming("count", 1000u32.to_be_bytes().to_vec())
        .await
        .unwrap();
    let got: Vec<u32> = responses
        .map(|r| u32::from_be_bytes(r.unwrap()[..].try_into().unwrap()))
        .collect()
        .await;
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn client_streaming_aggregates_uploads_including_empty_ones() {
    let server = echo_server().await;
    let client = server.client().await;
    let uploads = vec![vec![1u8; 10], vec![], vec![2u8; 5], vec![]];
    let digest = client
        .call_client_streaming("sum", stream::iter(uploads))
        .await
        .unwrap();
    assert_eq!(digest, b"4:20");
    let none = client
        .call_client_streaming("sum", stream::iter(Vec::<Vec<u8>>::new()))
        .await
        .unwrap();
    assert_eq!(none, b"0:0");
}

#[tokio::test]
async fn thousand_concurrent_calls_share_one_connection() {
    let server = echo_server().await;
    let client = Arc::new(server.client().await);
    let calls = (0..1000u32).map(|i| {
        let client = client.clone();
        async move { (i, client.call("echo", i.to_be_bytes().to_vec()).await) }
    });
    let results = futures::future::join_all(calls).await;
    for (i, result) in results {
        assert_eq!(result.unwrap(), i.to_be_bytes().to_vec());
    }
}

#[tokio::test]
async fn unknown_method_is_a_typed_error_in_every_mode() {
    let server = echo_server().await;
    let client = server.client().await;
    let err = client.call("nope", vec![]).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::UnknownMethod(m) if m == "nope"),
        "{err:?}"
    );

    let mut s = client
        .call_streaming("nope", stream::iter(vec![vec![1u8]]))
        .await
        .unwrap();
    let err = promptly("streaming error", s.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, RpcError::UnknownMethod(_)), "{err:?}");
    assert!(s.next().await.is_none());

    // A request stream that never ends still gets the answer at once.
    let mut s = client
        .call_streaming("nope", stream::pending::<Vec<u8>>())
        .await
        .unwrap();
    let err = promptly("streaming error", s.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, RpcError::UnknownMethod(_)), "{err:?}");

    let mut s = client.call_server_streaming("nope", vec![]).await.unwrap();
    assert!(matches!(
        s.next().await.unwrap(),
        Err(RpcError::UnknownMethod(_))
    ));
    let err = client
        .call_client_streaming("nope", stream::iter(vec![vec![]]))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::UnknownMethod(_)), "{err:?}");
}

#[tokio::test]
async fn handler_error_text_reaches_the_client() {
    let server = echo_server().await;
    let client = server.client().await;
    let err = client.call("fail", vec![]).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::RemoteError(m) if m.contains("the handler says no")),
        "{err:?}"
    );
}

#[tokio::test]
async fn stream_error_items_arrive_as_errors_not_data() {
    let server = echo_server().await;
    let client = server.client().await;
    let items: Vec<_> = client
        .call_server_streaming("mixed", vec![])
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().unwrap(), b"one");
    assert!(matches!(&items[1], Err(RpcError::RemoteError(m)) if m.contains("item two failed")));
    assert_eq!(items[2].as_ref().unwrap(), b"three");
}

#[tokio::test]
async fn handler_panic_gives_a_prompt_error_and_the_server_keeps_serving() {
    let server = echo_server().await;
    let client = server.client().await;
    let err = promptly("panic error", client.call("panic", vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::Internal(m) if m.contains("handler exploded")),
        "{err:?}"
    );

    let items: Vec<_> = client
        .call_server_streaming("panic_stream", vec![])
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items[0].as_ref().unwrap(), b"before");
    assert!(matches!(&items[1], Err(RpcError::Internal(m)) if m.contains("stream exploded")));

    assert_eq!(
        client.call("echo", b"still here".to_vec()).await.unwrap(),
        b"still here"
    );
}

#[tokio::test]
async fn reregistering_a_method_replaces_the_handler() {
    let server = RpcServer::new(server_config());
    server
        .register("v", |_| async move { Ok(b"1".to_vec()) })
        .await;
    server
        .register("v", |_| async move { Ok(b"2".to_vec()) })
        .await;
    let server = spawn(server);
    assert_eq!(server.client().await.call("v", vec![]).await.unwrap(), b"2");
}

#[tokio::test]
async fn sixty_four_mib_message_with_a_raised_limit() {
    const LIMIT: usize = 65 * 1024 * 1024;
    let server = RpcServer::new(server_config().with_max_message_size(LIMIT));
    server
        .register("len", |p| async move {
            Ok((p.len() as u64).to_be_bytes().to_vec())
        })
        .await;
    server.register("echo", |p| async move { Ok(p) }).await;
    let server = spawn(server);
    let client = RpcClient::connect(server.addr, client_config().with_max_message_size(LIMIT))
        .await
        .unwrap();
    let big: Vec<u8> = (0..64 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let len = client.call("len", big.clone()).await.unwrap();
    assert_eq!(
        u64::from_be_bytes(len[..].try_into().unwrap()),
        big.len() as u64
    );
    let back = client.call("echo", big.clone()).await.unwrap();
    assert!(back == big, "64 MiB echo differs");
}

#[tokio::test]
async fn messages_above_the_limit_are_refused_with_a_clear_error() {
    const LIMIT: usize = 1024 * 1024;
    let server = RpcServer::new(server_config().with_max_message_size(LIMIT));
    server.register("echo", |p| async move { Ok(p) }).await;
    let server = spawn(server);

    // Caught by the client before sending.
    let strict = RpcClient::connect(server.addr, client_config().with_max_message_size(LIMIT))
        .await
        .unwrap();
    let err = strict.call("echo", vec![0; LIMIT + 1]).await.unwrap_err();
    assert!(
        matches!(err, RpcError::MessageTooLarge { size, limit } if size == LIMIT + 1 && limit == LIMIT),
        "{err:?}"
    );

    // A client with a larger limit sends it; the server refuses it by its own limit.
    let lax = RpcClient::connect(
        server.addr,
        client_config().with_max_message_size(4 * LIMIT),
    )
    .await
    .unwrap();
    let err = lax.call("echo", vec![0; LIMIT + 1]).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::ProtocolError(m) if m.contains("max_message_size")),
        "{err:?}"
    );
    let mut s = lax
        .call_streaming("echo", stream::iter(vec![vec![0; 2 * LIMIT]]))
        .await
        .unwrap();
    assert!(s.next().await.unwrap().is_err());

    // Exactly at the limit is fine, and the server is unaffected.
    assert_eq!(lax.call("echo", vec![7; LIMIT]).await.unwrap().len(), LIMIT);

    // A response above the client's limit is refused by the client.
    let tiny = RpcClient::connect(server.addr, client_config().with_max_message_size(16))
        .await
        .unwrap();
    let err = tiny.call("echo", vec![1; 16]).await;
    assert!(err.is_ok());
    let server2 = RpcServer::new(server_config());
    server2
        .register("big", |_| async move { Ok(vec![0; 100]) })
        .await;
    let server2 = spawn(server2);
    let tiny = RpcClient::connect(server2.addr, client_config().with_max_message_size(16))
        .await
        .unwrap();
    let err = tiny.call("big", vec![]).await.unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::MessageTooLarge {
                size: 100,
                limit: 16
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn transport_tuning_knobs_keep_calls_working() {
    // The smallest MTU ceiling, receive ring and socket buffer still carry
    // a 1 MiB message both ways; the defaults (9001-byte ceiling, 4 MiB
    // socket buffer) are covered by every other test.
    let server = RpcServer::new(
        server_config()
            .with_max_mtu(1228)
            .with_io_recv_buffer(64 * 1024)
            .with_socket_recv_buffer(64 * 1024),
    );
    server.register("echo", |p| async move { Ok(p) }).await;
    let server = spawn(server);
    let config = client_config()
        .with_max_mtu(1228)
        .with_io_recv_buffer(64 * 1024)
        .with_socket_recv_buffer(64 * 1024)
        .with_stream_window(64 * 1024)
        .with_send_buffer_size(64 * 1024);
    let client = RpcClient::connect(server.addr, config).await.unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    assert!(client.call("echo", big.clone()).await.unwrap() == big);
}

#[tokio::test]
async fn concurrent_calls_per_connection_are_bounded_by_the_server() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let server = RpcServer::new(server_config().with_max_concurrent_streams(8));
    let (r, p) = (running.clone(), peak.clone());
    server
        .register("work", move |_| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok(vec![])
            }
        })
        .await;
    let server = spawn(server);
    let client = server.client().await;
    let calls: Vec<_> = (0..100).map(|_| client.call("work", vec![])).collect();
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        (1..=8).contains(&peak),
        "peak concurrency {peak} exceeds the limit of 8"
    );
}

#[tokio::test]
async fn a_client_runs_as_many_calls_at_once_as_the_limits_allow() {
    // Every handler waits until all 300 are running: this only completes if
    // one client really has 300 calls open at once (s2n-quic's own default
    // would have held a client to 100).
    const CALLS: usize = 300;
    let all_running = Arc::new(tokio::sync::Barrier::new(CALLS));
    let server = RpcServer::new(server_config());
    server
        .register("gather", move |_| {
            let all_running = all_running.clone();
            async move {
                all_running.wait().await;
                Ok(vec![])
            }
        })
        .await;
    let server = spawn(server);
    let client = server.client().await;
    let calls: Vec<_> = (0..CALLS).map(|_| client.call("gather", vec![])).collect();
    for result in promptly("300 concurrent calls", futures::future::join_all(calls)).await {
        result.unwrap();
    }
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_as_unavailable() {
    let server = RpcServer::new(server_config().with_max_connections(1));
    server.register("echo", |p| async move { Ok(p) }).await;
    let server = spawn(server);
    let first = server.client().await;
    assert_eq!(first.call("echo", b"1".to_vec()).await.unwrap(), b"1");
    let second = RpcClient::connect(server.addr, client_config()).await;
    let refused = match second {
        Err(e) => e,
        Ok(c) => c.call("echo", vec![]).await.unwrap_err(),
    };
    assert!(matches!(refused, RpcError::Unavailable(_)), "{refused:?}");
    assert_eq!(
        first.call("echo", b"still".to_vec()).await.unwrap(),
        b"still"
    );
}

#[tokio::test]
async fn handlers_see_the_call_header_and_metadata() {
    use rpcnet::CallInfo;
    let server = RpcServer::new(server_config());
    server
        .register("whoami", |_| async move {
            let call = CallInfo::current().expect("inside a handler");
            let token = call.metadata_value("auth").unwrap_or_default().to_vec();
            Ok(format!(
                "{} {} {}",
                call.method,
                call.deadline_ms > 0,
                String::from_utf8_lossy(&token)
            )
            .into_bytes())
        })
        .await;
    server
        .register_streaming("whoami_stream", |_reqs| async move {
            stream! {
                // Polled inside the call's scope too.
                let call = CallInfo::current().expect("inside a response stream");
                yield Ok(format!("{:?} {}", call.kind, call.request_id > 0).into_bytes());
            }
        })
        .await;
    let server = spawn(server);
    let client = server.client().await;
    let reply = client
        .call_with_metadata(
            "whoami",
            vec![],
            vec![("auth".into(), b"s3cret".to_vec())],
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(reply, b"whoami true s3cret");
    let items: Vec<_> = client
        .call_server_streaming("whoami_stream", vec![])
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items[0].as_ref().unwrap(), b"ServerStreaming true");
    assert!(CallInfo::current().is_none());
}

#[tokio::test]
async fn clients_configured_alike_share_one_endpoint_and_outlive_each_other() {
    let server = echo_server().await;
    let first = server.client().await;
    let second = server.client().await;
    assert_eq!(first.local_addr().unwrap(), second.local_addr().unwrap());
    let own = RpcClient::connect(server.addr, client_config().with_shared_endpoint(false))
        .await
        .unwrap();
    assert_ne!(own.local_addr().unwrap(), first.local_addr().unwrap());

    // Dropping one client closes its connection, not the shared endpoint.
    drop(first);
    assert_eq!(
        second.call("echo", b"still".to_vec()).await.unwrap(),
        b"still"
    );
    assert_eq!(own.call("echo", b"own".to_vec()).await.unwrap(), b"own");
}

/// The one call seam: `invoke` with a call described by `CallOptions`.
async fn whoami_server() -> TestServer {
    use rpcnet::CallInfo;
    let server = RpcServer::new(server_config());
    let describe = || {
        let call = CallInfo::current().expect("inside a call");
        format!(
            "{:?} {} {}",
            call.kind,
            call.deadline_ms,
            String::from_utf8_lossy(call.metadata_value("trace-id").unwrap_or_default())
        )
        .into_bytes()
    };
    server
        .register("whoami", move |_| async move { Ok(describe()) })
        .await;
    server
        .register_streaming("whoami_stream", move |mut reqs| async move {
            stream! {
                let mut seen = 0;
                while reqs.next().await.is_some() {
                    seen += 1;
                }
                yield Ok(describe());
                yield Ok(vec![seen]);
            }
        })
        .await;
    server
        .register_streaming("forever", |_reqs| async move {
            stream! {
                loop {
                    yield Ok(vec![1]);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        })
        .await;
    spawn(server)
}

#[tokio::test]
async fn a_call_described_by_options_reaches_the_handler_with_its_metadata_and_deadline() {
    use rpcnet::{Body, CallOptions};
    let server = whoami_server().await;
    let client = server.client().await;
    let options = CallOptions::new()
        .with_timeout(std::time::Duration::from_millis(4321))
        .with_metadata("trace-id", b"t-1".to_vec())
        .idempotent(true);

    // One message, read as one response: a unary call through the seam.
    let mut responses = client
        .invoke("whoami", &options, Body::Message(vec![]))
        .await
        .unwrap();
    assert_eq!(
        responses.single().await.unwrap(),
        b"ServerStreaming 4321 t-1"
    );

    // One message, responses as a stream.
    let items: Vec<_> = client
        .invoke("whoami_stream", &options, Body::from(vec![7]))
        .await
        .unwrap()
        .collect()
        .await;
    let items: Vec<_> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(items, [b"ServerStreaming 4321 t-1".to_vec(), vec![1]]);

    // A request stream.
    let requests = stream::iter(vec![vec![1], vec![2], vec![3]]);
    let items: Vec<_> = client
        .invoke("whoami_stream", &options, Body::stream(requests))
        .await
        .unwrap()
        .collect()
        .await;
    let items: Vec<_> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(items, [b"Bidirectional 4321 t-1".to_vec(), vec![3]]);

    // Without a timeout a streamed call has no deadline (as the guide's
    // `call_streaming`), and the guide's modes announce their own kinds.
    let items: Vec<_> = client
        .invoke("whoami_stream", &CallOptions::new(), Body::Message(vec![]))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items[0].as_ref().unwrap(), b"ServerStreaming 0 ");
    let reply = client
        .call_client_streaming("whoami_stream", stream::iter(vec![vec![1]]))
        .await;
    // Two responses to a client-streaming call are refused by the reader.
    assert!(
        matches!(reply, Err(RpcError::ProtocolError(_))),
        "{reply:?}"
    );
    let reply = client.call("whoami", vec![]).await.unwrap();
    assert!(
        String::from_utf8_lossy(&reply).starts_with("Unary "),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_streaming_call_with_a_timeout_is_ended_by_the_server_at_its_deadline() {
    use rpcnet::{Body, CallOptions};
    let server = whoami_server().await;
    let client = server.client().await;
    let options = CallOptions::new().with_timeout(std::time::Duration::from_millis(200));
    let responses = client
        .invoke("forever", &options, Body::Message(vec![]))
        .await
        .unwrap();
    let items: Vec<_> = promptly("a stream past its deadline", responses.collect()).await;
    let last = items.last().expect("a final status");
    assert!(matches!(last, Err(RpcError::Timeout)), "{last:?}");
    assert!(items.len() > 1, "some items arrived before the deadline");
}

#[tokio::test]
async fn one_writer_keeps_order_across_small_batched_and_large_unbatched_messages() {
    let server = echo_server().await;
    let client = server.client().await;
    // Small messages are gathered into batches, large ones (16 KiB and
    // more) go as their own buffers: order and content must survive both
    // ways, on the client's upload and on the server's response stream.
    let sizes = [
        0usize,
        3,
        16 * 1024,
        1,
        70_000,
        16 * 1024 - 1,
        0,
        200_000,
        5,
    ];
    let requests: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| vec![i as u8; n])
        .collect();
    let responses = client
        .call_streaming("echo_stream", stream::iter(requests.clone()))
        .await
        .unwrap();
    let got: Vec<_> = promptly("echoed messages", responses.collect::<Vec<_>>()).await;
    let got: Vec<Vec<u8>> = got.into_iter().map(Result::unwrap).collect();
    assert_eq!(got, requests);
}
