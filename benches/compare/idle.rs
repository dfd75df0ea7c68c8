//! Memory per idle keep-alive connection: `count` connections each send one request, read
//! the whole answer, then stay open; the proxy's resident set is read before, while they are
//! open, and after they close, so the table shows what a connection costs at rest and
//! whether the memory comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::proxies::{rss_kib, Running};

/// Connections opened at once while the `count` are set up.
const OPENING: usize = 200;
/// Bound on one connection's request and answer.
const EACH: Duration = Duration::from_secs(10);
/// How long the memory gets to come back after the connections close.
const SETTLE: Duration = Duration::from_secs(10);

/// What one measure saw, in KiB of resident memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Idle {
    pub connections: usize,
    pub before_kib: u64,
    pub open_kib: u64,
    pub after_kib: u64,
}

impl Idle {
    /// Resident memory added per open connection.
    pub fn per_connection_kib(&self) -> f64 {
        self.open_kib.saturating_sub(self.before_kib) as f64 / self.connections.max(1) as f64
    }

    /// Share of the memory the connections added that was given back after they closed.
    pub fn returned(&self) -> f64 {
        let added = self.open_kib.saturating_sub(self.before_kib);
        if added == 0 {
            return 1.0;
        }
        self.open_kib.saturating_sub(self.after_kib) as f64 / added as f64
    }
}

/// Opens `count` connections to `proxy` with one request each (`headers` on it), holds
/// them, then closes them; bounded in time by [`EACH`] per connection and [`SETTLE`].
pub async fn measure(proxy: &Running, headers: &[(&str, &str)], count: usize) -> Idle {
    let request = Arc::new(request_bytes(proxy.addr, headers));
    // Warm: the first requests allocate what every later one reuses (pools, caches).
    for _ in 0..20 {
        let mut stream = one(proxy.addr, &request).await;
        let _ = stream.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib = rss_kib(proxy.pid());
    let limit = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (request, limit, addr) = (request.clone(), limit.clone(), proxy.addr);
        tasks.spawn(async move {
            let _permit = limit
                .acquire()
                .await
                .expect("the semaphore is never closed");
            one(addr, &request).await
        });
    }
    let mut open = Vec::with_capacity(count);
    while let Some(stream) = tasks.join_next().await {
        open.push(stream.expect("a connection task"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open_kib = rss_kib(proxy.pid());
    drop(open);
    // Sampled until it stops falling (two equal readings) or SETTLE is over.
    let started = Instant::now();
    let mut after_kib = rss_kib(proxy.pid());
    while started.elapsed() < SETTLE {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib(proxy.pid());
        if now == after_kib {
            break;
        }
        after_kib = now;
    }
    Idle {
        connections: count,
        before_kib,
        open_kib,
        after_kib,
    }
}

fn request_bytes(addr: SocketAddr, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut request = format!("GET /api/x HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// One connection that sent `request` and read its whole 200 answer, still open.
async fn one(addr: SocketAddr, request: &[u8]) -> TcpStream {
    tokio::time::timeout(EACH, async {
        let mut stream = TcpStream::connect(addr).await.expect("a connection");
        stream.write_all(request).await.expect("the request sent");
        read_answer(&mut stream).await;
        stream
    })
    .await
    .unwrap_or_else(|_| panic!("a request to {addr} did not complete within {EACH:?}"))
}

/// Reads one HTTP/1.1 answer (Content-Length or chunked) and checks it is a 200.
async fn read_answer(stream: &mut TcpStream) {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.expect("the answer");
        assert!(read > 0, "the proxy closed the connection before answering");
        buffer.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = response.parse(&buffer) else {
            continue;
        };
        assert_eq!(
            response.code,
            Some(200),
            "{}",
            String::from_utf8_lossy(&buffer)
        );
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let body = &buffer[head..];
        if let Some(length) = header("content-length").and_then(|v| v.trim().parse::<usize>().ok())
        {
            if body.len() >= length {
                return;
            }
        } else if body.ends_with(b"0\r\n\r\n") {
            return;
        }
    }
}
