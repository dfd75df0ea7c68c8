//! The binary upgraded and downgraded in place under constant load (`gardien run
//! --upgrade`, Pingora's graceful upgrade): v1 serves; v2 starts with `--upgrade`, v1 gets
//! SIGQUIT, hands its listening sockets over and drains; then v3 (the same binary, as a
//! downgrade would be) takes over from v2 the same way. Each process answers with its own
//! `Referrer-Policy`, so the test sees who answered. Zero failed requests and zero refused
//! connections, and the last process answers at the end.
//!
//! The clients speak HTTP/1.1 on raw sockets so that what counts as a failure is exact:
//!
//! - the *fresh* client opens a new connection for every request: a refused or reset
//!   connect, or any error before the whole answer arrived, is a failure; it never retries.
//! - the *keep-alive* client reuses one connection. When the server closes that reused
//!   connection before any byte of the answer (a draining process closes idle keep-alive
//!   connections), it reconnects and sends the GET again, once: RFC 9112 §9.3.1 lets a
//!   client retry an idempotent request on a new connection then. That retry is counted,
//!   not failed. Any other error, or a second one, is a failure. `Connection: close` on an
//!   answer makes it reconnect for the next request (no retry).

mod support;

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{GatewayProcess, RecordingUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The load runs at most this long, and each client sends at most this many requests.
const LOAD_LIMIT: Duration = Duration::from_secs(30);
const MAX_REQUESTS: usize = 20_000;
/// Each request waits this long at the upstream, so some are always in flight.
const PATH: &str = "/api/slow/20";

fn policy(referrer_policy: &str) -> String {
    format!(
        r#"
environment: dev
listen: "${{GARDIEN_LISTEN}}"
admin_listen: "${{GARDIEN_ADMIN_LISTEN}}"
upstreams:
  api: {{ url: "${{API_UPSTREAM_URL}}", connect_timeout: 1s, read_timeout: 5s }}
routes:
  - {{ name: api, prefix: /api/, upstream: api, auth: public }}
security_headers: {{ referrer_policy: "{referrer_policy}" }}
server: {{ threads: 2, graceful_shutdown_timeout: 2s }}
"#
    )
}

/// Starts (or spawns, with `--upgrade`) a gateway serving `policy(referrer_policy)`.
fn spawn(
    referrer_policy: &str,
    upstream: &RecordingUpstream,
    socket: &std::path::Path,
    listen: Option<(&str, &str)>,
) -> GatewayProcess {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy(referrer_policy)).expect("write policy");
    let url = upstream.url();
    let mut env = vec![("API_UPSTREAM_URL", url.as_str())];
    let mut args: Vec<&OsStr> = vec![OsStr::new("--upgrade-socket"), socket.as_os_str()];
    if let Some((proxy, admin)) = listen {
        env.extend([("GARDIEN_LISTEN", proxy), ("GARDIEN_ADMIN_LISTEN", admin)]);
        args.push(OsStr::new("--upgrade"));
    }
    GatewayProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_gardien")),
        &path,
        &env,
        &args,
        dir,
    )
}

/// Starts `next` with `--upgrade` on `old`'s addresses, sends `old` SIGQUIT once `next`
/// waits on the upgrade socket, and waits for `next` to serve and `old` to exit.
async fn take_over(
    old: &mut GatewayProcess,
    referrer_policy: &str,
    upstream: &RecordingUpstream,
    socket: &std::path::Path,
) -> GatewayProcess {
    let (proxy, admin) = (
        old.proxy_addr(),
        old.admin.trim_start_matches("http://").to_owned(),
    );
    let mut next = spawn(referrer_policy, upstream, socket, Some((&proxy, &admin)));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "no upgrade socket:\n{}",
            next.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    old.signal("QUIT");
    next.wait_started().await;
    assert_eq!(
        (next.proxy_addr(), next.admin.clone()),
        (proxy, old.admin.clone())
    );
    // Pingora keeps accepting 5 s after sending the sockets, then drains for the grace
    // period (2 s here).
    let status = old.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some(), "the old process exits:\n{}", old.log());
    next
}

#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    retried: usize,
    refused: usize,
    failures: Vec<String>,
    /// `Referrer-Policy` of each answer, in order, run-length encoded.
    answered_by: Vec<(String, usize)>,
}

impl Tally {
    fn answer(&mut self, by: String) {
        self.answered += 1;
        match self.answered_by.last_mut() {
            Some((last, n)) if *last == by => *n += 1,
            _ => self.answered_by.push((by, 1)),
        }
    }
}

/// One answer read off a connection.
enum Read {
    /// Status, `Referrer-Policy`, and whether the server closes the connection.
    Answer(u16, String, bool),
    /// Closed or reset before any byte of the answer.
    ClosedBeforeAnswer,
    Broken(String),
}

async fn exchange(stream: &mut TcpStream, addr: &str) -> Read {
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                Read::ClosedBeforeAnswer
            }
            _ => Read::Broken(format!("write: {e}")),
        };
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Read::Broken("no answer in 10 s".into()),
            Ok(Err(e)) if buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Read::ClosedBeforeAnswer
            }
            Ok(Err(e)) => return Read::Broken(format!("read: {e}")),
            Ok(Ok(0)) if buf.is_empty() => return Read::ClosedBeforeAnswer,
            Ok(Ok(0)) => return Read::Broken("closed in the middle of the answer".into()),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = response.parse(&buf) else {
            continue;
        };
        let find = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) else {
            return Read::Broken(format!(
                "no content-length: {:?}",
                String::from_utf8_lossy(&buf)
            ));
        };
        if buf.len() < head + length {
            continue;
        }
        let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        return Read::Answer(
            response.code.unwrap_or(0),
            find("referrer-policy").unwrap_or_default(),
            close,
        );
    }
}

async fn connect(addr: &str, tally: &mut Tally) -> Option<TcpStream> {
    match TcpStream::connect(addr).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            tally.refused += 1;
            tally.failures.push(format!("connect: {e}"));
            None
        }
    }
}

fn record(tally: &mut Tally, read: Read, what: &str) -> bool {
    match read {
        Read::Answer(200, by, close) => {
            tally.answer(by);
            !close
        }
        Read::Answer(status, _, _) => {
            tally.failures.push(format!("{what}: status {status}"));
            false
        }
        Read::ClosedBeforeAnswer => {
            tally
                .failures
                .push(format!("{what}: closed before the answer"));
            false
        }
        Read::Broken(e) => {
            tally.failures.push(format!("{what}: {e}"));
            false
        }
    }
}

/// A new connection for every request, no retry.
async fn fresh_client(addr: String, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let started = Instant::now();
    for _ in 0..MAX_REQUESTS {
        if stop.load(Ordering::Relaxed) || started.elapsed() > LOAD_LIMIT {
            break;
        }
        let Some(mut stream) = connect(&addr, &mut tally).await else {
            continue;
        };
        let read = exchange(&mut stream, &addr).await;
        record(&mut tally, read, "fresh");
    }
    tally
}

/// One reused connection; a GET the server closed the reused connection on before any
/// byte of the answer is sent again once on a new connection.
async fn keep_alive_client(addr: String, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut open: Option<TcpStream> = None;
    for _ in 0..MAX_REQUESTS {
        if stop.load(Ordering::Relaxed) || started.elapsed() > LOAD_LIMIT {
            break;
        }
        let reused = open.is_some();
        let mut stream = match open.take() {
            Some(stream) => stream,
            None => match connect(&addr, &mut tally).await {
                Some(stream) => stream,
                None => continue,
            },
        };
        let mut read = exchange(&mut stream, &addr).await;
        if reused && matches!(read, Read::ClosedBeforeAnswer) {
            tally.retried += 1;
            let Some(again) = connect(&addr, &mut tally).await else {
                continue;
            };
            stream = again;
            read = exchange(&mut stream, &addr).await;
        }
        if record(&mut tally, read, "keep-alive") {
            open = Some(stream);
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_then_a_downgrade_under_load_lose_no_request_and_refuse_no_connection() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("upgrade.sock");
    let mut v1 = spawn("no-referrer", &upstream, &socket, None);
    v1.wait_started().await;
    let addr = v1.proxy_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let clients = [
        tokio::spawn(fresh_client(addr.clone(), Arc::clone(&stop))),
        tokio::spawn(keep_alive_client(addr.clone(), Arc::clone(&stop))),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut v2 = take_over(&mut v1, "same-origin", &upstream, &socket).await;
    // The downgrade: the same binary, as the previous release would be, takes over again.
    let v3 = take_over(&mut v2, "strict-origin", &upstream, &socket).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tallies = Vec::new();
    for client in clients {
        tallies.push(client.await.expect("a client task"));
    }

    for (name, tally) in ["fresh", "keep-alive"].iter().zip(&tallies) {
        let mut by_process = std::collections::BTreeMap::new();
        for (by, n) in &tally.answered_by {
            *by_process.entry(by.as_str()).or_insert(0) += n;
        }
        eprintln!(
            "{name}: {} answered, {} retried, {} refused, answered by {by_process:?}",
            tally.answered, tally.retried, tally.refused
        );
        assert!(
            tally.failures.is_empty() && tally.refused == 0,
            "{name}: {} failure(s), {} refused: {:?}\nv3:\n{}",
            tally.failures.len(),
            tally.refused,
            tally.failures.iter().take(10).collect::<Vec<_>>(),
            v3.log()
        );
        let order: Vec<&str> = tally
            .answered_by
            .iter()
            .map(|(by, _)| by.as_str())
            .collect();
        // Each process answered in turn (the old one keeps accepting while the new one
        // starts, so their answers may interleave), and the last one answers at the end.
        assert!(
            order.contains(&"no-referrer") && order.contains(&"same-origin"),
            "{name}: {order:?}"
        );
        assert_eq!(order.last(), Some(&"strict-origin"), "{name}: {order:?}");
        assert!(
            tally.answered > 100,
            "{name}: a real load: {}",
            tally.answered
        );
    }
    // After the downgrade every new connection reaches v3.
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    match exchange(&mut stream, &addr).await {
        Read::Answer(200, by, _) => assert_eq!(by, "strict-origin"),
        _ => panic!("v3 answers"),
    }
}

#[tokio::test]
async fn without_upgrade_a_second_process_cannot_take_the_addresses() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("upgrade.sock");
    let mut v1 = spawn("no-referrer", &upstream, &socket, None);
    v1.wait_started().await;
    let (proxy, admin) = (
        v1.proxy_addr(),
        v1.admin.trim_start_matches("http://").to_owned(),
    );

    // The same addresses without --upgrade: refused at start, v1 keeps serving.
    let other = tempfile::tempdir().expect("tempdir");
    let path = other.path().join("policy.yaml");
    std::fs::write(&path, policy("same-origin")).expect("write policy");
    let url = upstream.url();
    let env = [
        ("API_UPSTREAM_URL", url.as_str()),
        ("GARDIEN_LISTEN", proxy.as_str()),
        ("GARDIEN_ADMIN_LISTEN", admin.as_str()),
    ];
    let mut v2 = GatewayProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_gardien")),
        &path,
        &env,
        &[],
        other,
    );
    let status = v2
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("v2 exits");
    assert!(!status.success());
    assert!(
        v2.log()
            .contains(&format!("cannot listen on {proxy} (listen)")),
        "{}",
        v2.log()
    );

    // --upgrade from a port-0 policy: nothing to take over, said so.
    let mut v3 = spawn(
        "strict-origin",
        &upstream,
        &socket,
        Some(("127.0.0.1:0", &admin)),
    );
    let status = v3
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("v3 exits");
    assert!(!status.success());
    assert!(v3.log().contains("listen asks for port 0"), "{}", v3.log());

    let mut stream = TcpStream::connect(&proxy).await.expect("connect");
    match exchange(&mut stream, &proxy).await {
        Read::Answer(200, by, _) => assert_eq!(by, "no-referrer"),
        _ => panic!("v1 still answers"),
    }
}
