//! Typed services (`#[rpcnet::service]`) against real servers on
//! loopback: every call mode through the generated client, typed errors,
//! refusals, stable wire names, the schema check, codecs and raw bytes;
//! `cluster.rs` does the same through `ClusterClient` over an in-process
//! cluster.

mod cluster;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rpcnet::typed::{CallError, Streaming};
use rpcnet::{CallOptions, RpcClient, RpcConfig, RpcError, RpcServer};
use serde::{Deserialize, Serialize};

fn cert(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// The service's own error: travels as itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum CalcError {
    DivideByZero,
    Negative(i64),
    TooMany { limit: u32 },
}

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Every call mode, every way of failing.
#[rpcnet::service(name = "test.Calc", version = 1)]
trait Calc {
    /// `a + b`.
    async fn add(&self, a: i64, b: i64) -> Result<i64, CalcError>;

    /// `a / b`; its wire name is `test.Calc.div`.
    #[rpcnet(name = "div", idempotent)]
    async fn divide(&self, a: i64, b: i64) -> Result<i64, CalcError>;

    /// `from`, ..., 1; more than 100 is a service error item.
    async fn countdown(&self, from: u32) -> Streaming<Result<u32, CalcError>>;

    /// The sum; a negative number is the service's error.
    async fn sum(&self, numbers: Streaming<i64>) -> Result<i64, CalcError>;

    /// Running totals; a negative number is an error item, and the
    /// stream goes on.
    async fn running(&self, numbers: Streaming<i64>) -> Streaming<Result<i64, CalcError>>;

    /// The bytes back, uppercased.
    async fn shout(&self, data: Bytes) -> Result<Bytes, CalcError>;

    /// The bytes back, reversed.
    async fn reverse(&self, data: Vec<u8>) -> Result<Vec<u8>, CalcError>;

    /// Refuses every call: the server is "busy".
    async fn busy(&self) -> Result<(), CallError<CalcError>>;

    /// Sleeps `ms`; the method's own timeout is 300 ms.
    #[rpcnet(timeout_ms = 300)]
    async fn nap(&self, ms: u64) -> Result<(), CalcError>;

    /// The serving node's label.
    async fn whoami(&self) -> Result<String, CalcError>;
}

struct Calculator {
    pub label: String,
}

impl Calc for Calculator {
    async fn add(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        Ok(a + b)
    }

    async fn divide(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        a.checked_div(b).ok_or(CalcError::DivideByZero)
    }

    async fn countdown(&self, from: u32) -> Streaming<Result<u32, CalcError>> {
        if from > 100 {
            return [Err(CalcError::TooMany { limit: 100 })]
                .into_iter()
                .collect();
        }
        (1..=from).rev().map(Ok).collect()
    }

    async fn sum(&self, mut numbers: Streaming<i64>) -> Result<i64, CalcError> {
        let mut sum = 0;
        while let Some(n) = numbers.next().await {
            if n < 0 {
                return Err(CalcError::Negative(n));
            }
            sum += n;
        }
        Ok(sum)
    }

    async fn running(&self, numbers: Streaming<i64>) -> Streaming<Result<i64, CalcError>> {
        Streaming::new(numbers.scan(0, |total, n| {
            let item = if n < 0 {
                Err(CalcError::Negative(n))
            } else {
                *total += n;
                Ok(*total)
            };
            std::future::ready(Some(item))
        }))
    }

    async fn shout(&self, data: Bytes) -> Result<Bytes, CalcError> {
        Ok(Bytes::from(data.to_ascii_uppercase()))
    }

    async fn reverse(&self, mut data: Vec<u8>) -> Result<Vec<u8>, CalcError> {
        data.reverse();
        Ok(data)
    }

    async fn busy(&self) -> Result<(), CallError<CalcError>> {
        Err(RpcError::Unavailable("busy: try another worker".into()).into())
    }

    async fn nap(&self, ms: u64) -> Result<(), CalcError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }

    async fn whoami(&self) -> Result<String, CalcError> {
        Ok(self.label.clone())
    }
}

/// The same service name with `add` declared differently (its argument
/// types): a client of this one calls a `Calc` server.
#[rpcnet::service(name = "test.Calc", version = 1)]
trait CalcWithOtherTypes {
    async fn add(&self, a: i32, b: i32) -> Result<i64, CalcError>;
}

/// The same declaration of `add` in a later version of the service.
#[rpcnet::service(name = "test.Calc", version = 2)]
trait CalcNextVersion {
    async fn add(&self, a: i64, b: i64) -> Result<i64, CalcError>;
}

/// The same declaration under another Rust name: only the wire names count.
#[rpcnet::service(name = "test.Calc", version = 1)]
trait RenamedCalc {
    async fn add(&self, x: i64, y: i64) -> Result<i64, CalcError>;
    #[rpcnet(name = "div")]
    async fn quotient(&self, a: i64, b: i64) -> Result<i64, CalcError>;
}

/// A service using the bincode codec.
#[cfg(feature = "bincode")]
#[rpcnet::service(codec = rpcnet::typed::Bincode)]
trait Legacy {
    async fn concat(&self, parts: Vec<String>) -> Result<String, String>;
}

#[cfg(feature = "bincode")]
struct LegacyImpl;

#[cfg(feature = "bincode")]
impl Legacy for LegacyImpl {
    async fn concat(&self, parts: Vec<String>) -> Result<String, String> {
        if parts.is_empty() {
            return Err("nothing to concatenate".into());
        }
        Ok(parts.concat())
    }
}

/// A server with `Calc` (and `Legacy`) registered; its address.
async fn serve() -> SocketAddr {
    let config =
        RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0").with_key_path(cert("test_key.pem"));
    let mut server = RpcServer::new(config);
    CalcServer::new(Calculator {
        label: "solo".into(),
    })
    .register(&server)
    .await;
    #[cfg(feature = "bincode")]
    LegacyServer::new(LegacyImpl).register(&server).await;
    let quic = server.bind().unwrap();
    let addr = server.socket_addr.unwrap();
    tokio::spawn(async move { server.start(quic).await });
    addr
}

async fn connect(addr: SocketAddr) -> RpcClient {
    RpcClient::connect(addr, RpcConfig::new(cert("ca.pem"), "127.0.0.1:0"))
        .await
        .unwrap()
}

#[tokio::test]
async fn every_call_mode_through_the_generated_client() {
    let calc = CalcClient::new(connect(serve().await).await);
    // Unary, with several arguments and with none.
    assert_eq!(calc.add(40, 2).await.unwrap(), 42);
    assert_eq!(calc.whoami().await.unwrap(), "solo");
    // Server streaming.
    let counted: Vec<u32> = calc
        .countdown(3)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(counted, [3, 2, 1]);
    // Client streaming.
    let numbers = futures::stream::iter([1, 2, 3, 4]);
    assert_eq!(calc.sum(numbers).await.unwrap(), 10);
    // Bidirectional: responses arrive while requests are still being sent.
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let mut totals = calc.running(rx).await.unwrap();
    tx.unbounded_send(5).unwrap();
    assert_eq!(totals.next().await.unwrap().unwrap(), 5);
    tx.unbounded_send(7).unwrap();
    assert_eq!(totals.next().await.unwrap().unwrap(), 12);
    drop(tx);
    assert!(totals.next().await.is_none());
    // Futures own what they need: spawned and joined.
    let spawned = tokio::spawn(calc.add(1, 1));
    let (a, b) = tokio::join!(calc.add(2, 2), calc.divide(9, 3));
    assert_eq!(
        (spawned.await.unwrap().unwrap(), a.unwrap(), b.unwrap()),
        (2, 4, 3)
    );
}

#[tokio::test]
async fn service_errors_arrive_as_themselves_apart_from_rpc_errors() {
    let calc = CalcClient::new(connect(serve().await).await);
    assert!(matches!(
        calc.divide(1, 0).await,
        Err(CallError::Service(CalcError::DivideByZero))
    ));
    // An error item of a response stream.
    let mut items = calc.countdown(101).await.unwrap();
    assert!(matches!(
        items.next().await,
        Some(Err(CallError::Service(CalcError::TooMany { limit: 100 })))
    ));
    assert!(items.next().await.is_none());
    // The service error of a client-streaming call.
    let numbers = futures::stream::iter([1, -2, 3]);
    assert!(matches!(
        calc.sum(numbers).await,
        Err(CallError::Service(CalcError::Negative(-2)))
    ));
    // Error items between values; the stream goes on.
    let items: Vec<_> = calc
        .running(futures::stream::iter([1, -1, 2]))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(matches!(
        items.as_slice(),
        [
            Ok(1),
            Err(CallError::Service(CalcError::Negative(-1))),
            Ok(3)
        ]
    ));
    // The method's own timeout (300 ms) is an rpcnet error.
    let started = std::time::Instant::now();
    assert!(matches!(
        calc.nap(5_000).await,
        Err(CallError::Rpc(RpcError::Timeout))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
    // A client-wide timeout replaces the method's.
    let patient = calc
        .clone()
        .with_options(CallOptions::new().with_timeout(Duration::from_secs(5)));
    patient.nap(500).await.unwrap();
    // Display: the service error is named as such.
    let text = calc.divide(1, 0).await.unwrap_err().to_string();
    assert_eq!(text, "service error: DivideByZero");
}

#[tokio::test]
async fn a_handler_refuses_a_call_with_unavailable() {
    let addr = serve().await;
    let calc = CalcClient::new(connect(addr).await);
    match calc.busy().await {
        Err(CallError::Rpc(RpcError::Unavailable(reason))) => {
            assert_eq!(reason, "busy: try another worker")
        }
        other => panic!("{other:?}"),
    }
    // A raw client sees the same status.
    let raw = connect(addr).await;
    assert!(matches!(
        raw.call("test.Calc.busy", vec![]).await,
        Err(RpcError::Unavailable(_))
    ));
}

#[tokio::test]
async fn names_are_stable_on_the_wire_and_raw_bytes_skip_the_codec() {
    let addr = serve().await;
    let raw = connect(addr).await;
    // `test.Calc.add` is postcard's (i64, i64), answered as postcard's
    // i64 and the tag byte 0; no schema entry, so no check.
    let request = postcard::to_allocvec(&(20i64, 22i64)).unwrap();
    let mut response = raw.call("test.Calc.add", request).await.unwrap();
    assert_eq!(response.pop(), Some(0), "the value's tag");
    assert_eq!(postcard::from_bytes::<i64>(&response).unwrap(), 42);
    // A service error's tag is 1.
    let request = postcard::to_allocvec(&(1i64, 0i64)).unwrap();
    let mut response = raw.call("test.Calc.div", request).await.unwrap();
    assert_eq!(response.pop(), Some(1), "the service error's tag");
    assert_eq!(
        postcard::from_bytes::<CalcError>(&response).unwrap(),
        CalcError::DivideByZero
    );
    // The Rust name is not the wire name.
    assert!(matches!(
        raw.call("test.Calc.divide", vec![]).await,
        Err(RpcError::UnknownMethod(_))
    ));
    // Another trait with the same wire names and types calls it.
    let renamed = RenamedCalcClient::new(raw.clone());
    assert_eq!(renamed.quotient(84, 2).await.unwrap(), 42);
    assert_eq!(renamed.add(1, 2).await.unwrap(), 3);
    // `Bytes` travel as they are.
    let mut response = raw.call("test.Calc.shout", b"hey".to_vec()).await.unwrap();
    assert_eq!(response, b"HEY\0");
    response.pop();
    let calc = CalcClient::new(raw.clone());
    assert_eq!(
        calc.shout(Bytes::from_static(b"quiet")).await.unwrap(),
        "QUIET".as_bytes()
    );
    // So do byte vectors.
    let response = raw
        .call("test.Calc.reverse", b"abc".to_vec())
        .await
        .unwrap();
    assert_eq!(response, b"cba\0", "the bytes and the tag byte");
    assert_eq!(calc.reverse(b"xyz".to_vec()).await.unwrap(), b"zyx");
    // A request the codec cannot read is the caller's rpcnet error.
    match raw.call("test.Calc.add", vec![0xff]).await {
        Err(RpcError::RemoteError(text)) => {
            assert!(
                text.contains("postcard could not decode a request of test.Calc.add"),
                "{text}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A response that is not typed is a codec error, not a panic.
    let mut server = RpcServer::new(
        RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0").with_key_path(cert("test_key.pem")),
    );
    server
        .register("test.Calc.add", |_| async move { Ok(b"?".to_vec()) })
        .await;
    let quic = server.bind().unwrap();
    let untyped = server.socket_addr.unwrap();
    tokio::spawn(async move { server.start(quic).await });
    let calc = CalcClient::new(connect(untyped).await);
    assert!(matches!(
        calc.add(1, 2).await,
        Err(CallError::Rpc(RpcError::Codec(_)))
    ));
}

#[tokio::test]
async fn a_mismatched_declaration_is_refused_clearly() {
    let addr = serve().await;
    let rpc = connect(addr).await;
    let other_types = CalcWithOtherTypesClient::new(rpc.clone());
    match other_types.add(1, 2).await {
        Err(e) => {
            let CallError::SchemaMismatch {
                method,
                client,
                server,
            } = &e
            else {
                panic!("{e:?}")
            };
            assert_eq!(method, "test.Calc.add");
            assert!(client.contains("add(i32, i32)"), "{client}");
            assert!(server.contains("add(i64, i64)"), "{server}");
            let text = e.to_string();
            assert!(
                text.starts_with("service schema mismatch for test.Calc.add: client `test.Calc v1: add(i32, i32) -> Result<i64,CalcError>` [postcard] #"),
                "{text}"
            );
            assert!(
                text.contains(", server `test.Calc v1: add(i64, i64)"),
                "{text}"
            );
        }
        Ok(sum) => panic!("a mismatched call ran: {sum}"),
    }
    // The same types in another version of the service.
    let next = CalcNextVersionClient::new(rpc.clone());
    match next.add(1, 2).await {
        Err(CallError::SchemaMismatch { client, server, .. }) => {
            assert!(client.contains("test.Calc v2"), "{client}");
            assert!(server.contains("test.Calc v1"), "{server}");
        }
        other => panic!("{other:?}"),
    }
    // The refused calls did not run; a matching client still works.
    assert_eq!(CalcClient::new(rpc).add(1, 2).await.unwrap(), 3);
}

#[cfg(feature = "bincode")]
#[tokio::test]
async fn a_service_can_choose_bincode() {
    let addr = serve().await;
    let legacy = LegacyClient::new(connect(addr).await);
    let parts = vec!["a".to_string(), "b".to_string()];
    assert_eq!(legacy.concat(parts).await.unwrap(), "ab");
    assert!(matches!(
        legacy.concat(vec![]).await,
        Err(CallError::Service(e)) if e == "nothing to concatenate"
    ));
    // On the wire: bincode's encoding, under the trait's name.
    let raw = connect(addr).await;
    let request = bincode::serialize(&vec!["x".to_string()]).unwrap();
    let mut response = raw.call("Legacy.concat", request).await.unwrap();
    assert_eq!(response.pop(), Some(0));
    assert_eq!(bincode::deserialize::<String>(&response).unwrap(), "x");
}
