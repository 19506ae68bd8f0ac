//! How typed values become message bytes: [`Codec`], [`Postcard`] (the
//! default) and [`Bincode`] (feature `bincode`).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A codec's own error, wrapped into [`RpcError::Codec`](crate::RpcError::Codec)
/// with what was being encoded or decoded.
pub type CodecError = Box<dyn std::error::Error + Send + Sync>;

/// A serde format for a typed service's messages, chosen per service with
/// `#[rpcnet::service(codec = Type)]`.
///
/// Values whose type is written `Bytes` (`bytes::Bytes`) or `Vec<u8>`
/// bypass the codec: they travel as they are.
pub trait Codec: Send + Sync + 'static {
    /// The codec's name; it is part of every method's schema hash, so a
    /// client and a server using different codecs are told apart.
    const NAME: &'static str;

    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    /// The format's error, if it cannot represent `value`.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes a whole message.
    ///
    /// # Errors
    /// The format's error, if `bytes` are not a `T`.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// [postcard](https://docs.rs/postcard): compact (varints, no field
/// names), not self-describing. The default codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    const NAME: &'static str = "postcard";

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let taken = std::mem::take(out);
        *out = postcard::to_extend(value, taken)?;
        Ok(())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

/// [bincode](https://docs.rs/bincode) 1.x with its default options, the
/// format of the guide's snippets (feature `bincode`, on by default).
#[cfg(feature = "bincode")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

#[cfg(feature = "bincode")]
impl Codec for Bincode {
    const NAME: &'static str = "bincode";

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        Ok(bincode::serialize_into(out, value)?)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        Ok(bincode::deserialize(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<C: Codec>() {
        let value = (7u32, "seven".to_string(), Some(vec![1u8, 2, 3]));
        let mut out = vec![0xff];
        C::encode(&value, &mut out).unwrap();
        assert_eq!(out[0], 0xff, "{} appends", C::NAME);
        let back: (u32, String, Option<Vec<u8>>) = C::decode(&out[1..]).unwrap();
        assert_eq!(back, value);
        assert!(C::decode::<(u32, String)>(&[]).is_err());
    }

    #[test]
    fn postcard_round_trips_and_appends() {
        round_trip::<Postcard>();
    }

    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_round_trips_and_appends() {
        round_trip::<Bincode>();
    }
}
