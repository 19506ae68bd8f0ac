//! [`RpcConfig`]: TLS material, socket binding, keep-alive and limits,
//! shared by clients and servers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::RpcError;

/// The default time a client waits for a call: 30 seconds (2 seconds when
/// the crate's own unit tests are compiled, `cfg(test)`).
#[cfg(not(test))]
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default time a client waits for a call: 30 seconds (2 seconds when
/// the crate's own unit tests are compiled, `cfg(test)`).
#[cfg(test)]
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default [`RpcConfig::with_max_mtu`]: 9001 bytes (jumbo frames). Paths
/// that cannot carry it are found by path-MTU probing and stay at 1500 or below.
pub const DEFAULT_MAX_MTU: u16 = 9001;

/// Default [`RpcConfig::with_max_message_size`]: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// Default [`RpcConfig::with_socket_recv_buffer`]: 4 MiB.
pub const DEFAULT_SOCKET_RECV_BUFFER: usize = 4 << 20;

/// Default [`RpcConfig::with_stream_window`]: 3.75 MB, s2n-quic's default
/// (150 Mbit/s over a 100 ms round trip, twice).
pub const DEFAULT_STREAM_WINDOW: u32 = 3_750_000;

/// Default [`RpcConfig::with_max_header_size`]: 16 KiB.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 16 * 1024;

/// Configuration for an [`RpcServer`](crate::RpcServer) or [`RpcClient`](crate::RpcClient).
///
/// For a server, `cert_path` is its certificate chain (PEM) and
/// [`with_key_path`](Self::with_key_path) its private key. For a client,
/// `cert_path` is the CA (or self-signed certificate) it trusts: the client
/// trusts *only* that, never the operating system's store.
///
/// A trusted-CA file (a client's `cert_path`, a server's client CA) may
/// hold several PEM certificates, each of them trusted: during a CA
/// rotation, nodes and clients trust a bundle of the old and the new CA
/// (`docs/PKI.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    cert_path: PathBuf,
    key_path: Option<PathBuf>,
    bind_address: String,
    server_name: String,
    pub(crate) keep_alive_interval: Option<Duration>,
    client_ca_path: Option<PathBuf>,
    client_auth_optional: bool,
    client_identity: Option<(PathBuf, PathBuf)>,
    max_message_size: usize,
    max_header_size: usize,
    pub(crate) max_concurrent_streams: u64,
    pub(crate) stream_window: Option<u64>,
    pub(crate) send_buffer_size: Option<u32>,
    pub(crate) max_mtu: u16,
    pub(crate) io_recv_buffer: Option<usize>,
    pub(crate) socket_recv_buffer: usize,
    max_inflight_handshakes: usize,
    max_connections: usize,
    shared_endpoint: bool,
    pub(crate) idle_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    default_timeout: Duration,
    drain_timeout: Duration,
    stateless_reset_key: Option<StatelessResetKey>,
    /// A client that checks only the server's chain to the trusted CA,
    /// not its name: the gossip transport's first packet to a seed, whose
    /// member name it does not know yet (crate-private: application
    /// clients always verify the name).
    pub(crate) any_server_name: bool,
    /// The member the server must prove to be (members dialing members;
    /// checked on every connect, reconnects included): `None` for
    /// application clients.
    pub(crate) expected_member: Option<ExpectedMember>,
}

/// What a member dialing another requires of the server's certificate.
// `MemberAddr` holds its name inline; one per connecting configuration.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpectedMember {
    /// A member certificate that speaks for this address.
    At(crate::cluster::MemberAddr),
    /// Any member certificate (a seed, whose name is not known yet).
    Any,
}

/// The secret a server derives its stateless reset tokens from; its
/// `Debug` output does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StatelessResetKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for StatelessResetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatelessResetKey(..)")
    }
}

impl RpcConfig {
    /// A configuration with the given certificate (server: its own chain;
    /// client: the CA it trusts) and local bind address (`"127.0.0.1:0"`
    /// lets the OS choose a port).
    pub fn new(cert_path: impl Into<PathBuf>, bind_address: impl Into<String>) -> Self {
        Self {
            cert_path: cert_path.into(),
            key_path: None,
            bind_address: bind_address.into(),
            server_name: "localhost".to_owned(),
            any_server_name: false,
            expected_member: None,
            keep_alive_interval: None,
            client_ca_path: None,
            client_auth_optional: false,
            client_identity: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_concurrent_streams: 512,
            stream_window: None,
            send_buffer_size: None,
            max_mtu: DEFAULT_MAX_MTU,
            io_recv_buffer: None,
            socket_recv_buffer: DEFAULT_SOCKET_RECV_BUFFER,
            max_inflight_handshakes: 256,
            max_connections: 10_000,
            shared_endpoint: true,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            default_timeout: DEFAULT_TIMEOUT,
            drain_timeout: Duration::from_secs(30),
            stateless_reset_key: None,
        }
    }

    /// The server's private key (PEM). Required to bind a server.
    pub fn with_key_path(mut self, key_path: impl Into<PathBuf>) -> Self {
        self.key_path = Some(key_path.into());
        self
    }

    /// The name the client expects in the server's certificate (default `localhost`).
    pub fn with_server_name(mut self, server_name: impl Into<String>) -> Self {
        self.server_name = server_name.into();
        self
    }

    /// Sends QUIC PING frames at this interval so idle connections stay
    /// open. Both ends that set it ping; the idle timeout is raised to at
    /// least three intervals so one lost ping does not close the connection.
    ///
    /// Without it, a connection is still kept alive while at least one call
    /// or stream is open on it (PINGs at half the idle timeout), so calls
    /// end at their own deadline and never at the idle timer; only a
    /// connection with nothing in flight closes at its idle timeout.
    pub fn with_keep_alive_interval(mut self, interval: Duration) -> Self {
        self.keep_alive_interval = Some(interval);
        self
    }

    /// Server: require every client to present a certificate signed by
    /// this CA (mutual TLS). Clients without one are refused in the handshake.
    pub fn with_client_ca_path(mut self, ca_path: impl Into<PathBuf>) -> Self {
        self.client_ca_path = Some(ca_path.into());
        self.client_auth_optional = false;
        self
    }

    /// Server: accept clients with or without a certificate; one that
    /// presents a certificate must chain to this CA (or the handshake
    /// fails). Handlers see the verified certificate in
    /// [`CallInfo::peer_certificate`](crate::CallInfo::peer_certificate).
    /// Cluster nodes use this: members prove their role with a member
    /// certificate, application clients need none.
    pub fn with_optional_client_ca_path(mut self, ca_path: impl Into<PathBuf>) -> Self {
        self.client_ca_path = Some(ca_path.into());
        self.client_auth_optional = true;
        self
    }

    /// Client: the certificate and key presented to servers that require
    /// mutual TLS.
    pub fn with_client_identity(
        mut self,
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Self {
        self.client_identity = Some((cert_path.into(), key_path.into()));
        self
    }

    /// Largest message accepted in either direction (default 16 MiB). The
    /// length prefix is checked against it before any memory is reserved.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.min(u32::MAX as usize);
        self
    }

    /// Largest request header (method and metadata) accepted (default 16 KiB).
    pub fn with_max_header_size(mut self, bytes: usize) -> Self {
        self.max_header_size = bytes.min(u32::MAX as usize);
        self
    }

    /// Concurrent calls (QUIC bidirectional streams) on one connection
    /// (default 512): on a server, how many a client may open; on a client,
    /// how many it keeps open at once (the smaller of the two applies).
    /// Further calls wait for a slot.
    pub fn with_max_concurrent_streams(mut self, streams: u64) -> Self {
        self.max_concurrent_streams = streams.max(1);
        self
    }

    /// Bytes a peer may send on one call stream before this end reads them
    /// (QUIC flow control; default [`DEFAULT_STREAM_WINDOW`]). Together
    /// with the peer's send buffer this bounds the memory a slow reader
    /// can make a fast writer hold.
    ///
    /// The connection-wide window is this times
    /// [`max_concurrent_streams`](Self::with_max_concurrent_streams)
    /// (capped at `u32::MAX`), so a stream that is not being read (a slow
    /// consumer, a parked server stream) slows only itself: the others
    /// keep their full windows. The price is the memory bound: a peer can
    /// make one connection hold up to `stream window × max concurrent
    /// streams` bytes received but not yet read by the application (with
    /// the defaults 3.75 MB × 512 ≈ 1.9 GB; it is taken only as data
    /// arrives and is not read). Lower either setting to lower it.
    pub fn with_stream_window(mut self, bytes: u32) -> Self {
        self.stream_window = Some(bytes.max(1024).into());
        self
    }

    /// Bytes of not-yet-acknowledged data this end buffers per stream
    /// before a writer waits (s2n-quic's default is 4 MiB). A handler
    /// producing faster than its client reads is paused at this point.
    pub fn with_send_buffer_size(mut self, bytes: u32) -> Self {
        self.send_buffer_size = Some(bytes.max(1024));
        self
    }

    /// The largest UDP payload path-MTU discovery may probe up to (default
    /// [`DEFAULT_MAX_MTU`]). Connections start small and grow only
    /// when probes of a larger size are acknowledged (the floor is 1228 bytes, IP and UDP headers included), so a high ceiling is
    /// safe on ordinary 1500-byte networks and pays off on jumbo-frame
    /// links and loopback.
    pub fn with_max_mtu(mut self, bytes: u16) -> Self {
        self.max_mtu = bytes.max(1228);
        self
    }

    /// Bytes of received datagrams queued between the socket and the QUIC
    /// endpoint. Defaults: 8 MiB for a server (many connections), 1 MiB
    /// for a client endpoint (the ring is allocated and zeroed when the
    /// endpoint starts, so a smaller one connects faster).
    pub fn with_io_recv_buffer(mut self, bytes: usize) -> Self {
        self.io_recv_buffer = Some(bytes.max(64 * 1024));
        self
    }

    /// The UDP socket's kernel receive buffer (`SO_RCVBUF`; default 4 MiB,
    /// capped by the kernel at `net.core.rmem_max`). Linux's default of
    /// about 200 KB overflowed under bursts of a few hundred concurrent
    /// calls in the benchmark (about 60 datagrams dropped per 3 s at 256
    /// concurrent 1 KiB calls, each then waiting for QUIC loss recovery);
    /// with 4 MiB none were.
    pub fn with_socket_recv_buffer(mut self, bytes: usize) -> Self {
        self.socket_recv_buffer = bytes.max(64 * 1024);
        self
    }

    /// Client: whether this client may share its QUIC endpoint (UDP socket,
    /// packet rings, endpoint tasks) with other live clients of the same
    /// runtime that are configured alike (default `true`). Sharing makes
    /// every connection after the first cheaper and uses one socket for
    /// many servers; `false` gives this client an endpoint of its own, for
    /// example to spread heavy traffic to several servers over several
    /// endpoint tasks.
    pub fn with_shared_endpoint(mut self, shared: bool) -> Self {
        self.shared_endpoint = shared;
        self
    }

    /// Server: handshakes in progress before new ones are asked to retry (default 256).
    pub fn with_max_inflight_handshakes(mut self, handshakes: usize) -> Self {
        self.max_inflight_handshakes = handshakes.max(1);
        self
    }

    /// Server: open connections; further connections are closed at once (default 10,000).
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Server: the key stateless reset tokens are derived from
    /// (HMAC-SHA256 of the connection ID, truncated to 16 bytes; RFC 9000
    /// §10.3.2). A server restarted with the same key answers packets of
    /// its predecessor's connections with a stateless reset, so their
    /// clients learn at once that the connection is gone (and
    /// [`RpcClient`](crate::RpcClient) reconnects on its next call) instead
    /// of waiting for the idle timeout.
    ///
    /// Without it the server derives a key from its private key and its
    /// bind address (an HMAC, which reveals nothing of the private key), so
    /// a server restarted with the same certificate on the same address
    /// resets its predecessor's connections with no setting. Set a key
    /// when several servers share a private key *and* a bind address
    /// (for example `0.0.0.0:7000` on several hosts behind one name), so
    /// that each can be told apart. Keep the key secret, and
    /// share it only among servers that cannot hold the same connection
    /// (RFC 9000 §10.3.1). Clients ignore it.
    pub fn with_stateless_reset_key(mut self, key: [u8; 32]) -> Self {
        self.stateless_reset_key = Some(StatelessResetKey(key));
        self
    }

    /// Close a connection after this long without traffic (default 30 s).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Give up on a TLS/QUIC handshake after this long (default 10 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Client: the timeout of calls made without an explicit one (default [`DEFAULT_TIMEOUT`]).
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Server: how long a graceful shutdown waits for in-flight calls (default 30 s).
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The certificate path given to [`RpcConfig::new`].
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
    /// The private key path, if any.
    pub fn key_path(&self) -> Option<&Path> {
        self.key_path.as_deref()
    }
    /// The bind address as given.
    pub fn bind_address(&self) -> &str {
        &self.bind_address
    }
    /// The expected server name.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }
    /// The keep-alive interval, if enabled.
    pub fn keep_alive_interval(&self) -> Option<Duration> {
        self.keep_alive_interval
    }
    /// The idle timeout ([`with_idle_timeout`](Self::with_idle_timeout)).
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
    /// The message size limit.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }
    /// Whether a client may share its endpoint ([`with_shared_endpoint`](Self::with_shared_endpoint)).
    pub fn shared_endpoint(&self) -> bool {
        self.shared_endpoint
    }

    /// The endpoint-wide part of a client configuration: clients whose
    /// settings (and TLS material) are equal can share an endpoint.
    /// Per-connection settings are blanked.
    pub(crate) fn endpoint_settings(&self) -> RpcConfig {
        let mut endpoint = self.clone();
        endpoint.server_name.clear();
        endpoint.default_timeout = Duration::ZERO;
        endpoint.max_message_size = 0;
        endpoint.max_header_size = 0;
        endpoint.drain_timeout = Duration::ZERO;
        // Checked on each connection after its handshake, like the server
        // name: members dialing members share one endpoint.
        endpoint.expected_member = None;
        endpoint
    }

    /// Concurrent calls per connection ([`with_max_concurrent_streams`](Self::with_max_concurrent_streams)).
    pub fn max_concurrent_streams(&self) -> u64 {
        self.max_concurrent_streams
    }
    /// The header size limit.
    pub fn max_header_size(&self) -> usize {
        self.max_header_size
    }
    /// The default call timeout.
    pub fn default_timeout(&self) -> Duration {
        self.default_timeout
    }
    /// The drain timeout used by graceful shutdown.
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }
    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections
    }
    pub(crate) fn client_ca_path(&self) -> Option<&Path> {
        self.client_ca_path.as_deref()
    }
    pub(crate) fn client_auth_optional(&self) -> bool {
        self.client_auth_optional
    }
    pub(crate) fn client_identity(&self) -> Option<(&Path, &Path)> {
        self.client_identity
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()))
    }
    pub(crate) fn max_inflight_handshakes(&self) -> usize {
        self.max_inflight_handshakes
    }
    pub(crate) fn stateless_reset_key(&self) -> Option<&StatelessResetKey> {
        self.stateless_reset_key.as_ref()
    }

    /// The bind address, parsed.
    ///
    /// # Errors
    ///
    /// [`RpcError::ConfigError`] naming the address when it is not an
    /// `IP:port` socket address (host names are not resolved).
    pub fn parsed_bind_address(&self) -> Result<SocketAddr, RpcError> {
        self.bind_address.parse().map_err(|e| {
            RpcError::ConfigError(format!("bind address {:?}: {e}", self.bind_address))
        })
    }
}
