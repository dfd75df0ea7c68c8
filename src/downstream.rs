//! The proxy's client connections before Pingora's HTTP layer sees them: how many may be
//! open (`server.max_connections`), how long a request head may take to arrive
//! (`server.request_header_timeout`) and how long an idle keep-alive connection stays open
//! (`server.keepalive_timeout`).
//!
//! Why a wrapper: Pingora's `HttpSession::read_request` bounds each read, never the whole
//! head, so a client sending one header line a second keeps a connection forever, and its
//! HTTP/1 loop keeps idle connections 60 s. [`Downstream`] is the listening service's
//! `ServerApp` around the proxy and runs that same loop (`impl ServerApp for HttpServerApp`
//! in `pingora-core/src/apps/mod.rs`) with one change: before each request it reads the
//! head itself, against one deadline, and hands the bytes to Pingora as the session's
//! pipelined prefix, which `read_request` parses without reading again. A head that misses
//! its deadline gets a `408` and the connection is closed; so does a head whose `Host`
//! lines break RFC 9112 §3.2, with `400 bad_host` (Pingora's own check answers those
//! without the gateway's JSON error, and lets a missing `Host` through). No Pingora patch
//! is needed.
//!
//! Memory per idle connection: the listener has no read buffer under the connection
//! (`src/server.rs`), and a connection waiting for its next request holds no head buffer
//! either ([`first_read`]).
//!
//! h2c (`server.h2c`): on a new connection [`sniff_h2_preface`] reads until the bytes are
//! the HTTP/2 preface or cannot become it, against the head deadline, and puts them back.
//! A preface goes to Pingora's own loop, which serves the connection as HTTP/2 (one task per
//! stream, the proxy's phases unchanged); anything else takes the HTTP/1 loop above.
//!
//! Connection count: a [`Slot`] held for the life of `process_new` counts each open
//! connection. [`ConnectionLimit`], Pingora's `ConnectionFilter`, runs in the accept loop
//! and closes a new connection when `max_connections` are open, before any task or buffer
//! exists for it. Connections accepted in one burst are counted once their task runs, so
//! `process_new` checks the limit again when it takes the slot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::BytesMut;
use http::HeaderMap;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::ConnectionFilter;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use crate::admin::metrics::Metrics;
use crate::edge::host;
use crate::edge::request_id::RequestId;
use crate::gateway_error::GatewayError;
use crate::policy::Policy;

/// Pingora's limit on a request head (`MAX_HEADER_SIZE`, private there). A longer prefix is
/// handed over as is: Pingora's parser then answers `400` at once.
const MAX_HEAD_BYTES: usize = 1_048_575;
/// Pingora's `MAX_HEADERS`, so both parsers agree on what a complete head is.
pub(crate) const MAX_HEADERS: usize = 256;
/// How every HTTP/2 connection starts (RFC 9113 §3.4); Pingora's `H2_PREFACE` is private.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Pingora's first header buffer.
const HEAD_BUFFER: usize = 4096;
/// How long the `408` may take to write, and how long what the client still sends is read
/// and dropped afterwards (so the kernel does not answer it with a reset that could discard
/// the `408` before the client reads it).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Open client connections of the proxy listener.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    policy: Arc<ArcSwap<Policy>>,
    metrics: Arc<Metrics>,
}

impl Connections {
    pub fn new(policy: Arc<ArcSwap<Policy>>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Connections {
            open: AtomicUsize::new(0),
            policy,
            metrics,
        })
    }

    /// The limit of the running policy (a reload changes it for new connections).
    fn limit(&self) -> Option<usize> {
        self.policy.load().server.max_connections
    }

    fn refuse(&self) {
        self.metrics.connection_refused();
        tracing::debug!("connection refused: server.max_connections are open");
    }

    /// A slot for a new connection, or `None` (counted as refused) when the limit is reached.
    fn open(self: &Arc<Self>) -> Option<Slot> {
        let previous = self.open.fetch_add(1, Ordering::AcqRel);
        if self.limit().is_some_and(|max| previous >= max) {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refuse();
            return None;
        }
        self.metrics.connection_opened();
        Some(Slot(Arc::clone(self)))
    }
}

/// One counted connection; dropping it frees the slot.
struct Slot(Arc<Connections>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.connection_closed();
    }
}

/// Closes new connections in the accept loop while `max_connections` are open.
#[derive(Debug)]
pub struct ConnectionLimit(pub Arc<Connections>);

#[async_trait]
impl ConnectionFilter for ConnectionLimit {
    async fn should_accept(&self, _addr: Option<&SocketAddr>) -> bool {
        let full = self
            .0
            .limit()
            .is_some_and(|max| self.0.open.load(Ordering::Acquire) >= max);
        if full {
            self.0.refuse();
        }
        !full
    }
}

/// The proxy app `A` behind the connection limit, the head deadline and the keep-alive
/// setting of the running policy.
#[derive(Debug)]
pub struct Downstream<A> {
    app: Arc<A>,
    policy: Arc<ArcSwap<Policy>>,
    connections: Arc<Connections>,
}

impl<A> Downstream<A> {
    pub fn new(app: A, policy: Arc<ArcSwap<Policy>>, connections: Arc<Connections>) -> Self {
        Downstream {
            app: Arc::new(app),
            policy,
            connections,
        }
    }
}

#[async_trait]
impl<A> ServerApp for Downstream<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _slot = self.connections.open()?;
        let custom = self.app.server_options().is_some_and(|o| o.force_custom);
        if custom || stream.get_ssl_digest().is_some() || !stream.as_any().is::<L4Stream>() {
            // TLS or a custom protocol (gardien listens on neither today): Pingora's own loop.
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        let (h2c, header_timeout) = {
            let policy = self.policy.load();
            (policy.server.h2c, policy.server.request_header_timeout)
        };
        let stream = if h2c {
            match sniff_h2_preface(stream, header_timeout).await? {
                // Pingora's loop finds the preface again and serves the connection as HTTP/2.
                Sniffed::Http2(stream) => {
                    return ServerApp::process_new(&self.app, stream, shutdown).await
                }
                Sniffed::Http1(stream) => stream,
            }
        } else {
            stream
        };
        self.serve_http1(stream, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

impl<A> Downstream<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// Pingora's HTTP/1 connection loop, with each head read by [`read_head`].
    async fn serve_http1(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        // `None` before the first request; then what Pingora carries between requests.
        let mut previous: Option<Option<HttpPersistentSettings>> = None;
        loop {
            let (header_timeout, keepalive) = {
                let policy = self.policy.load();
                (
                    policy.server.request_header_timeout,
                    policy.server.keepalive_timeout,
                )
            };
            let idle = match (&previous, keepalive) {
                (None, _) => None,
                (Some(_), Some(keepalive)) => Some(keepalive),
                // Keep-alive turned off by a reload since the last request.
                (Some(_), None) => return,
            };
            let head = match read_head(&mut stream, header_timeout, idle, shutdown).await {
                Head::Ready(head) => head,
                Head::Closed => return,
                Head::TimedOut => {
                    let error = GatewayError::request_header_timeout();
                    self.answer_and_close(stream, &error, RequestId::generate())
                        .await;
                    return;
                }
                Head::BadHost(id) => {
                    let id = RequestId::from_client(id.as_ref());
                    self.answer_and_close(stream, &GatewayError::bad_host(), id)
                        .await;
                    return;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match previous.take() {
                Some(Some(settings)) => settings.apply_to_session(&mut session),
                Some(None) => {}
                None => session.set_keepalive_reuses_remaining(
                    self.app
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                ),
            }
            let keepalive = keepalive.filter(|_| !*shutdown.borrow());
            // Whole seconds (the policy checks it); `Some(0)` would mean "no timeout".
            session.set_keepalive(keepalive.map(|d| d.as_secs().max(1)));
            // gardien never turns pipelining on, so Pingora carries no prefix of its own.
            session.set_pipelined_prefix(head);
            let Some(reused) = self.app.process_new_http(session, shutdown).await else {
                return;
            };
            let (next, settings) = reused.consume();
            stream = next;
            previous = Some(settings);
        }
    }

    /// `error` with its JSON body, the request id and the security headers, before Pingora
    /// has a session (no CORS headers: the request was not read), then close.
    async fn answer_and_close(&self, mut stream: Stream, error: &GatewayError, id: RequestId) {
        let body = error.body(id.as_str());
        let mut headers = HeaderMap::new();
        self.policy.load().security_headers.apply(&mut headers);
        let mut answer = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\nx-request-id: {}\r\n",
            error.status.as_u16(),
            error.status.canonical_reason().unwrap_or(""),
            body.len(),
            id.as_str()
        )
        .into_bytes();
        for (name, value) in &headers {
            answer.extend_from_slice(name.as_str().as_bytes());
            answer.extend_from_slice(b": ");
            answer.extend_from_slice(value.as_bytes());
            answer.extend_from_slice(b"\r\n");
        }
        answer.extend_from_slice(b"\r\n");
        answer.extend_from_slice(&body);
        let deadline = Instant::now() + LINGER;
        let written = timeout_at(deadline, async {
            stream.write_all(&answer).await?;
            AsyncWriteExt::shutdown(&mut stream).await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let mut sink = vec![0u8; HEAD_BUFFER];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match timeout_at(deadline, stream.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }
}

/// What the first bytes of a connection on an h2c listener are.
enum Sniffed {
    /// The HTTP/2 connection preface (RFC 9113 §3.4), put back to be read again.
    Http2(Stream),
    /// Anything else (put back too): an HTTP/1 request, or a head [`read_head`] refuses.
    Http1(Stream),
}

/// Reads the first bytes of a new connection until they are the HTTP/2 preface or cannot
/// become it, within `header_timeout` (Pingora's own sniff waits for 24 bytes without a
/// deadline, which a short HTTP/1.0 request never sends), then puts them back into the
/// stream. `None`: the client closed first or sent nothing in time.
async fn sniff_h2_preface(stream: Stream, header_timeout: Duration) -> Option<Sniffed> {
    let mut l4 = stream.into_any().downcast::<L4Stream>().ok()?;
    let deadline = Instant::now() + header_timeout;
    let mut buf = BytesMut::with_capacity(HEAD_BUFFER);
    while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
        match timeout_at(deadline, l4.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            // Part of a request but not all of it in time: the HTTP/1 path answers `408`.
            Err(_) if !buf.is_empty() => break,
            _ => return None,
        }
    }
    let http2 = buf.starts_with(H2_PREFACE);
    l4.rewind(&buf);
    let stream: Stream = l4;
    Some(if http2 {
        Sniffed::Http2(stream)
    } else {
        Sniffed::Http1(stream)
    })
}

/// What reading one request head gave.
enum Head {
    /// A complete head (and whatever followed it), or bytes Pingora's parser refuses.
    Ready(BytesMut),
    /// A complete head whose `Host` lines break RFC 9112 §3.2, with the client's request id.
    BadHost(Option<http::HeaderValue>),
    /// The client closed, sent nothing (idle or new connection), or the server is stopping.
    Closed,
    /// Bytes arrived but not the whole head in time.
    TimedOut,
}

/// Reads one request head. The first byte may take `idle` on a reused connection (then the
/// head has `header_timeout` from that byte) or `header_timeout` on a new one (counted from
/// now, for the whole head).
async fn read_head(
    stream: &mut Stream,
    header_timeout: Duration,
    idle: Option<Duration>,
    shutdown: &ShutdownWatch,
) -> Head {
    let start = Instant::now();
    let mut shutdown = shutdown.clone();
    let first = tokio::select! {
        biased;
        read = timeout_at(start + idle.unwrap_or(header_timeout), first_read(stream)) => read,
        _ = shutdown.wait_for(|stopping| *stopping), if idle.is_some() => return Head::Closed,
    };
    let mut buf = match first {
        Ok(Ok(buf)) if !buf.is_empty() => buf,
        _ => return Head::Closed,
    };
    let deadline = match idle {
        Some(_) => Instant::now() + header_timeout,
        None => start + header_timeout,
    };
    loop {
        if buf.len() > MAX_HEAD_BYTES {
            return Head::Ready(buf);
        }
        match inspect(&buf) {
            Inspected::Partial => {}
            Inspected::Complete => return Head::Ready(buf),
            Inspected::BadHost(id) => return Head::BadHost(id),
        }
        if buf.capacity() - buf.len() < HEAD_BUFFER / 4 {
            buf.reserve(HEAD_BUFFER);
        }
        match timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => return Head::TimedOut,
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Head::Closed,
        }
    }
}

thread_local! {
    /// Where [`first_read`] reads, borrowed only inside one `poll_read`: a connection
    /// waiting for its next request holds no buffer at all.
    static FIRST_READ: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; HEAD_BUFFER].into_boxed_slice());
}

/// The first bytes of a request, in a buffer of their own sized for the head. An idle
/// keep-alive connection waits here, possibly for a minute: reading into a buffer of the
/// connection's would keep 4 KiB resident per idle connection (docs/BENCHMARKS.md), so the
/// bytes are read into this thread's scratch buffer, within a single poll, and copied out
/// once they arrived: still one read per head, and nothing held while waiting. Empty when
/// the client closed.
async fn first_read(stream: &mut Stream) -> std::io::Result<BytesMut> {
    std::future::poll_fn(|cx| {
        FIRST_READ.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read = tokio::io::ReadBuf::new(&mut scratch[..]);
            match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut read) {
                std::task::Poll::Ready(Ok(())) => {
                    let filled = read.filled();
                    let mut buf = BytesMut::with_capacity(HEAD_BUFFER.max(filled.len()));
                    buf.extend_from_slice(filled);
                    std::task::Poll::Ready(Ok(buf))
                }
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
    })
    .await
}

/// What [`inspect`] found in the bytes read so far.
#[derive(Debug, PartialEq)]
enum Inspected {
    Partial,
    /// A whole head for Pingora, readable or not.
    Complete,
    BadHost(Option<http::HeaderValue>),
}

/// Whether `buf` holds a whole request head, as Pingora's parser (httparse) sees it, and
/// whether its `Host` lines are acceptable.
fn inspect(buf: &[u8]) -> Inspected {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {
            let hosts = request
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"))
                .map(|h| h.value);
            if host::is_acceptable(request.version.unwrap_or(1), hosts) {
                return Inspected::Complete;
            }
            let id = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(crate::edge::request_id::HEADER))
                .and_then(|h| http::HeaderValue::from_bytes(h.value).ok());
            Inspected::BadHost(id)
        }
        Ok(httparse::Status::Partial) => Inspected::Partial,
        // Pingora repairs some request lines and refuses the rest with a 400; either way
        // it gets the head once the blank line that ends it has arrived.
        Err(_)
            if buf.windows(2).any(|w| w == b"\n\n") || buf.windows(3).any(|w| w == b"\n\r\n") =>
        {
            Inspected::Complete
        }
        Err(_) => Inspected::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_complete_at_its_blank_line() {
        use Inspected::*;
        assert_eq!(inspect(b"GET / HTTP/1.1\r\nHost: a\r\n"), Partial);
        assert_eq!(inspect(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Complete);
        assert_eq!(inspect(b"GET / HTTP/1.1\nHost: a\n\n"), Complete);
        assert_eq!(inspect(b"POST / HTTP/1.1\r\nHost: a\r\n\r\nbody"), Complete);
        // Unreadable, but ended: Pingora answers it.
        assert_eq!(inspect(b"GET / HTTP/9\r\nHost: a\r\n\r\n"), Complete);
        assert_eq!(inspect(b"GET / HTTP/9\r\nHost: a\r\n"), Partial);
    }

    #[test]
    fn host_lines_are_checked_once_the_head_is_complete() {
        assert_eq!(inspect(b"GET / HTTP/1.0\r\n\r\n"), Inspected::Complete);
        assert_eq!(inspect(b"GET / HTTP/1.1\r\n\r\n"), Inspected::BadHost(None));
        assert_eq!(
            inspect(b"GET / HTTP/1.1\r\nhost: a\r\nHOST: b\r\nX-Request-Id: r-1\r\n\r\n"),
            Inspected::BadHost(Some(http::HeaderValue::from_static("r-1")))
        );
    }
}
