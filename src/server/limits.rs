//! What the server's QUIC endpoint decides before a connection exists:
//! whether to admit a connection attempt, and the stateless reset tokens
//! it hands out.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::hmac;
use s2n_quic::provider::endpoint_limits::{self, ConnectionAttempt, Limiter, Outcome};
use s2n_quic::provider::stateless_reset_token;
use s2n_quic_core::stateless_reset::token::{Token, LEN as TOKEN_LEN};

use crate::config::StatelessResetKey;

/// Admits connection attempts: refuses them with `CONNECTION_REFUSED`
/// before any handshake work when the endpoint already holds
/// `max_connections` connections (handshaking ones included) or the
/// server is shutting down, otherwise
/// applies s2n-quic's default limits (Retry beyond `max_inflight_handshakes`
/// handshakes in progress, per-port throttling).
pub(crate) struct Admission {
    max_connections: usize,
    default: endpoint_limits::default::Limits,
    /// True once the server begins to shut down: every attempt is refused.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Admission {
    pub(crate) fn new(
        max_inflight_handshakes: usize,
        max_connections: usize,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
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
            shutdown,
        }
    }
}

impl Limiter for Admission {
    fn on_connection_attempt(&mut self, attempt: &ConnectionAttempt) -> Outcome {
        if attempt.connection_count >= self.max_connections || *self.shutdown.borrow() {
            return Outcome::close();
        }
        self.default.on_connection_attempt(attempt)
    }
}

/// The label keying the derivation of a stateless reset key from a
/// server's private key and address.
const RESET_KEY_LABEL: &[u8] = b"rpcnet stateless reset key v1";

/// Stateless reset tokens derived from a key: the first 16 bytes of
/// HMAC-SHA256(key, connection ID), so a server restarted with the same
/// key gives the same token for a connection ID (RFC 9000 §10.3.2 suggests
/// this construction).
#[derive(Clone)]
pub(crate) struct ResetTokens {
    /// Set when the endpoint is bound (tokens are generated only for
    /// connection IDs issued after that).
    key: Arc<OnceLock<hmac::Key>>,
}

impl ResetTokens {
    /// Tokens from `key`; without one, the key is derived once the
    /// endpoint is bound (see [`bound`](Self::bound)).
    pub(crate) fn new(key: Option<&StatelessResetKey>) -> Self {
        let cell = OnceLock::new();
        if let Some(key) = key {
            let _ = cell.set(hmac::Key::new(hmac::HMAC_SHA256, &key.0));
        }
        Self {
            key: Arc::new(cell),
        }
    }

    /// The endpoint is bound to `bound`. Without a configured key, the key
    /// is derived from the server's private key (`private_key`, its PEM
    /// bytes) and that address: HMAC-SHA256 keyed with a fixed label over
    /// both. A server restarted with the same private key on the same
    /// address therefore resets its predecessor's connections with no
    /// setting, while servers that share a private key on other addresses
    /// get different tokens (RFC 9000 §10.3.1: a server must not be able
    /// to reset another's connections). The derived key reveals nothing of
    /// the private key (it is an HMAC output).
    pub(crate) fn bound(&self, private_key: &[u8], bound: std::net::SocketAddr) {
        self.key.get_or_init(|| {
            let label = hmac::Key::new(hmac::HMAC_SHA256, RESET_KEY_LABEL);
            let mut context = hmac::Context::with_key(&label);
            context.update(private_key);
            context.update(bound.to_string().as_bytes());
            hmac::Key::new(hmac::HMAC_SHA256, context.sign().as_ref())
        });
    }
}

impl stateless_reset_token::Generator for ResetTokens {
    fn generate(&mut self, local_connection_id: &[u8]) -> Token {
        // Never unset in practice (`bound` runs before any connection);
        // a random key is the safe fallback.
        let key = self
            .key
            .get_or_init(|| hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>()));
        let tag = hmac::sign(key, local_connection_id);
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
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut a = ResetTokens::new(Some(&key));
        a.bound(b"k", addr);
        let mut restarted = ResetTokens::new(Some(&key));
        restarted.bound(b"other", addr);
        let mut other = ResetTokens::new(Some(&StatelessResetKey([8; 32])));
        assert!(a.generate(b"conn-1") == restarted.generate(b"conn-1"));
        assert!(a.generate(b"conn-1") != a.generate(b"conn-2"));
        assert!(a.generate(b"conn-1") != other.generate(b"conn-1"));
    }

    #[test]
    fn without_a_key_tokens_follow_the_private_key_and_the_address() {
        let addr = "127.0.0.1:7000".parse().unwrap();
        let other_port = "127.0.0.1:7001".parse().unwrap();
        let tokens = |key: &[u8], at| {
            let tokens = ResetTokens::new(None);
            tokens.bound(key, at);
            tokens
        };
        let mut a = tokens(b"private key A", addr);
        let mut restarted = tokens(b"private key A", addr);
        let mut elsewhere = tokens(b"private key A", other_port);
        let mut other_key = tokens(b"private key B", addr);
        assert!(a.generate(b"conn-1") == restarted.generate(b"conn-1"));
        assert!(a.generate(b"conn-1") != elsewhere.generate(b"conn-1"));
        assert!(a.generate(b"conn-1") != other_key.generate(b"conn-1"));
    }
}
