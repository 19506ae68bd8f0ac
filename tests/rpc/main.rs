//! Integration tests over real QUIC on loopback.

mod abuse;
mod calls;
mod lifecycle;
mod middleware;
mod resilience;
mod shutdown;
mod support;
mod telemetry;
mod tls;
