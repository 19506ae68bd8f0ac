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
//! | [`typed`] | typed services: [`service`] generates a server adapter, a client and a cluster client from a trait; [`typed::CallError`], [`typed::Streaming`], codecs |
//! | `admin` | the admin HTTP endpoint (feature `admin`): metrics, readiness, members, a live status page (`docs/OPERATIONS.md`) |
//! | [`telemetry`] | metrics through the `metrics` facade, off until `telemetry::enable()` |
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
pub mod telemetry;
mod tls;
pub mod typed;
mod udp;
pub mod wire;

pub use call::{Body, CallOptions};
pub use client::{ResponseStream, RpcClient, UnaryRequest};
pub use config::{
    RpcConfig, DEFAULT_MAX_HEADER_SIZE, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_MTU,
    DEFAULT_STREAM_WINDOW, DEFAULT_TIMEOUT,
};
pub use error::RpcError;
pub use server::{
    CallInfo, RequestStream, RpcServer, ServerBody, ServerHandle, ServerRequest, ServerResponse,
    ServerService, ShutdownHandle,
};
pub use wire::Metadata;

/// Typed services: a trait of `async fn`s becomes a server adapter, a
/// client over [`RpcClient`] and a client over
/// [`ClusterClient`](cluster::ClusterClient), with any serde types for
/// requests, responses and errors. No build step, no schema file.
///
/// For `trait Foo`, it generates:
///
/// * `FooServer<S>`: `FooServer::new(impl Foo).register(&server).await`
///   registers a handler for every method on an [`RpcServer`] (or a
///   [`ServerHandle`]);
/// * `FooClient`: `FooClient::new(rpc_client)`, one method per trait
///   method;
/// * `FooClusterClient`: `FooClusterClient::new(Arc<ClusterClient>,
///   filter: Option<String>)`, the same methods, each call routed to a
///   worker matching the filter, with failover; and for each
///   server-streaming method `m`, `m_resumable(args.., resume)`: a
///   [`typed::Resumable`] stream that reopens on another worker after the
///   last value received, `resume(&last)` making the request
///   ([`ClusterClient::call_worker_resumable`](cluster::ClusterClient::call_worker_resumable)).
///
/// The trait itself is kept, with each `async fn` turned into
/// `fn .. -> impl Future<Output = ..> + Send` (so the server can run
/// handlers on any tokio worker); implement it with `async fn`.
///
/// # Signatures
///
/// The call mode is where [`Streaming`](typed::Streaming) appears:
///
/// | mode | trait method | client method |
/// |---|---|---|
/// | unary | `async fn m(&self, a: A, b: B) -> Result<T, E>` | `m(a, b) -> Result<T, CallError<E>>` |
/// | server streaming | `async fn m(&self, a: A) -> Streaming<Result<T, E>>` | `m(a) -> Result<Streaming<Result<T, CallError<E>>>, CallError<E>>` |
/// | client streaming | `async fn m(&self, r: Streaming<R>) -> Result<T, E>` | `m(impl Stream<Item = R>) -> Result<T, CallError<E>>` |
/// | bidirectional | `async fn m(&self, r: Streaming<R>) -> Streaming<Result<T, E>>` | `m(impl Stream<Item = R>) -> Result<Streaming<Result<T, CallError<E>>>, CallError<E>>` |
///
/// * Methods take `&self` and owned arguments, any number of them (sent as
///   a tuple), or one request stream `Streaming<R>` and nothing else.
/// * Every argument, `T` and `E` implement serde's `Serialize` and
///   `Deserialize`. A `Bytes` (`bytes::Bytes`) or `Vec<u8>` standing alone
///   (a method's only argument, a request stream's item, or `T`: a unary
///   result or a response stream's item) is sent as it is, without the
///   codec; several arguments travel as one encoded tuple, and `E` is
///   always encoded. The type is read as written: an alias of `Vec<u8>`
///   goes through the codec.
/// * `E` is the service's error, and reaches the caller as
///   [`CallError::Service(E)`](typed::CallError::Service); failures of the
///   call itself are [`CallError::Rpc`](typed::CallError::Rpc), and `?`
///   turns an [`RpcError`] into one. A trait method may declare its error
///   as `CallError<E>` instead of `E`: its handler can then also answer
///   an `RpcError`, such as `RpcError::Unavailable` to refuse a call it
///   did not run (see [`typed`]).
/// * Client methods return futures that own what they need
///   (`Send + 'static`): they can be spawned or joined freely.
///
/// # Options
///
/// On the trait, `#[rpcnet::service(..)]`:
///
/// * `name = "pkg.Service"`: the service's wire name (default: the
///   trait's name). Methods are called `<name>.<method>` on the wire, so
///   renaming the trait or a method in Rust does not change the wire.
/// * `version = N`: part of every method's schema hash; raise it when a
///   type changes in a way its name does not show.
/// * `codec = Type`: a [`Codec`](typed::Codec) (default
///   [`Postcard`](typed::Postcard); also [`Bincode`](typed::Bincode)).
/// * `crate = path`: where rpcnet is, for crates that re-export it.
///
/// On a method, `#[rpcnet(..)]`:
///
/// * `name = "..."`: the method's wire name (default: its Rust name).
/// * `idempotent`: the call is safe to run more than once; the cluster
///   client passes [`CallOptions::idempotent`], so a `ClusterClient`
///   retries it on another worker after failures where it may have run.
/// * `timeout_ms = N`: the method's default timeout (instead of the
///   connection's default), unless the client's
///   `with_options(CallOptions)` sets one.
///
/// # Schema check
///
/// Every call carries a hash of the method's signature as written (with
/// the service's version and the codec's name); a server whose
/// declaration differs refuses the call without running it, and the
/// caller gets [`CallError::SchemaMismatch`](typed::CallError::SchemaMismatch)
/// naming both signatures. [`typed`] describes the wire format.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
///
/// use futures::StreamExt;
/// use rpcnet::cluster::ClusterClient;
/// use rpcnet::typed::{CallError, Streaming};
/// use rpcnet::{RpcClient, RpcConfig, RpcError, RpcServer};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// pub enum MathError {
///     DivideByZero,
/// }
///
/// #[rpcnet::service(name = "demo.Math", version = 1)]
/// pub trait Math {
///     /// `a / b`.
///     #[rpcnet(idempotent, timeout_ms = 500)]
///     async fn divide(&self, a: i64, b: i64) -> Result<i64, MathError>;
///
///     /// `n`, `n - 1`, ..., `1`.
///     async fn countdown(&self, n: u32) -> Streaming<Result<u32, MathError>>;
///
///     /// The sum of the numbers sent.
///     async fn sum(&self, numbers: Streaming<i64>) -> Result<i64, MathError>;
///
///     /// Each number doubled, as they arrive.
///     async fn double(&self, numbers: Streaming<i64>) -> Streaming<Result<i64, MathError>>;
/// }
///
/// impl std::fmt::Display for MathError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("division by zero")
///     }
/// }
///
/// struct Calculator;
///
/// impl Math for Calculator {
///     async fn divide(&self, a: i64, b: i64) -> Result<i64, MathError> {
///         a.checked_div(b).ok_or(MathError::DivideByZero)
///     }
///
///     async fn countdown(&self, n: u32) -> Streaming<Result<u32, MathError>> {
///         (1..=n).rev().map(Ok).collect()
///     }
///
///     async fn sum(&self, numbers: Streaming<i64>) -> Result<i64, MathError> {
///         Ok(numbers.fold(0, |sum, n| async move { sum + n }).await)
///     }
///
///     async fn double(&self, numbers: Streaming<i64>) -> Streaming<Result<i64, MathError>> {
///         Streaming::new(numbers.map(|n| Ok(n * 2)))
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The server: one handler per method, `demo.Math.divide` and so on.
/// let config = RpcConfig::new("certs/server.pem", "127.0.0.1:0")
///     .with_key_path("certs/server-key.pem");
/// let mut server = RpcServer::new(config);
/// MathServer::new(Calculator).register(&server).await;
/// let quic = server.bind()?;
/// let addr = server.socket_addr.unwrap();
/// tokio::spawn(async move { server.start(quic).await });
///
/// // A client: the service's error arrives as itself.
/// let rpc = RpcClient::connect(addr, RpcConfig::new("certs/ca.pem", "127.0.0.1:0")).await?;
/// let math = MathClient::new(rpc);
/// assert_eq!(math.divide(84, 2).await?, 42);
/// match math.divide(1, 0).await {
///     Err(CallError::Service(MathError::DivideByZero)) => {}
///     Err(CallError::Rpc(e)) => return Err(e.into()),
///     other => panic!("{other:?}"),
/// }
/// let counted: Vec<u32> = math
///     .countdown(3)
///     .await?
///     .map(|n| n.expect("a number"))
///     .collect()
///     .await;
/// assert_eq!(counted, [3, 2, 1]);
/// assert_eq!(math.sum(futures::stream::iter([1, 2, 3])).await?, 6);
/// let mut doubled = math.double(futures::stream::iter([5, 6])).await?;
/// assert_eq!(doubled.next().await.unwrap()?, 10);
/// # Ok(()) }
///
/// /// The same service on any worker of a cluster (`docs/CLUSTER.md`):
/// /// `divide` is idempotent, so it moves to another worker even after a
/// /// failure where it may have run.
/// async fn on_a_worker(cluster: Arc<ClusterClient>) -> Result<i64, CallError<MathError>> {
///     let workers = MathClusterClient::new(cluster, Some("role=worker".into()));
///     workers.divide(9, 3).await
/// }
/// ```
pub use rpcnet_macros::service;
