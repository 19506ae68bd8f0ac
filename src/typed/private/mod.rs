//! What the code `#[rpcnet::service]` generates calls: not a public API
//! (it may change in any release).
//!
//! The generated code only names types; everything else is here: method
//! descriptors and schema hashes, the response envelope, encoding and
//! decoding, and one function per call mode on each side.

mod client;
mod server;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use client::{
    bidirectional, client_streaming, cluster_bidirectional, cluster_client_streaming,
    cluster_resumable, cluster_server_streaming, cluster_unary, server_streaming, unary,
};
pub use futures::Stream;
pub use server::{
    serve_bidirectional, serve_client_streaming, serve_server_streaming, serve_unary,
    service_errors,
};

use super::codec::{Codec, CodecError};
use super::error::CallError;
use crate::RpcError;

/// One method of a typed service, as the generated code declares it.
#[derive(Debug)]
pub struct Method {
    /// The wire name, `Service.method`.
    pub name: &'static str,
    /// The signature as written (service name and version included).
    pub signature: &'static str,
    /// The codec's name.
    pub codec: &'static str,
    /// FNV-1a of signature, codec and encoding rules: what client and
    /// server compare.
    pub hash: u64,
    /// `#[rpcnet(timeout_ms = N)]`, 0 for none.
    pub timeout_ms: u64,
    /// `#[rpcnet(idempotent)]`.
    pub idempotent: bool,
    /// The call options of a call that sets none of its own, made once.
    options: std::sync::OnceLock<crate::CallOptions>,
}

impl Method {
    /// A descriptor; the hash is computed at compile time.
    pub const fn new(
        name: &'static str,
        signature: &'static str,
        codec: &'static str,
        timeout_ms: u64,
        idempotent: bool,
    ) -> Self {
        Self {
            name,
            signature,
            codec,
            hash: schema_hash(signature, codec),
            timeout_ms,
            idempotent,
            options: std::sync::OnceLock::new(),
        }
    }

    /// The options of a call that sets none of its own, made by `make`
    /// on first use.
    pub(crate) fn default_options(
        &self,
        make: impl FnOnce() -> crate::CallOptions,
    ) -> &crate::CallOptions {
        self.options.get_or_init(make)
    }

    /// `signature [codec] #hash`, as schema mismatches show it.
    fn describe(&self) -> String {
        describe(self.signature, self.codec, self.hash)
    }
}

fn describe(signature: &str, codec: &str, hash: u64) -> String {
    format!("`{signature}` [{codec}] #{hash:016x}")
}

/// The version of the rules that map a signature to messages (which types
/// bypass the codec, the response envelope): part of every hash, so peers
/// built with different rules refuse each other instead of misreading.
/// 2: `Vec<u8>` travels as it is, like `Bytes`.
const ENCODING_RULES: &[u8] = b"rules/2";

/// FNV-1a (64 bit) over `signature`, a zero byte, `codec`, a zero byte and
/// the encoding rules' version.
pub const fn schema_hash(signature: &str, codec: &str) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [
        signature.as_bytes(),
        &[0],
        codec.as_bytes(),
        &[0],
        ENCODING_RULES,
    ];
    let mut p = 0;
    while p < parts.len() {
        let bytes = parts[p];
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(PRIME);
            i += 1;
        }
        p += 1;
    }
    hash
}

/// Types a typed service can encode with a codec.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot travel in an rpcnet service: it needs serde's `Serialize` and `Deserialize`",
    label = "this type is sent and received by the service",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait Wire: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Wire for T {}

/// The generated code's compile-time check of each type.
pub fn assert_wire<T: Wire>() {}

/// How values of `T` become message bytes and back.
pub trait Encoding<T>: 'static {
    /// The message bytes of `value`.
    ///
    /// # Errors
    /// The codec's.
    fn encode(value: T) -> Result<Vec<u8>, CodecError>;

    /// The value of a whole message.
    ///
    /// # Errors
    /// The codec's.
    fn decode(bytes: Vec<u8>) -> Result<T, CodecError>;

    /// [`decode`](Self::decode) of a message as received: a codec reads
    /// it in place, `Bytes` are taken as they are.
    ///
    /// # Errors
    /// The codec's.
    fn decode_bytes(bytes: Bytes) -> Result<T, CodecError> {
        Self::decode(Vec::from(bytes))
    }

    /// [`decode`](Self::decode), handing back the message's buffer when
    /// the value does not keep it (empty otherwise), for
    /// [`encode_reusing`](Self::encode_reusing): a unary handler's answer
    /// is then written where its request was, one allocation fewer.
    ///
    /// # Errors
    /// The codec's.
    fn decode_keeping_buffer(bytes: Vec<u8>) -> Result<(T, Vec<u8>), CodecError> {
        Self::decode(bytes).map(|value| (value, Vec::new()))
    }

    /// [`encode`](Self::encode) into `buffer` (cleared first) when the
    /// encoding writes bytes at all.
    ///
    /// # Errors
    /// The codec's.
    fn encode_reusing(value: T, buffer: Vec<u8>) -> Result<Vec<u8>, CodecError> {
        drop(buffer);
        Self::encode(value)
    }
}

/// Values encoded by codec `C`.
pub struct Coded<C>(std::marker::PhantomData<fn() -> C>);

impl<C: Codec, T: Wire> Encoding<T> for Coded<C> {
    fn encode(value: T) -> Result<Vec<u8>, CodecError> {
        // Room for a small message and the response's tag byte without
        // growing the buffer step by step.
        let mut out = Vec::with_capacity(64);
        C::encode(&value, &mut out)?;
        Ok(out)
    }

    fn decode(bytes: Vec<u8>) -> Result<T, CodecError> {
        C::decode(&bytes)
    }

    fn decode_bytes(bytes: Bytes) -> Result<T, CodecError> {
        C::decode(&bytes)
    }

    fn decode_keeping_buffer(mut bytes: Vec<u8>) -> Result<(T, Vec<u8>), CodecError> {
        let value = C::decode(&bytes)?;
        bytes.clear();
        Ok((value, bytes))
    }

    fn encode_reusing(value: T, mut buffer: Vec<u8>) -> Result<Vec<u8>, CodecError> {
        buffer.clear();
        buffer.reserve(64);
        C::encode(&value, &mut buffer)?;
        Ok(buffer)
    }
}

/// `Bytes` and `Vec<u8>` as they are: no codec, and no copy where the
/// bytes own their whole buffer.
pub struct Raw;

impl Encoding<Vec<u8>> for Raw {
    fn encode(value: Vec<u8>) -> Result<Vec<u8>, CodecError> {
        Ok(value)
    }

    fn decode(bytes: Vec<u8>) -> Result<Vec<u8>, CodecError> {
        Ok(bytes)
    }

    fn decode_bytes(bytes: Bytes) -> Result<Vec<u8>, CodecError> {
        Ok(Vec::from(bytes))
    }
}

impl Encoding<Bytes> for Raw {
    fn encode(value: Bytes) -> Result<Vec<u8>, CodecError> {
        Ok(Vec::from(value))
    }

    fn decode(bytes: Vec<u8>) -> Result<Bytes, CodecError> {
        Ok(Bytes::from(bytes))
    }

    fn decode_bytes(bytes: Bytes) -> Result<Bytes, CodecError> {
        Ok(bytes)
    }
}

/// The last byte of every typed response message: what the bytes before it are.
mod tag {
    /// The value (`Ok`).
    pub const OK: u8 = 0;
    /// The service's error (`Err(E)`).
    pub const SERVICE_ERROR: u8 = 1;
    /// A refusal for a schema mismatch: the server's hash (8 bytes,
    /// big-endian) and signature and codec text (`signature\0codec`).
    pub const SCHEMA_MISMATCH: u8 = 2;
}

/// Whether a response message is a value (a resumable stream's position).
fn is_value(message: &[u8]) -> bool {
    message.last() == Some(&tag::OK)
}

fn codec_error(m: &Method, what: &str, e: CodecError) -> RpcError {
    RpcError::Codec(format!("{} {what} of {}: {e}", m.codec, m.name))
}

/// The request message of `value`.
fn encode_request<Enc: Encoding<T>, T>(m: &Method, value: T) -> Result<Vec<u8>, RpcError> {
    Enc::encode(value).map_err(|e| codec_error(m, "could not encode a request", e))
}

/// The response message of a handler's result; `Err` for an outcome that
/// is not a message (a status or an error item instead).
fn encode_response<C: Codec, Enc: Encoding<T>, T, E: Wire>(
    m: &Method,
    result: Result<T, CallError<E>>,
) -> Result<Vec<u8>, RpcError> {
    encode_response_into::<C, Enc, T, E>(m, result, Vec::new())
}

/// [`encode_response`] writing a value into `buffer` (see
/// [`Encoding::encode_reusing`]).
fn encode_response_into<C: Codec, Enc: Encoding<T>, T, E: Wire>(
    m: &Method,
    result: Result<T, CallError<E>>,
    buffer: Vec<u8>,
) -> Result<Vec<u8>, RpcError> {
    let (mut message, tag) = match result {
        Ok(value) => (
            Enc::encode_reusing(value, buffer)
                .map_err(|e| codec_error(m, "could not encode a response", e))?,
            tag::OK,
        ),
        Err(CallError::Service(e)) => (
            Coded::<C>::encode(e)
                .map_err(|e| codec_error(m, "could not encode a service error", e))?,
            tag::SERVICE_ERROR,
        ),
        Err(CallError::Rpc(e)) => return Err(e),
        Err(CallError::SchemaMismatch {
            method,
            client,
            server,
        }) => {
            return Err(RpcError::RemoteError(super::error::mismatch_text(
                &method, &client, &server,
            )))
        }
    };
    message.push(tag);
    Ok(message)
}

/// The refusal a server answers to a call whose schema hash differs.
fn mismatch_response(m: &Method) -> Vec<u8> {
    let mut message = Vec::with_capacity(8 + m.signature.len() + 1 + m.codec.len() + 1);
    message.extend_from_slice(&m.hash.to_be_bytes());
    message.extend_from_slice(m.signature.as_bytes());
    message.push(0);
    message.extend_from_slice(m.codec.as_bytes());
    message.push(tag::SCHEMA_MISMATCH);
    message
}

/// Decodes a response message (a vector converts without a copy).
fn decode_response<C: Codec, Enc: Encoding<T>, T, E: Wire>(
    m: &Method,
    message: impl Into<Bytes>,
) -> Result<T, CallError<E>> {
    let mut message = message.into();
    let tag = message.last().copied();
    message.truncate(message.len().saturating_sub(1));
    match tag {
        Some(tag::OK) => Enc::decode_bytes(message)
            .map_err(|e| codec_error(m, "could not decode a response", e).into()),
        Some(tag::SERVICE_ERROR) => Err(Coded::<C>::decode_bytes(message)
            .map(CallError::Service)
            .unwrap_or_else(|e| codec_error(m, "could not decode a service error", e).into())),
        Some(tag::SCHEMA_MISMATCH) if message.len() >= 8 => {
            let (hash, text) = message.split_at(8);
            let hash = u64::from_be_bytes(hash.try_into().expect("8 bytes"));
            let text = String::from_utf8_lossy(text);
            let (signature, codec) = text.split_once('\0').unwrap_or((&text, "?"));
            Err(CallError::SchemaMismatch {
                method: m.name.to_owned(),
                client: m.describe(),
                server: describe(signature, codec, hash),
            })
        }
        _ => Err(RpcError::Codec(format!(
            "the response of {} is not a typed response (is the method served by \
             #[rpcnet::service]?)",
            m.name
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::Postcard;

    static M: Method = Method::new(
        "svc.m",
        "svc.m(u32) -> Result<u32,String>",
        "postcard",
        0,
        false,
    );

    #[test]
    fn the_hash_covers_signature_and_codec() {
        assert_ne!(schema_hash("a", "postcard"), schema_hash("b", "postcard"));
        assert_ne!(schema_hash("a", "postcard"), schema_hash("a", "bincode"));
        assert_ne!(schema_hash("ab", "c"), schema_hash("a", "bc"));
        assert_eq!(M.hash, schema_hash(M.signature, M.codec));
    }

    #[test]
    fn responses_round_trip_through_the_envelope() {
        type Enc = Coded<Postcard>;
        let ok = encode_response::<Postcard, Enc, u32, String>(&M, Ok(7)).unwrap();
        assert_eq!(ok.last(), Some(&tag::OK));
        assert_eq!(
            decode_response::<Postcard, Enc, u32, String>(&M, ok).unwrap(),
            7
        );
        let err =
            encode_response::<Postcard, Enc, u32, String>(&M, Err(CallError::Service("no".into())))
                .unwrap();
        assert!(matches!(
            decode_response::<Postcard, Enc, u32, String>(&M, err),
            Err(CallError::Service(e)) if e == "no"
        ));
        assert!(matches!(
            encode_response::<Postcard, Enc, u32, String>(
                &M,
                Err(CallError::Rpc(RpcError::Unavailable("busy".into())))
            ),
            Err(RpcError::Unavailable(_))
        ));
        for not_typed in [vec![], vec![9], b"hello".to_vec()] {
            assert!(matches!(
                decode_response::<Postcard, Enc, u32, String>(&M, not_typed),
                Err(CallError::Rpc(RpcError::Codec(_)))
            ));
        }
    }

    #[test]
    fn raw_bytes_keep_their_buffer() {
        let mut buffer = Vec::with_capacity(16);
        buffer.extend_from_slice(b"abc");
        let pointer = buffer.as_ptr();
        let message =
            encode_response::<Postcard, Raw, Bytes, String>(&M, Ok(Bytes::from(buffer))).unwrap();
        assert_eq!(message.as_ptr(), pointer, "encoded in place");
        let back = decode_response::<Postcard, Raw, Bytes, String>(&M, message).unwrap();
        assert_eq!(back, b"abc".as_slice());
        assert_eq!(back.as_ptr(), pointer, "decoded in place");
        let request = encode_request::<Raw, Bytes>(&M, back).unwrap();
        assert_eq!(request.as_ptr(), pointer, "a request too");
    }

    #[test]
    fn byte_vectors_travel_as_they_are() {
        let mut buffer = Vec::with_capacity(16);
        buffer.extend_from_slice(b"abc");
        let pointer = buffer.as_ptr();
        let request = encode_request::<Raw, Vec<u8>>(&M, buffer).unwrap();
        assert_eq!(request, b"abc", "no length prefix, no codec");
        assert_eq!(request.as_ptr(), pointer, "not copied");
        let (value, _) = <Raw as Encoding<Vec<u8>>>::decode_keeping_buffer(request).unwrap();
        assert_eq!(value.as_ptr(), pointer, "decoded in place");
        let message = encode_response::<Postcard, Raw, Vec<u8>, String>(&M, Ok(value)).unwrap();
        assert_eq!(message, b"abc\0", "the value and the tag byte");
        let back = decode_response::<Postcard, Raw, Vec<u8>, String>(&M, message).unwrap();
        assert_eq!(back, b"abc");
    }

    #[test]
    fn a_unary_answer_is_written_in_its_request_buffer() {
        type Enc = Coded<Postcard>;
        let request = Enc::encode(vec![7u8; 40]).unwrap();
        let pointer = request.as_ptr();
        let (value, buffer): (Vec<u8>, Vec<u8>) = Enc::decode_keeping_buffer(request).unwrap();
        assert_eq!(value, vec![7u8; 40]);
        let answer =
            encode_response_into::<Postcard, Enc, Vec<u8>, String>(&M, Ok(value), buffer).unwrap();
        assert_eq!(answer.as_ptr(), pointer, "no new allocation");
        let back = decode_response::<Postcard, Enc, Vec<u8>, String>(&M, answer).unwrap();
        assert_eq!(back, vec![7u8; 40]);
    }

    #[test]
    fn a_mismatch_names_both_sides() {
        static OTHER: Method = Method::new(
            "svc.m",
            "svc.m(u64) -> Result<u32,String>",
            "postcard",
            0,
            false,
        );
        let refusal = mismatch_response(&OTHER);
        let Err(CallError::SchemaMismatch {
            method,
            client,
            server,
        }) = decode_response::<Postcard, Coded<Postcard>, u32, String>(&M, refusal)
        else {
            panic!("a mismatch")
        };
        assert_eq!(method, "svc.m");
        assert!(
            client.contains("svc.m(u32)") && client.contains("[postcard]"),
            "{client}"
        );
        assert!(server.contains("svc.m(u64)"), "{server}");
        assert!(server.contains(&format!("{:016x}", OTHER.hash)), "{server}");
    }
}
