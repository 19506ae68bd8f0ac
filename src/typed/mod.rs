//! Typed services: a trait of `async fn`s under
//! [`#[rpcnet::service]`](crate::service) becomes a server adapter, a
//! client and a cluster client, with serde types for requests, responses
//! and errors. This module holds what they use: [`Streaming`],
//! [`Resumable`], [`CallError`], the [`Codec`]s and [`Registrar`].
//!
//! # On the wire
//!
//! A typed service is ordinary rpcnet calls (`docs/PROTOCOL.md`), so
//! untyped clients and servers can take part:
//!
//! * **Method names** are `Service.method`: the service's name
//!   (`#[rpcnet::service(name = "...")]`, default the trait's name) and
//!   the method's (`#[rpcnet(name = "...")]`, default its Rust name).
//! * **Requests** are the codec's encoding of the arguments: nothing for
//!   none, the value for one, a tuple for several. A request stream sends
//!   one message per item.
//! * **Responses** (each item of a response stream too) are the codec's
//!   encoding followed by one tag byte: `0` a value, `1` the service's
//!   error `E`, `2` a schema refusal (below). A failure of the call itself
//!   (an `RpcError`: unknown method, deadline, a handler's
//!   `CallError::Rpc`) travels as rpcnet's status or error frame, never in
//!   a message, so the caller tells [`CallError::Service`] from
//!   [`CallError::Rpc`] without guessing.
//! * **`Bytes`** (`bytes::Bytes`) and **`Vec<u8>`** standing alone (a
//!   method's only argument, a request stream's item, a response's value
//!   `T` or a response stream's item) bypass the codec: the bytes are the
//!   message (plus the tag byte for responses), moved rather than copied
//!   where the buffer allows. Bytes inside other types (a struct's
//!   `Vec<u8>` field, a tuple of several arguments, the error `E`) go
//!   through the codec.
//! * **Schema check.** Every typed call carries in its request header
//!   a 64-bit FNV-1a hash of the method's signature as written (wire name,
//!   argument and result types, the service's `version`), the codec's
//!   name and the version of these encoding rules. A server whose hash
//!   differs answers with its own signature instead of running the
//!   handler, and the caller gets
//!   [`CallError::SchemaMismatch`] ("service schema mismatch for
//!   `Service.method`: client ..., server ..."), not a decoding error.
//!   Calls without a hash (untyped clients) are not checked. The hash
//!   sees type *names*: a changed field inside a type of the same name
//!   goes unnoticed, which is what `version = N` is for.
//!
//! # Refusing a call
//!
//! A handler declared `-> Result<T, CallError<E>>` can answer
//! `Err(CallError::Rpc(RpcError::Unavailable(reason)))`: the server then
//! ends the call with status `Unavailable`, the caller gets
//! [`RpcError::Unavailable`](crate::RpcError::Unavailable), and a
//! `ClusterClient` counts the call as never run and tries another worker
//! (unary calls). Any other `RpcError` from a handler reaches the caller as
//! [`RpcError::RemoteError`](crate::RpcError::RemoteError) with its text.

mod codec;
mod error;
mod register;
mod resumable;
mod stream;

#[doc(hidden)]
#[path = "private/mod.rs"]
pub mod __private;

#[cfg(feature = "bincode")]
pub use codec::Bincode;
pub use codec::{Codec, CodecError, Postcard};
pub use error::CallError;
pub use register::Registrar;
pub use resumable::Resumable;
pub use stream::Streaming;
