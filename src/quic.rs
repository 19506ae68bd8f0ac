//! Building a QUIC endpoint from an [`RpcConfig`]: the UDP socket
//! provider and s2n-quic's transport limits. The configuration holds the
//! values; what they mean for s2n-quic is decided here, for servers and
//! clients alike.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::DEFAULT_STREAM_WINDOW;
use crate::{RpcConfig, RpcError};

/// The UDP socket provider bound to `addr`, with the MTU ceiling.
pub(crate) fn io(
    config: &RpcConfig,
    addr: SocketAddr,
    default_recv_buffer: usize,
) -> Result<crate::udp::UdpIo, RpcError> {
    Ok(crate::udp::UdpIo {
        addr,
        max_mtu: config.max_mtu,
        socket_recv_buffer: config.socket_recv_buffer,
        ring_recv_buffer: u32::try_from(config.io_recv_buffer.unwrap_or(default_recv_buffer))
            .unwrap_or(u32::MAX),
    })
}

/// QUIC transport limits derived from this configuration.
/// `control_streams`: unidirectional streams the peer may open (the
/// server takes the client's one control stream; clients take none).
pub(crate) fn limits(
    config: &RpcConfig,
    control_streams: u64,
) -> Result<s2n_quic::provider::limits::Limits, RpcError> {
    let mut idle = config.idle_timeout;
    let mut limits = s2n_quic::provider::limits::Limits::new()
        .with_max_open_remote_bidirectional_streams(config.max_concurrent_streams)
        .map_err(bad)?
        // A client's own cap on open calls; s2n-quic's default is 100,
        // which silently queued the 101st concurrent call behind a
        // closing stream (tens of ms) even when the server allowed more.
        .with_max_open_local_bidirectional_streams(config.max_concurrent_streams)
        .map_err(bad)?
        .with_max_open_remote_unidirectional_streams(control_streams)
        .map_err(bad)?
        .with_max_handshake_duration(config.handshake_timeout)
        .map_err(bad)?;
    let window = config
        .stream_window
        .unwrap_or(u64::from(DEFAULT_STREAM_WINDOW));
    // The connection window has room for every stream's full window
    // (see `with_stream_window`): s2n-quic's default equals one stream
    // window, so a single unread stream used up every stream's credit.
    let connection_window = window
        .saturating_mul(config.max_concurrent_streams)
        .clamp(window, u64::from(u32::MAX));
    limits = limits
        .with_bidirectional_local_data_window(window)
        .map_err(bad)?
        .with_bidirectional_remote_data_window(window)
        .map_err(bad)?
        .with_data_window(connection_window)
        .map_err(bad)?;
    if let Some(size) = config.send_buffer_size {
        limits = limits.with_max_send_buffer_size(size).map_err(bad)?;
    }
    if let Some(interval) = config.keep_alive_interval {
        idle = idle.max(interval * 3);
        limits = limits.with_max_keep_alive_period(interval).map_err(bad)?;
    } else if idle > Duration::ZERO {
        // Keep-alive runs only while calls are in flight (see
        // `with_keep_alive_interval`); s2n-quic would ping at 3/4 of
        // the idle timeout, half leaves room for a lost PING.
        limits = limits
            .with_max_keep_alive_period((idle / 2).max(Duration::from_millis(1)))
            .map_err(bad)?;
    }
    limits.with_max_idle_timeout(idle).map_err(bad)
}

fn bad(e: impl std::fmt::Display) -> RpcError {
    RpcError::ConfigError(format!("QUIC limits: {e}"))
}

/// Wraps a failure to start a QUIC endpoint (socket in use, bad TLS material...).
pub(crate) fn start_error(addr: SocketAddr, e: impl std::fmt::Display) -> RpcError {
    RpcError::IoError(std::io::Error::other(format!(
        "cannot start QUIC endpoint on {addr}: {e}"
    )))
}
