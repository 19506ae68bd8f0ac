//! # rpcnet
//!
//! RPC services and service clusters over QUIC with TLS always on.
//!
//! * [`RpcServer`] registers unary and streaming handlers and serves them
//!   on an s2n-quic endpoint; [`RpcClient`] calls them over one connection,
//!   one QUIC stream per call.
//! * Four call modes: unary ([`RpcClient::call`]), bidirectional
//!   ([`RpcClient::call_streaming`]), server streaming
//!   ([`RpcClient::call_server_streaming`]) and client streaming
//!   ([`RpcClient::call_client_streaming`]).
//! * Every failure is a typed [`RpcError`].
//!
//! ```no_run
//! use rpcnet::{RpcClient, RpcConfig, RpcError, RpcServer};
//!
//! # #[tokio::main] async fn main() -> Result<(), RpcError> {
//! let config = RpcConfig::new("certs/server.pem", "127.0.0.1:0")
//!     .with_key_path("certs/server-key.pem");
//! let mut server = RpcServer::new(config);
//! server.register("echo", |params| async move { Ok(params) }).await;
//! let quic = server.bind()?;
//! let addr = server.socket_addr.unwrap();
//! tokio::spawn(async move { server.start(quic).await });
//!
//! let client = RpcClient::connect(addr, RpcConfig::new("certs/ca.pem", "127.0.0.1:0")).await?;
//! assert_eq!(client.call("echo", b"hi".to_vec()).await?, b"hi");
//! # Ok(()) }
//! ```
//!
//! ## Layout
//!
//! | module | concern |
//! |---|---|
//! | `wire` | the frame format: pure encode/decode, limits checked before allocation (`docs/PROTOCOL.md`) |
//! | `io` | the async shell: frames from a QUIC receive stream; a send half that resets when abandoned |
//! | `tls` | s2n-tls providers: empty trust stores, optional mutual TLS |
//! | `config` | [`RpcConfig`], limits and [`DEFAULT_TIMEOUT`] |
//! | `error` | [`RpcError`] |
//! | `call` | [`CallOptions`]: metadata, timeout, idempotence of one call |
//! | `server` | [`RpcServer`]: accept loop, per-connection and per-call tasks, graceful shutdown |
//! | `client` | [`RpcClient`] and [`ResponseStream`] |
//! | `udp` | the UDP socket and the endpoint's event loop: s2n-quic's packet rings, with packets sent from the endpoint's own task |
//! | `admin` | the admin HTTP endpoint (feature `admin`): metrics, readiness, members, a live status page (`docs/OPERATIONS.md`) |
//! | [`cluster`] | membership: Phi Accrual detector, SWIM core (foca), deterministic simulator, QUIC shell, registries; routing: `WorkerRegistry`, `ClusterClient` (`docs/CLUSTER.md`) |

#![warn(missing_docs)]

#[cfg(feature = "admin")]
pub mod admin;
mod call;
mod client;
pub mod cluster;
mod config;
mod error;
mod io;
mod keepalive;
mod quic;
mod server;
mod sync;
mod tls;
mod udp;
pub mod wire;

pub use call::{Body, CallOptions};
pub use client::{ResponseStream, RpcClient, UnaryRequest};
pub use config::{
    RpcConfig, DEFAULT_MAX_HEADER_SIZE, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_MTU,
    DEFAULT_STREAM_WINDOW, DEFAULT_TIMEOUT,
};
pub use error::RpcError;
pub use server::{CallInfo, RequestStream, RpcServer, ServerHandle, ShutdownHandle};
pub use wire::Metadata;
