//! What client, director and worker say to each other: two typed services
//! (`#[rpcnet::service]`), so the messages, their encoding (postcard) and
//! their errors are declared once and checked on both sides. The wire
//! names stay `director.assign_worker` and `worker.generate`.

use rpcnet::cluster::MemberAddr;

use rpcnet::typed::Streaming;
use serde::{Deserialize, Serialize};

/// The director: hands out workers.
#[rpcnet::service(name = "director")]
pub trait Director {
    /// Server streaming: the first item is an [`Assignment`]; the call
    /// then stays open and counts as one connection to that worker in the
    /// director's pool until the client drops it (or its connection dies).
    async fn assign_worker(&self, request: AssignRequest)
        -> Streaming<Result<Assignment, Refusal>>;
}

/// A worker: generates tokens.
#[rpcnet::service(name = "worker")]
pub trait Worker {
    /// Server streaming: [`Token`]s from `request.from_sequence`, one per
    /// token interval, until the client drops the call or the worker fails
    /// (the stream then ends with a [`Refusal`], so the client fails over).
    async fn generate(&self, request: GenerateRequest) -> Streaming<Result<Token, Refusal>>;
}

/// Why a director or worker cannot serve a call: no worker to assign, or
/// a worker that is failed or shutting down. Its text is what the client
/// prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tag filter the director selects workers with.
pub const WORKER_FILTER: &str = "role=worker";

/// A client asking the director for a worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignRequest {
    /// Workers that just failed for this client: the director picks
    /// another one if it has any, and one of these only as a last resort.
    pub avoid: Vec<MemberAddr>,
}

/// The director's answer: the worker to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The worker's RPC address.
    pub addr: MemberAddr,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_names_are_the_guides() {
        assert_eq!(DirectorClient::NAME, "director");
        assert_eq!(WorkerClient::NAME, "worker");
        assert_eq!(Token::at(7).text, "token-7");
    }
}
