//! The systems under test, each with a server (run in its own process) and
//! a client, carrying the same raw `Vec<u8>` payloads.
//!
//! Methods: `echo` (unary), `stream` (server streaming: request is
//! `n: u32, size: u32`, response is `n` messages of `size` bytes), and
//! `upload` (client streaming: the response is the number of messages);
//! rpcnet's server also serves the typed `bench.Echo.echo` (`typed.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use futures::{stream, StreamExt};

pub mod raw_grpc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Rpcnet,
    TonicTls,
    TonicPlain,
}

impl System {
    pub const ALL: [System; 3] = [System::Rpcnet, System::TonicTls, System::TonicPlain];

    pub fn name(self) -> &'static str {
        match self {
            System::Rpcnet => "rpcnet",
            System::TonicTls => "tonic-tls",
            System::TonicPlain => "tonic-plain",
        }
    }

    pub fn parse(name: &str) -> Option<System> {
        System::ALL.into_iter().find(|s| s.name() == name)
    }
}

pub fn cert(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../certs")
        .join(name)
}

pub fn stream_request(n: u32, size: u32) -> Vec<u8> {
    [n.to_be_bytes(), size.to_be_bytes()].concat()
}

pub fn parse_stream_request(req: &[u8]) -> (u32, usize) {
    let n = u32::from_be_bytes(req[0..4].try_into().unwrap());
    let size = u32::from_be_bytes(req[4..8].try_into().unwrap());
    (n, size as usize)
}

/// Runs the server for `system` on `addr`, calling `ready` with the bound address.
pub async fn serve(system: System, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) {
    match system {
        System::Rpcnet => serve_rpcnet(addr, ready).await,
        System::TonicTls => raw_grpc::serve(addr, true, ready).await,
        System::TonicPlain => raw_grpc::serve(addr, false, ready).await,
    }
}

async fn serve_rpcnet(addr: SocketAddr, ready: impl FnOnce(SocketAddr)) {
    let config = rpcnet::RpcConfig::new(cert("test_cert.pem"), addr.to_string())
        .with_key_path(cert("test_key.pem"))
        .with_max_concurrent_streams(1024)
        // Room for the connection-scale run's 10,000 and its probes.
        .with_max_connections(20_000);
    let mut server = rpcnet::RpcServer::new(config);
    server.register("echo", |p| async move { Ok(p) }).await;
    server
        .register_streaming("stream", |mut reqs| async move {
            let (n, size) = parse_stream_request(&reqs.next().await.unwrap_or_default());
            stream::iter((0..n).map(move |_| Ok(vec![0u8; size])))
        })
        .await;
    server
        .register_streaming("upload", |reqs| async move {
            let count = reqs.count().await as u64;
            stream::iter([Ok(count.to_be_bytes().to_vec())])
        })
        .await;
    crate::typed::EchoServer::new(crate::typed::Echoer)
        .register(&server)
        .await;
    let quic = server.bind().expect("bind");
    ready(server.socket_addr.unwrap());
    server.start(quic).await.expect("serve");
}

/// A connected client of any system.
#[derive(Clone)]
pub enum Client {
    Rpcnet(rpcnet::RpcClient),
    Tonic(raw_grpc::Client),
}

impl Client {
    pub async fn connect(system: System, addr: SocketAddr) -> Client {
        Self::connect_with(system, addr, false).await
    }

    /// `new_endpoint`: an rpcnet client with a QUIC endpoint of its own.
    pub async fn connect_with(system: System, addr: SocketAddr, new_endpoint: bool) -> Client {
        match system {
            System::Rpcnet => {
                let config = rpcnet::RpcConfig::new(cert("ca.pem"), "127.0.0.1:0")
                    .with_shared_endpoint(!new_endpoint);
                Client::Rpcnet(
                    rpcnet::RpcClient::connect(addr, config)
                        .await
                        .expect("connect"),
                )
            }
            System::TonicTls => Client::Tonic(raw_grpc::Client::connect(addr, true).await),
            System::TonicPlain => Client::Tonic(raw_grpc::Client::connect(addr, false).await),
        }
    }

    pub async fn echo(&self, payload: Vec<u8>) -> Vec<u8> {
        match self {
            Client::Rpcnet(c) => c.call("echo", payload).await.expect("echo"),
            Client::Tonic(c) => c.echo(payload).await,
        }
    }

    /// Receives `n` messages of `size` bytes; returns the count received.
    pub async fn server_stream(&self, n: u32, size: u32) -> u64 {
        match self {
            Client::Rpcnet(c) => {
                let s = c
                    .call_server_streaming("stream", stream_request(n, size))
                    .await
                    .expect("stream");
                s.fold(0u64, |count, item| async move {
                    item.expect("item");
                    count + 1
                })
                .await
            }
            Client::Tonic(c) => c.server_stream(stream_request(n, size)).await,
        }
    }

    /// Sends `n` messages of `size` bytes; returns the count the server saw.
    pub async fn client_stream(&self, n: u32, size: usize) -> u64 {
        let uploads = stream::iter((0..n).map(move |_| vec![0u8; size]));
        let reply = match self {
            Client::Rpcnet(c) => c
                .call_client_streaming("upload", uploads)
                .await
                .expect("upload"),
            Client::Tonic(c) => c.client_stream(uploads).await,
        };
        u64::from_be_bytes(reply[..8].try_into().unwrap())
    }
}
