//! What client, director and worker say to each other. Messages are
//! bincode-encoded, as in the guide.

use std::net::SocketAddr;

use rpcnet::RpcError;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Director, server streaming: the first response is an [`Assignment`];
/// the call then stays open and counts as one connection to that worker in
/// the director's pool until the client drops it (or its connection dies).
pub const ASSIGN_METHOD: &str = "director.assign_worker";

/// Worker, server streaming: a [`GenerateRequest`] in, [`Token`]s out, one
/// per token interval, until the client drops the call or the worker fails.
pub const GENERATE_METHOD: &str = "worker.generate";

/// The tag filter the director selects workers with.
pub const WORKER_FILTER: &str = "role=worker";

/// A client asking the director for a worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignRequest {
    /// Workers that just failed for this client: the director picks
    /// another one if it has any, and one of these only as a last resort.
    pub avoid: Vec<SocketAddr>,
}

/// The director's answer: the worker to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The worker's RPC address.
    pub addr: SocketAddr,
    /// Its `label` tag.
    pub label: String,
}

/// Starts (or resumes) a token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The sequence number of the first token wanted (1 for a new stream,
    /// the last one received plus one after a failover).
    pub from_sequence: u64,
}

/// One item of the token stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Position in the stream, from 1.
    pub sequence: u64,
    /// `token-<sequence>`.
    pub text: String,
    /// Tokens in the stream so far, this one included.
    pub total: u64,
}

impl Token {
    /// The token at `sequence`.
    pub fn at(sequence: u64) -> Self {
        Self {
            sequence,
            text: format!("token-{sequence}"),
            total: sequence,
        }
    }
}

/// Encodes a message.
///
/// # Errors
/// `RpcError::SerializationError` if bincode refuses the value.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, RpcError> {
    Ok(bincode::serialize(message)?)
}

/// Decodes a message. Every message here is small; anything longer than
/// 64 KiB is refused before decoding.
///
/// # Errors
/// `RpcError::SerializationError` for bytes that are not a `T`, or
/// `RpcError::MessageTooLarge`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
    const LIMIT: usize = 64 * 1024;
    if bytes.len() > LIMIT {
        return Err(RpcError::MessageTooLarge {
            size: bytes.len(),
            limit: LIMIT,
        });
    }
    Ok(bincode::deserialize(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_a_typed_error() {
        let request = AssignRequest {
            avoid: vec!["127.0.0.1:62001".parse().unwrap()],
        };
        assert_eq!(
            decode::<AssignRequest>(&encode(&request).unwrap()).unwrap(),
            request
        );
        let token = Token::at(7);
        assert_eq!(token.text, "token-7");
        assert_eq!(decode::<Token>(&encode(&token).unwrap()).unwrap(), token);
        assert!(matches!(
            decode::<Token>(&[0xff; 3]),
            Err(RpcError::SerializationError(_))
        ));
        // A length prefix claiming a huge string must not allocate it.
        let mut lying = 1u64.to_le_bytes().to_vec();
        lying.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode::<Token>(&lying).is_err());
        assert!(matches!(
            decode::<Token>(&vec![0; 70_000]),
            Err(RpcError::MessageTooLarge { .. })
        ));
    }
}
