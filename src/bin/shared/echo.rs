//! `echo.stream`, a streaming echo for trying every call mode from the
//! command line (`rpcnet call ADDR echo.stream ... --bidi`). Included by
//! `rpcnet-node` with `#[path]`.
//!
//! * bidirectional (and unary): each request message back, as it arrives;
//! * server streaming: the one request split at newlines, one response per line;
//! * client streaming: the request messages joined with newlines, one response.

use futures::stream::{self, BoxStream, StreamExt};
use rpcnet::wire::CallKind;
use rpcnet::{CallInfo, RequestStream, RpcError};

/// The method's name.
pub const METHOD: &str = "echo.stream";

/// The handler.
pub async fn echo_stream(requests: RequestStream) -> BoxStream<'static, Result<Vec<u8>, RpcError>> {
    match CallInfo::current().map(|call| call.kind) {
        Some(CallKind::ClientStreaming) => {
            let messages: Vec<Vec<u8>> = requests.collect().await;
            stream::once(async move { Ok(messages.join(&b'\n')) }).boxed()
        }
        Some(CallKind::ServerStreaming) => requests
            .flat_map(|message| {
                let lines: Vec<Result<Vec<u8>, RpcError>> = message
                    .split(|b| *b == b'\n')
                    .map(|line| Ok(line.to_vec()))
                    .collect();
                stream::iter(lines)
            })
            .boxed(),
        _ => requests.map(Ok).boxed(),
    }
}
