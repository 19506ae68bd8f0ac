//! Server middleware: tower layers around every handler, in every call mode.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rpcnet::{RpcClient, RpcError, RpcServer, ServerRequest};
use tokio::sync::{Notify, Semaphore};

use crate::support::*;

/// Only calls carrying `token: secret` pass.
fn auth_layer() -> tower::filter::FilterLayer<
    impl Fn(ServerRequest) -> Result<ServerRequest, RpcError> + Clone + Send + Sync + 'static,
> {
    tower::filter::FilterLayer::new(|request: ServerRequest| {
        match request.call.metadata_value("token") {
            Some(b"secret") => Ok(request),
            _ => Err(RpcError::PermissionDenied(format!(
                "{} needs a valid token",
                request.call.method
            ))),
        }
    })
}

async fn every_mode(
    client: &RpcClient,
    options: &rpcnet::CallOptions,
) -> Vec<Result<Vec<u8>, RpcError>> {
    let one = || futures::stream::iter(vec![b"a".to_vec(), b"b".to_vec()]);
    let mut outcomes = vec![
        client
            .call_with_options("echo", b"u".to_vec(), options)
            .await,
    ];
    let first = |stream: Result<rpcnet::ResponseStream, RpcError>| async move {
        match stream {
            Ok(mut items) => items.next().await.unwrap_or(Ok(Vec::new())),
            Err(e) => Err(e),
        }
    };
    outcomes.push(
        first(
            client
                .call_server_streaming_with_options("stream", b"s".to_vec(), options)
                .await,
        )
        .await,
    );
    outcomes.push(
        client
            .call_client_streaming_with_options("stream", one(), options)
            .await,
    );
    outcomes.push(
        first(
            client
                .call_streaming_with_options("stream", one(), options)
                .await,
        )
        .await,
    );
    outcomes
}

#[tokio::test]
async fn an_authentication_layer_refuses_calls_without_the_token_in_every_mode() {
    let server = RpcServer::new(server_config());
    server
        .register("echo", |request| async move { Ok(request) })
        .await;
    server.layer(auth_layer());
    // Registered after the layer: wrapped too.
    server
        .register_streaming("stream", |requests| async move {
            // One response: the requests, joined.
            futures::stream::once(async move { Ok(requests.concat().await) })
        })
        .await;
    let server = spawn(server);
    let client = server.client().await;

    let refused = every_mode(&client, &rpcnet::CallOptions::new()).await;
    assert_eq!(refused.len(), 4);
    for outcome in refused {
        assert!(
            matches!(&outcome, Err(RpcError::PermissionDenied(m)) if m.contains("valid token")),
            "{outcome:?}"
        );
    }
    let allowed = every_mode(
        &client,
        &rpcnet::CallOptions::new().with_metadata("token", b"secret".to_vec()),
    )
    .await;
    for outcome in allowed {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
}

/// A global concurrency limit of 2 over two methods: with six calls
/// arrived at the server, two handlers run and four wait; all complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_layer_holds_across_methods() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let arrival = Arc::new(Notify::new());
    let release = Arc::new(Semaphore::new(0));
    let server = RpcServer::new(server_config());
    server.layer(tower::limit::GlobalConcurrencyLimitLayer::new(2));
    // Outside the limit: counts the calls that reached the server.
    let (a, n) = (arrived.clone(), arrival.clone());
    server.layer(tower::filter::FilterLayer::new(
        move |request: ServerRequest| {
            a.fetch_add(1, Ordering::SeqCst);
            n.notify_one();
            Ok::<_, RpcError>(request)
        },
    ));
    for method in ["a", "b"] {
        let (running, most, release) = (running.clone(), most.clone(), release.clone());
        server
            .register(method, move |request| {
                let (running, most, release) = (running.clone(), most.clone(), release.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    release.acquire().await.unwrap().forget();
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(request)
                }
            })
            .await;
    }
    let server = spawn(server);
    let client = server.client().await;
    let calls: Vec<_> = (0..6u8)
        .map(|n| {
            let client = client.clone();
            let method = if n % 2 == 0 { "a" } else { "b" };
            tokio::spawn(async move {
                client
                    .call_with_timeout(method, vec![n], Duration::from_secs(20))
                    .await
            })
        })
        .collect();
    promptly("six calls arrive", async {
        while arrived.load(Ordering::SeqCst) < 6 {
            arrival.notified().await;
        }
    })
    .await;
    promptly("two handlers start", async {
        while running.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(running.load(Ordering::SeqCst), 2);
    release.add_permits(6);
    for call in calls {
        assert!(promptly("call", call).await.unwrap().is_ok());
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

/// Handlers send response metadata (trailers) with the final status, in
/// every call mode.
#[tokio::test]
async fn trailers_reach_the_caller_in_every_mode() {
    let server = RpcServer::new(server_config());
    server
        .register("echo", |request| async move {
            rpcnet::CallInfo::set_trailer("served-by", b"unary".to_vec());
            Ok(request)
        })
        .await;
    server
        .register_streaming("stream", |requests| async move {
            rpcnet::CallInfo::set_trailer("served-by", b"stream".to_vec());
            futures::stream::once(async move { Ok(requests.concat().await) })
        })
        .await;
    let server = spawn(server);
    let client = server.client().await;
    let options = rpcnet::CallOptions::new();
    let modes: [(&str, rpcnet::Body, &[u8]); 4] = [
        ("echo", rpcnet::Body::Message(b"u".to_vec()), b"unary"),
        ("stream", rpcnet::Body::Message(b"s".to_vec()), b"stream"),
        (
            "stream",
            rpcnet::Body::stream(futures::stream::iter(vec![b"a".to_vec()])),
            b"stream",
        ),
        (
            "stream",
            rpcnet::Body::stream(futures::stream::iter(vec![b"b".to_vec(), b"c".to_vec()])),
            b"stream",
        ),
    ];
    for (method, body, expected) in modes {
        let mut responses = client.invoke(method, &options, body).await.unwrap();
        while let Some(item) = responses.next().await {
            item.unwrap();
        }
        assert_eq!(
            responses.trailers(),
            &vec![("served-by".to_owned(), expected.to_vec())],
            "{method}"
        );
    }
    // Outside a handler there is no call to set a trailer on.
    assert!(!rpcnet::CallInfo::set_trailer("k", b"v".to_vec()));
}
