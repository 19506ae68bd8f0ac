//! A bounded HTTP/1.1 GET for the tests of the admin endpoint and of the
//! programs' probes. Included by several test crates with `#[path]`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A GET of `path` from `addr`, bounded by 15 s: the status code, the
/// header block and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    tokio::time::timeout(Duration::from_secs(15), async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        (status, head.to_string(), body.to_string())
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} from {addr} took over 15 s"))
}
