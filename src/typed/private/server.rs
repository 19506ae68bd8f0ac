//! The server side of each call mode: one raw handler per method that
//! checks the caller's schema hash, decodes the requests, runs the typed
//! handler and encodes what it returns.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::{encode_response, encode_response_into, mismatch_response, Encoding, Method, Wire};
use crate::typed::{CallError, Codec, Registrar, Streaming};
use crate::{CallInfo, RequestStream, RpcError};

/// The refusal to send if the caller declared another schema for this
/// method. A caller that sends no hash (a raw `RpcClient`) is not checked.
fn schema_refusal(m: &Method) -> Option<Vec<u8>> {
    let theirs = CallInfo::current_schema()?;
    (theirs != m.hash).then(|| mismatch_response(m))
}

/// Wraps a handler's plain service errors (a trait method declared
/// `-> Streaming<Result<T, E>>`) as [`CallError::Service`].
pub fn service_errors<T, E>(items: Streaming<Result<T, E>>) -> Streaming<Result<T, CallError<E>>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    Streaming::new(items.map(|item| item.map_err(CallError::Service)))
}

type Responses = Streaming<Result<Vec<u8>, RpcError>>;

fn one(item: Result<Vec<u8>, RpcError>) -> Responses {
    Streaming::new(futures::stream::once(std::future::ready(item)))
}

/// Registers unary method `m`.
pub async fn serve_unary<R, C, ReqEnc, RespEnc, Req, T, E, F, Fut>(
    server: &R,
    m: &'static Method,
    handler: F,
) where
    R: Registrar,
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    E: Wire,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, CallError<E>>> + Send + 'static,
{
    server
        .register_unary(m.name, move |payload: Vec<u8>| {
            // The handler's future is made now and polled only if the
            // schema matches (an `async fn` does nothing before that).
            // The request's buffer is kept for the answer.
            let call = ReqEnc::decode_keeping_buffer(payload)
                .map(|(request, buffer)| (handler(request), buffer));
            async move {
                if let Some(refusal) = schema_refusal(m) {
                    return Ok(refusal);
                }
                let (call, buffer) =
                    call.map_err(|e| super::codec_error(m, "could not decode a request", e))?;
                encode_response_into::<C, RespEnc, T, E>(m, call.await, buffer)
            }
        })
        .await;
}

/// Registers server-streaming method `m`.
pub async fn serve_server_streaming<R, C, ReqEnc, RespEnc, Req, T, E, F, Fut>(
    server: &R,
    m: &'static Method,
    handler: F,
) where
    R: Registrar,
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    T: Send + 'static,
    E: Wire + Send + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Streaming<Result<T, CallError<E>>>> + Send + 'static,
{
    let handler = Arc::new(handler);
    server
        .register_streaming(m.name, move |mut requests: RequestStream| {
            let handler = handler.clone();
            async move {
                if let Some(refusal) = schema_refusal(m) {
                    return one(Ok(refusal));
                }
                let Some(payload) = requests.next().await else {
                    return one(Err(RpcError::ProtocolError(format!(
                        "{} expects one request",
                        m.name
                    ))));
                };
                let call = match ReqEnc::decode(payload) {
                    Ok(request) => handler(request),
                    Err(e) => {
                        return one(Err(super::codec_error(m, "could not decode a request", e)))
                    }
                };
                responses::<C, RespEnc, T, E>(m, call.await)
            }
        })
        .await;
}

/// Registers client-streaming method `m`.
pub async fn serve_client_streaming<R, C, ReqEnc, RespEnc, Req, T, E, F, Fut>(
    server: &R,
    m: &'static Method,
    handler: F,
) where
    R: Registrar,
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    Req: Send + 'static,
    E: Wire,
    F: Fn(Streaming<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, CallError<E>>> + Send + 'static,
{
    let handler = Arc::new(handler);
    server
        .register_streaming(m.name, move |requests: RequestStream| {
            let handler = handler.clone();
            async move {
                if let Some(refusal) = schema_refusal(m) {
                    return one(Ok(refusal));
                }
                let (requests, failure) = decoded_requests::<ReqEnc, Req>(m, requests);
                let result = handler(requests).await;
                match take(&failure) {
                    Some(e) => one(Err(e)),
                    None => one(encode_response::<C, RespEnc, T, E>(m, result)),
                }
            }
        })
        .await;
}

/// Registers bidirectional method `m`.
pub async fn serve_bidirectional<R, C, ReqEnc, RespEnc, Req, T, E, F, Fut>(
    server: &R,
    m: &'static Method,
    handler: F,
) where
    R: Registrar,
    C: Codec,
    ReqEnc: Encoding<Req>,
    RespEnc: Encoding<T>,
    Req: Send + 'static,
    T: Send + 'static,
    E: Wire + Send + 'static,
    F: Fn(Streaming<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Streaming<Result<T, CallError<E>>>> + Send + 'static,
{
    let handler = Arc::new(handler);
    server
        .register_streaming(m.name, move |requests: RequestStream| {
            let handler = handler.clone();
            async move {
                if let Some(refusal) = schema_refusal(m) {
                    return one(Ok(refusal));
                }
                let (requests, failure) = decoded_requests::<ReqEnc, Req>(m, requests);
                let items = responses::<C, RespEnc, T, E>(m, handler(requests).await);
                // A request that could not be decoded ended the handler's
                // request stream early: say so after its responses.
                let tail = futures::stream::once(async move { take(&failure) })
                    .filter_map(|failure| std::future::ready(failure.map(Err)));
                Streaming::new(items.chain(tail))
            }
        })
        .await;
}

/// A handler's response items encoded: values and service errors as
/// messages, an `RpcError` as an error item.
fn responses<C, Enc, T, E>(
    m: &'static Method,
    items: Streaming<Result<T, CallError<E>>>,
) -> Responses
where
    C: Codec,
    Enc: Encoding<T>,
    T: Send + 'static,
    E: Wire + Send + 'static,
{
    Streaming::new(items.map(move |item| encode_response::<C, Enc, T, E>(m, item)))
}

/// The first request that could not be decoded.
type Failure = Arc<Mutex<Option<RpcError>>>;

fn take(failure: &Failure) -> Option<RpcError> {
    failure
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

/// The requests decoded. A request that cannot be decoded ends the
/// stream and is kept in the returned slot.
fn decoded_requests<Enc, T>(m: &'static Method, requests: RequestStream) -> (Streaming<T>, Failure)
where
    Enc: Encoding<T>,
    T: Send + 'static,
{
    let failure: Failure = Arc::default();
    let slot = failure.clone();
    let items = requests
        .map(move |payload| Enc::decode(payload))
        .take_while(move |decoded| {
            let ok = decoded.is_ok();
            if let Err(e) = decoded {
                let error =
                    super::codec_error(m, "could not decode a request", e.to_string().into());
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
            }
            std::future::ready(ok)
        })
        .filter_map(|decoded| std::future::ready(decoded.ok()));
    (Streaming::new(items), failure)
}
