//! tonic without code generation: a raw-bytes codec and a hand-written
//! service with the same three methods as the rpcnet server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use futures::stream::BoxStream;
use futures::{stream, StreamExt};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Request, Response, Status, Streaming};

use super::{cert, parse_stream_request};

#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

const ECHO: &str = "/bench.Bench/Echo";
const STREAM: &str = "/bench.Bench/Stream";
const UPLOAD: &str = "/bench.Bench/Upload";

#[derive(Clone)]
struct Bench;

struct Echo;
impl tonic::server::UnaryService<Vec<u8>> for Echo {
    type Response = Vec<u8>;
    type Future = BoxFuture<Response<Vec<u8>>, Status>;
    fn call(&mut self, request: Request<Vec<u8>>) -> Self::Future {
        Box::pin(async move { Ok(Response::new(request.into_inner())) })
    }
}

struct Stream;
impl tonic::server::ServerStreamingService<Vec<u8>> for Stream {
    type Response = Vec<u8>;
    type ResponseStream = BoxStream<'static, Result<Vec<u8>, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;
    fn call(&mut self, request: Request<Vec<u8>>) -> Self::Future {
        let (n, size) = parse_stream_request(request.get_ref());
        Box::pin(async move {
            Ok(Response::new(
                stream::iter((0..n).map(move |_| Ok(vec![0u8; size]))).boxed(),
            ))
        })
    }
}

struct Upload;
impl tonic::server::ClientStreamingService<Vec<u8>> for Upload {
    type Response = Vec<u8>;
    type Future = BoxFuture<Response<Vec<u8>>, Status>;
    fn call(&mut self, request: Request<Streaming<Vec<u8>>>) -> Self::Future {
        Box::pin(async move {
            let mut s = request.into_inner();
            let mut count = 0u64;
            while s.message().await?.is_some() {
                count += 1;
            }
            Ok(Response::new(count.to_be_bytes().to_vec()))
        })
    }
}

impl<B> Service<http::Request<B>> for Bench
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(match req.uri().path() {
                ECHO => grpc.unary(Echo, req).await,
                STREAM => grpc.server_streaming(Stream, req).await,
                UPLOAD => grpc.client_streaming(Upload, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

impl tonic::server::NamedService for Bench {
    const NAME: &'static str = "bench.Bench";
}

pub async fn serve(addr: SocketAddr, tls: bool, ready: impl FnOnce(SocketAddr)) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    ready(listener.local_addr().unwrap());
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        s.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    let mut builder = Server::builder();
    if tls {
        let identity = Identity::from_pem(
            std::fs::read(cert("test_cert.pem")).unwrap(),
            std::fs::read(cert("test_key.pem")).unwrap(),
        );
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .expect("tls");
    }
    builder
        .add_service(Bench)
        .serve_with_incoming(incoming)
        .await
        .expect("serve");
}

#[derive(Clone)]
pub struct Client(tonic::client::Grpc<Channel>);

impl Client {
    pub async fn connect(addr: SocketAddr, tls: bool) -> Client {
        let scheme = if tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .unwrap()
            .tcp_nodelay(true);
        if tls {
            let ca = Certificate::from_pem(std::fs::read(cert("ca.pem")).unwrap());
            endpoint = endpoint
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(ca)
                        .domain_name("localhost"),
                )
                .expect("tls");
        }
        let channel = endpoint.connect().await.expect("connect");
        Client(tonic::client::Grpc::new(channel))
    }

    fn grpc(&self) -> tonic::client::Grpc<Channel> {
        self.0.clone()
    }

    pub async fn echo(&self, payload: Vec<u8>) -> Vec<u8> {
        let mut grpc = self.grpc();
        grpc.ready().await.expect("ready");
        let path = http::uri::PathAndQuery::from_static(ECHO);
        grpc.unary(Request::new(payload), path, RawCodec)
            .await
            .expect("echo")
            .into_inner()
    }

    pub async fn server_stream(&self, request: Vec<u8>) -> u64 {
        let mut grpc = self.grpc();
        grpc.ready().await.expect("ready");
        let path = http::uri::PathAndQuery::from_static(STREAM);
        let mut s = grpc
            .server_streaming(Request::new(request), path, RawCodec)
            .await
            .expect("stream")
            .into_inner();
        let mut count = 0;
        while s.message().await.expect("item").is_some() {
            count += 1;
        }
        count
    }

    pub async fn client_stream(
        &self,
        uploads: impl futures::Stream<Item = Vec<u8>> + Send + 'static,
    ) -> Vec<u8> {
        let mut grpc = self.grpc();
        grpc.ready().await.expect("ready");
        let path = http::uri::PathAndQuery::from_static(UPLOAD);
        grpc.client_streaming(Request::new(uploads), path, RawCodec)
            .await
            .expect("upload")
            .into_inner()
    }
}
