//! What the server's QUIC endpoint decides before a connection exists:
//! whether to admit a connection attempt, and the stateless reset tokens
//! it hands out.

use std::convert::Infallible;

use aws_lc_rs::hmac;
use s2n_quic::provider::endpoint_limits::{self, ConnectionAttempt, Limiter, Outcome};
use s2n_quic::provider::stateless_reset_token;
use s2n_quic_core::stateless_reset::token::{Token, LEN as TOKEN_LEN};

use crate::config::StatelessResetKey;

/// Admits connection attempts: refuses them with `CONNECTION_REFUSED`
/// before any handshake work when the endpoint already holds
/// `max_connections` connections (handshaking ones included), otherwise
/// applies s2n-quic's default limits (Retry beyond `max_inflight_handshakes`
/// handshakes in progress, per-port throttling).
pub(crate) struct Admission {
    max_connections: usize,
    default: endpoint_limits::default::Limits,
}

impl Admission {
    pub(crate) fn new(max_inflight_handshakes: usize, max_connections: usize) -> Self {
        let default = endpoint_limits::Default::builder()
            .with_inflight_handshake_limit(max_inflight_handshakes)
            .and_then(|b| b.build());
        let default = match default {
            Ok(limits) => limits,
            Err(never) => match never {},
        };
        Self {
            max_connections,
            default,
        }
    }
}

impl Limiter for Admission {
    fn on_connection_attempt(&mut self, attempt: &ConnectionAttempt) -> Outcome {
        if attempt.connection_count >= self.max_connections {
            return Outcome::close();
        }
        self.default.on_connection_attempt(attempt)
    }
}

/// Stateless reset tokens derived from a key: the first 16 bytes of
/// HMAC-SHA256(key, connection ID), so a server restarted with the same
/// key gives the same token for a connection ID (RFC 9000 §10.3.2 suggests
/// this construction).
pub(crate) struct ResetTokens {
    key: hmac::Key,
}

impl ResetTokens {
    /// Tokens from `key`, or from a random key if none is configured.
    pub(crate) fn new(key: Option<&StatelessResetKey>) -> Self {
        let bytes = match key {
            Some(key) => key.0,
            None => rand::random(),
        };
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        }
    }
}

impl stateless_reset_token::Generator for ResetTokens {
    fn generate(&mut self, local_connection_id: &[u8]) -> Token {
        let tag = hmac::sign(&self.key, local_connection_id);
        let mut token = [0u8; TOKEN_LEN];
        token.copy_from_slice(&tag.as_ref()[..TOKEN_LEN]);
        Token::from(token)
    }
}

impl stateless_reset_token::Provider for ResetTokens {
    type Generator = Self;
    type Error = Infallible;

    fn start(self) -> Result<Self, Infallible> {
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateless_reset_token::Generator as _;

    #[test]
    fn tokens_depend_on_the_key_and_the_connection_id_only() {
        let key = StatelessResetKey([7; 32]);
        let mut a = ResetTokens::new(Some(&key));
        let mut restarted = ResetTokens::new(Some(&key));
        let mut other = ResetTokens::new(Some(&StatelessResetKey([8; 32])));
        assert!(a.generate(b"conn-1") == restarted.generate(b"conn-1"));
        assert!(a.generate(b"conn-1") != a.generate(b"conn-2"));
        assert!(a.generate(b"conn-1") != other.generate(b"conn-1"));
    }
}
