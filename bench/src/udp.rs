//! The physical floor: a blocking UDP ping-pong on loopback between two processes.

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use crate::report::median;

pub fn echo_server(ready: impl FnOnce(SocketAddr)) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    ready(socket.local_addr().unwrap());
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        socket.send_to(&buf[..n], from).unwrap();
    }
}

/// Median round trip of a 16-byte datagram, in microseconds.
pub fn ping_pong_p50(server: SocketAddr, round_trips: usize) -> f64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let ping = [7u8; 16];
    let mut buf = [0u8; 64];
    for _ in 0..round_trips / 10 {
        socket.send(&ping).unwrap();
        socket.recv(&mut buf).unwrap();
    }
    let mut samples = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let t = Instant::now();
        socket.send(&ping).unwrap();
        socket.recv(&mut buf).unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(&mut samples)
}
