//! HTTP edge cases on real sockets: the `Host` rule of RFC 9112 §3.2, a request head that
//! trickles in (`server.request_header_timeout`), idle keep-alive connections
//! (`server.keepalive_timeout`) and the connection limit (`server.max_connections`).

mod support;

use std::time::{Duration, Instant};

use support::{client, error_shape, raw_request, GatewayProcess, RecordingUpstream, TEST_POLICY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The test policy with `server:` replaced by `server`.
fn policy_with(server: &str) -> String {
    TEST_POLICY.replace(
        "server: { threads: 1, graceful_shutdown_timeout: 1s }",
        &format!("server: {{ threads: 1, graceful_shutdown_timeout: 1s, {server} }}"),
    )
}

/// Reads until the peer closes (or resets), at most `limit`; what arrived and how long it
/// took. `None` when the connection was still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((
                    String::from_utf8_lossy(&answer).into_owned(),
                    start.elapsed(),
                ))
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

fn body(answer: &str) -> &str {
    answer.split("\r\n\r\n").nth(1).unwrap_or_default()
}

#[tokio::test]
async fn port_zero_listeners_are_reported_once_they_accept() {
    // The support starts every gateway with both listeners on 127.0.0.1:0.
    let upstream = RecordingUpstream::start().await;
    let gateway = GatewayProcess::with_upstream(TEST_POLICY, &upstream).await;
    let (proxy, admin) = (
        gateway.proxy_addr(),
        gateway.admin.trim_start_matches("http://").to_owned(),
    );
    assert_ne!(proxy, admin);
    assert!(!proxy.ends_with(":0") && !admin.ends_with(":0"));
    let log = gateway.log();
    assert!(
        log.contains(&format!(
            "gardien listening listen={proxy} admin_listen={admin}"
        )),
        "{log}"
    );
    assert_eq!(
        client()
            .get(gateway.admin_url("/healthz"))
            .send()
            .await
            .expect("admin")
            .status(),
        200
    );
}

#[tokio::test]
async fn host_is_required_once_and_valid_on_http_11() {
    let upstream = RecordingUpstream::start().await;
    let gateway = GatewayProcess::with_upstream(TEST_POLICY, &upstream).await;
    let addr = gateway.proxy_addr();
    for request in [
        "GET /api/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: user@a.test\r\nConnection: close\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a.test/x\r\nConnection: close\r\n\r\n",
        "GET /api/x HTTP/1.0\r\nHost: a.test\r\nHost: a.test\r\n\r\n",
    ] {
        let (status, answer) = raw_request(&addr, request.as_bytes()).await;
        assert_eq!(status, Some(400), "{request:?}: {answer}");
        let (code, id) = error_shape(body(&answer));
        assert_eq!(code, "bad_host", "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("x-request-id: {id}")),
            "{answer}"
        );
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");

    // HTTP/1.0 may leave Host out; HTTP/1.1 with one valid Host goes through.
    let (status, answer) = raw_request(&addr, b"GET /api/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, Some(200), "{answer}");
    let (status, answer) = raw_request(
        &addr,
        b"GET /api/x HTTP/1.1\r\nHost: a.test:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, Some(200), "{answer}");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn a_trickling_head_gets_408_while_other_clients_are_served() {
    let upstream = RecordingUpstream::start().await;
    let gateway =
        GatewayProcess::with_upstream(&policy_with("request_header_timeout: 2s"), &upstream).await;
    let mut slow = TcpStream::connect(gateway.proxy_addr())
        .await
        .expect("connect");
    slow.write_all(b"GET /api/x HTTP/1.1\r\nHost: gw\r\n")
        .await
        .expect("request line");
    let (mut reader, mut writer) = slow.into_split();
    // One header line a second, at most 20 (well past the timeout), until the gateway closes.
    let trickle = tokio::spawn(async move {
        for i in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let started = Instant::now();

    // Meanwhile a normal client on the same gateway is served.
    let response = client()
        .get(gateway.url("/api/normal"))
        .send()
        .await
        .expect("a normal request");
    assert_eq!(response.status(), 200);

    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "the trickling connection was still open after 8s"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}, not within the 2s timeout"
    );
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_eq!(error_shape(body(&answer)).0, "request_header_timeout");
    assert!(
        upstream.requests().iter().all(|r| r.path != "/api/x"),
        "the trickled request never reached the upstream"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    let upstream = RecordingUpstream::start().await;
    let gateway =
        GatewayProcess::with_upstream(&policy_with("keepalive_timeout: 1s"), &upstream).await;
    let mut stream = TcpStream::connect(gateway.proxy_addr())
        .await
        .expect("connect");
    // A gateway answer has a Content-Length: the connection stays open after it.
    stream
        .write_all(b"GET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .expect("request");
    let (answer, elapsed) = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("the idle connection was closed within 10s");
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}, keepalive_timeout is 1s"
    );
}

#[tokio::test]
async fn connections_past_max_connections_are_refused_and_counted() {
    const MAX: usize = 3;
    let upstream = RecordingUpstream::start().await;
    let gateway = GatewayProcess::with_upstream(
        // Held connections send nothing: a long head timeout keeps them open meanwhile.
        &policy_with(&format!(
            "max_connections: {MAX}, request_header_timeout: 60s"
        )),
        &upstream,
    )
    .await;
    let addr = gateway.proxy_addr();
    let wait_open = |n: f64| {
        let gateway = &gateway;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let open = gateway.metric("gardien_connections_open").await;
                if open == n {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "gardien_connections_open is {open}, not {n}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The start-up probe's connection may still be counted for a moment.
    wait_open(0.0).await;
    let mut held = Vec::new();
    for _ in 0..MAX {
        held.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    wait_open(MAX as f64).await;

    let refused_before = gateway.metric("gardien_connections_refused_total").await;
    let mut extra = TcpStream::connect(&addr).await.expect("the kernel accepts");
    let _ = extra
        .write_all(b"GET /api/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    let (answer, _) = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("the connection past the limit is closed at once");
    assert!(answer.is_empty(), "no answer past the limit: {answer}");
    assert_eq!(
        gateway.metric("gardien_connections_refused_total").await,
        refused_before + 1.0
    );
    assert_eq!(upstream.count(), 0);

    // One closes: a new connection is accepted and served.
    drop(held.pop());
    wait_open((MAX - 1) as f64).await;
    let (status, answer) = raw_request(
        &addr,
        b"GET /api/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, Some(200), "{answer}");
}
