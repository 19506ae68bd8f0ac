//! Shared test support: certificates, a server running in the background.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rpcnet::{RpcClient, RpcConfig, RpcError, RpcServer, ShutdownHandle};
use tokio::task::JoinHandle;

pub fn cert(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

pub fn server_config() -> RpcConfig {
    RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0").with_key_path(cert("test_key.pem"))
}

pub fn client_config() -> RpcConfig {
    RpcConfig::new(cert("ca.pem"), "127.0.0.1:0")
}

/// Upper bound for waiting on an event that should happen promptly.
pub const PROMPTLY: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: ShutdownHandle,
    pub task: Option<JoinHandle<Result<(), RpcError>>>,
}

impl TestServer {
    pub async fn client(&self) -> RpcClient {
        RpcClient::connect(self.addr, client_config())
            .await
            .expect("connect")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Binds `server` on an ephemeral port and serves it in the background.
pub fn spawn(mut server: RpcServer) -> TestServer {
    let quic = server.bind().expect("bind");
    let addr = server.socket_addr.expect("socket_addr after bind");
    let shutdown = server.shutdown_handle();
    let task = tokio::spawn(async move { server.start(quic).await });
    TestServer {
        addr,
        shutdown,
        task: Some(task),
    }
}

/// Awaits `f` but fails the test instead of hanging.
pub async fn promptly<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(PROMPTLY, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {PROMPTLY:?}"))
}

/// Sets a flag when dropped: proves a handler future was cancelled.
pub struct DropSignal(pub Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A server whose "slow" handler tells `started` when it runs and answers
/// its request once `release` is notified; drain timeout 20 s.
pub struct Gated {
    pub server: TestServer,
    pub started: std::sync::Arc<tokio::sync::Notify>,
    pub release: std::sync::Arc<tokio::sync::Notify>,
}

pub async fn gated_server() -> Gated {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let server = RpcServer::new(server_config().with_drain_timeout(Duration::from_secs(20)));
    let (r, s) = (release.clone(), started.clone());
    server
        .register("slow", move |p| {
            let (r, s) = (r.clone(), s.clone());
            async move {
                s.notify_one();
                r.notified().await;
                Ok(p)
            }
        })
        .await;
    Gated {
        server: spawn(server),
        started,
        release,
    }
}

/// A call to the gated server's `slow` method, in flight in the background
/// (20 s timeout); it answers `done` once released.
pub fn slow_call(client: &RpcClient) -> tokio::task::JoinHandle<Result<Vec<u8>, RpcError>> {
    let client = client.clone();
    tokio::spawn(async move {
        client
            .call_with_timeout("slow", b"done".to_vec(), Duration::from_secs(20))
            .await
    })
}
