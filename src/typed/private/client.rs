//! The client side of each call mode, over an [`RpcClient`] or a
//! [`ClusterClient`]: options from the method's attributes, the schema
//! hash in the request header, requests encoded, responses decoded.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::Either;
use futures::{FutureExt, Stream, StreamExt};

use super::{decode_response, encode_request, is_value, Encoding, Method, Wire};
use crate::cluster::ClusterClient;
use crate::typed::{CallError, Codec, Resumable, Streaming};
use crate::{CallOptions, RpcClient, RpcError};

/// The options of one call: `base` (the client's), the schema hash, the
/// method's timeout unless `base` has one, and its idempotence.
fn options<'m>(m: &'m Method, base: &CallOptions) -> Cow<'m, CallOptions> {
    if *base == CallOptions::default() {
        return Cow::Borrowed(m.default_options(|| with_method(m, base)));
    }
    Cow::Owned(with_method(m, base))
}

fn with_method(m: &Method, base: &CallOptions) -> CallOptions {
    let mut options = base.clone().with_schema(m.hash);
    if options.timeout().is_none() && m.timeout_ms > 0 {
        options = options.with_timeout(Duration::from_millis(m.timeout_ms));
    }
    if m.idempotent {
        options = options.idempotent(true);
    }
    options
}

/// What a routed call takes along: the client, the filter and the call's
/// options, owned.
fn routed(
    client: &Arc<ClusterClient>,
    filter: Option<&str>,
    m: &Method,
    base: &CallOptions,
) -> (Arc<ClusterClient>, Option<String>, CallOptions) {
    let options = options(m, base).into_owned();
    (client.clone(), filter.map(str::to_owned), options)
}

/// Response items decoded; what `server_streaming` and `bidirectional` return.
type Responses<T, E> = Streaming<Result<T, CallError<E>>>;

/// A unary call.
pub fn unary<C, ReqEnc, RespEnc, Req, T, E>(
    client: &RpcClient,
    m: &'static Method,
    base: &CallOptions,
    request: Req,
) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'static
where
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    E: Wire,
{
    // The call's future is polled where it was built (no `?` moving it
    // out of a `Result` into the future that awaits it). The failure branch
    // holds the codec error alone, so `T` need not be `Send`.
    match encode_request::<ReqEnc, Req>(m, request) {
        Ok(payload) => Either::Left(
            client
                .call_with_options_bytes(m.name, payload, &options(m, base))
                .map(move |answer| decode_response::<C, RespEnc, T, E>(m, answer?)),
        ),
        Err(e) => Either::Right(std::future::ready(e).map(|e| Err(e.into()))),
    }
}

/// A unary call routed by a [`ClusterClient`].
pub fn cluster_unary<C, ReqEnc, RespEnc, Req, T, E>(
    client: &Arc<ClusterClient>,
    filter: Option<&str>,
    m: &'static Method,
    base: &CallOptions,
    request: Req,
) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'static
where
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    E: Wire,
{
    let (client, filter, options) = routed(client, filter, m, base);
    let payload = encode_request::<ReqEnc, Req>(m, request);
    async move {
        let response = client
            .call_worker_with(m.name, payload?, filter.as_deref(), options)
            .await?;
        decode_response::<C, RespEnc, T, E>(m, response)
    }
}

/// A server-streaming call.
pub fn server_streaming<C, ReqEnc, RespEnc, Req, T, E>(
    client: &RpcClient,
    m: &'static Method,
    base: &CallOptions,
    request: Req,
) -> impl Future<Output = Result<Responses<T, E>, CallError<E>>> + Send + 'static
where
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    T: Send + 'static,
    E: Wire + Send + 'static,
{
    let call = encode_request::<ReqEnc, Req>(m, request).map(|payload| {
        client.call_server_streaming_with_options(m.name, payload, &options(m, base))
    });
    async move {
        let responses = call?.await?;
        Ok(decoded::<C, RespEnc, T, E>(m, responses, None))
    }
}

/// A server-streaming call routed by a [`ClusterClient`].
pub fn cluster_server_streaming<C, ReqEnc, RespEnc, Req, T, E>(
    client: &Arc<ClusterClient>,
    filter: Option<&str>,
    m: &'static Method,
    base: &CallOptions,
    request: Req,
) -> impl Future<Output = Result<Responses<T, E>, CallError<E>>> + Send + 'static
where
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    T: Send + 'static,
    E: Wire + Send + 'static,
{
    let (client, filter, options) = routed(client, filter, m, base);
    let payload = encode_request::<ReqEnc, Req>(m, request);
    async move {
        let responses = client
            .call_worker_server_streaming_with(m.name, payload?, filter.as_deref(), options)
            .await?;
        Ok(decoded::<C, RespEnc, T, E>(m, responses, None))
    }
}

/// A resumable server stream routed by a [`ClusterClient`]: `resume(last)`
/// makes the request that starts the stream right after `last`, the last
/// value the caller received.
pub fn cluster_resumable<C, ReqEnc, RespEnc, Req, T, E, F>(
    client: &Arc<ClusterClient>,
    filter: Option<&str>,
    m: &'static Method,
    base: &CallOptions,
    request: Req,
    mut resume: F,
) -> impl Future<Output = Result<Resumable<T, E>, CallError<E>>> + Send + 'static
where
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    T: Send + 'static,
    E: Wire + Send + 'static,
    F: FnMut(&T) -> Req + Send + 'static,
{
    let (client, filter, options) = routed(client, filter, m, base);
    let payload = encode_request::<ReqEnc, Req>(m, request);
    // Called with a position only, so the message is a value.
    let next = move |last: &[u8]| match decode_response::<C, RespEnc, T, E>(m, last.to_vec()) {
        Ok(value) => encode_request::<ReqEnc, Req>(m, resume(&value)),
        Err(CallError::Rpc(e)) => Err(e),
        Err(_) => Err(RpcError::Codec(format!(
            "the last value of {} is not a value",
            m.name
        ))),
    };
    async move {
        let stream = client
            .open_resumable(
                m.name,
                payload?,
                filter.as_deref(),
                options,
                Box::new(next),
                is_value,
            )
            .await?;
        Ok(Resumable::new(
            stream,
            m,
            decode_response::<C, RespEnc, T, E>,
        ))
    }
}

/// A client-streaming call.
pub fn client_streaming<C, ReqEnc, RespEnc, Req, T, E, S>(
    client: &RpcClient,
    m: &'static Method,
    base: &CallOptions,
    requests: S,
) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'static
where
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    E: Wire,
    Req: Send + 'static,
    S: Stream<Item = Req> + Send + 'static,
{
    let (requests, failure) = Encoded::<ReqEnc, Req, S>::new(m, requests);
    let call = client.call_client_streaming_with_options(m.name, requests, &options(m, base));
    async move {
        let response = unless_encoding_fails(failure, call).await?;
        decode_response::<C, RespEnc, T, E>(m, response)
    }
}

/// A client-streaming call routed by a [`ClusterClient`].
pub fn cluster_client_streaming<C, ReqEnc, RespEnc, Req, T, E, S>(
    client: &Arc<ClusterClient>,
    filter: Option<&str>,
    m: &'static Method,
    base: &CallOptions,
    requests: S,
) -> impl Future<Output = Result<T, CallError<E>>> + Send + 'static
where
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    E: Wire,
    Req: Send + 'static,
    S: Stream<Item = Req> + Send + 'static,
{
    let (client, filter, options) = routed(client, filter, m, base);
    let (requests, failure) = Encoded::<ReqEnc, Req, S>::new(m, requests);
    async move {
        let call =
            client.call_worker_client_streaming_with(m.name, requests, filter.as_deref(), options);
        let response = unless_encoding_fails(failure, call).await?;
        decode_response::<C, RespEnc, T, E>(m, response)
    }
}

/// A bidirectional call.
pub fn bidirectional<C, ReqEnc, RespEnc, Req, T, E, S>(
    client: &RpcClient,
    m: &'static Method,
    base: &CallOptions,
    requests: S,
) -> impl Future<Output = Result<Responses<T, E>, CallError<E>>> + Send + 'static
where
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    T: Send + 'static,
    E: Wire + Send + 'static,
    Req: Send + 'static,
    S: Stream<Item = Req> + Send + 'static,
{
    let (requests, failure) = Encoded::<ReqEnc, Req, S>::new(m, requests);
    let call = client.call_streaming_with_options(m.name, requests, &options(m, base));
    async move {
        let responses = call.await?;
        Ok(decoded::<C, RespEnc, T, E>(m, responses, Some(failure)))
    }
}

/// A bidirectional call routed by a [`ClusterClient`].
pub fn cluster_bidirectional<C, ReqEnc, RespEnc, Req, T, E, S>(
    client: &Arc<ClusterClient>,
    filter: Option<&str>,
    m: &'static Method,
    base: &CallOptions,
    requests: S,
) -> impl Future<Output = Result<Responses<T, E>, CallError<E>>> + Send + 'static
where
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    T: Send + 'static,
    E: Wire + Send + 'static,
    Req: Send + 'static,
    S: Stream<Item = Req> + Send + 'static,
{
    let (client, filter, options) = routed(client, filter, m, base);
    let (requests, failure) = Encoded::<ReqEnc, Req, S>::new(m, requests);
    async move {
        let responses = client
            .call_worker_streaming_with(m.name, requests, filter.as_deref(), options)
            .await?;
        Ok(decoded::<C, RespEnc, T, E>(m, responses, Some(failure)))
    }
}

/// `call`, unless encoding a request fails first: then that error, and
/// the call is dropped (which cancels it).
async fn unless_encoding_fails<T>(
    failure: oneshot::Receiver<RpcError>,
    call: impl Future<Output = Result<T, RpcError>>,
) -> Result<T, RpcError> {
    let call = std::pin::pin!(call);
    match futures::future::select(failure, call).await {
        Either::Left((Ok(error), _)) => Err(error),
        // Every request was encoded: the call decides.
        Either::Left((Err(oneshot::Canceled), call)) => call.await,
        Either::Right((result, _)) => result,
    }
}

/// A request stream encoded item by item. An item the codec refuses is
/// reported through the channel, and the stream then never ends, so the
/// server never sees a complete upload: the caller cancels the call.
struct Encoded<Enc, T, S> {
    requests: Pin<Box<S>>,
    method: &'static Method,
    failure: Option<oneshot::Sender<RpcError>>,
    _encoding: PhantomData<fn(T) -> Enc>,
}

impl<Enc: Encoding<T>, T, S: Stream<Item = T>> Encoded<Enc, T, S> {
    fn new(method: &'static Method, requests: S) -> (Self, oneshot::Receiver<RpcError>) {
        let (tx, rx) = oneshot::channel();
        let encoded = Self {
            requests: Box::pin(requests),
            method,
            failure: Some(tx),
            _encoding: PhantomData,
        };
        (encoded, rx)
    }
}

impl<Enc: Encoding<T>, T, S: Stream<Item = T>> Stream for Encoded<Enc, T, S> {
    type Item = Vec<u8>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let this = &mut *self;
        if this.failure.is_none() {
            return Poll::Pending;
        }
        match std::task::ready!(this.requests.as_mut().poll_next(cx)) {
            Some(item) => match encode_request::<Enc, T>(this.method, item) {
                Ok(message) => Poll::Ready(Some(message)),
                Err(e) => {
                    if let Some(failure) = this.failure.take() {
                        let _ = failure.send(e);
                    }
                    Poll::Pending
                }
            },
            None => Poll::Ready(None),
        }
    }
}

/// Response messages decoded. `failure`: a request that could not be
/// encoded ends the stream with that error (and drops the call).
fn decoded<C, Enc, T, E>(
    m: &'static Method,
    responses: impl Stream<Item = Result<Vec<u8>, RpcError>> + Send + 'static,
    failure: Option<oneshot::Receiver<RpcError>>,
) -> Streaming<Result<T, CallError<E>>>
where
    C: Codec,
    Enc: Encoding<T>,
    T: Send + 'static,
    E: Wire + Send + 'static,
{
    let decode = move |item: Result<Vec<u8>, RpcError>| match item {
        Ok(message) => decode_response::<C, Enc, T, E>(m, message),
        Err(e) => Err(CallError::Rpc(e)),
    };
    let responses = responses.map(decode);
    match failure {
        None => Streaming::new(responses),
        Some(failure) => Streaming::new(UnlessEncodingFails {
            responses: Some(Box::pin(responses)),
            failure: Some(failure),
        }),
    }
}

/// Responses, ended early by a request that could not be encoded.
struct UnlessEncodingFails<S> {
    responses: Option<Pin<Box<S>>>,
    failure: Option<oneshot::Receiver<RpcError>>,
}

impl<T, E, S> Stream for UnlessEncodingFails<S>
where
    S: Stream<Item = Result<T, CallError<E>>>,
{
    type Item = Result<T, CallError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(failure) = &mut this.failure {
            match Pin::new(failure).poll(cx) {
                Poll::Ready(Ok(error)) => {
                    this.failure = None;
                    // Dropping the responses cancels the call.
                    this.responses = None;
                    return Poll::Ready(Some(Err(CallError::Rpc(error))));
                }
                Poll::Ready(Err(oneshot::Canceled)) => this.failure = None,
                Poll::Pending => {}
            }
        }
        match &mut this.responses {
            Some(responses) => responses.as_mut().poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}
