//! Cleartext HTTP/2 (h2c, `server.h2c`) on the proxy listener, through the real gateway and
//! the real `curl`: with it on, the same requests over HTTP/1.1 and over HTTP/2 with prior
//! knowledge (`curl --http2-prior-knowledge`, what Cloud Run's end-to-end HTTP/2 sends) get
//! the same status, CORS, security and rate-limit headers, the same preflight answers, the
//! same errors (404, 431, 502) and the same 429s, and the upstream still gets HTTP/1.1 with
//! the identity headers stripped. With it off (the default) an HTTP/2 request is not served
//! as HTTP/2, and the admin listener never is.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{error_shape, raw_request, GatewayProcess, RecordingUpstream, RefusingAddress};

const ORIGIN: &str = "http://localhost:5173";

/// The test policy: CORS for [`ORIGIN`], one rate-limit rule keyed by API key (so each
/// protocol has a bucket of its own on one gateway), a `down` route to an address where
/// nothing listens, and `server.h2c` as given.
fn policy(h2c: bool) -> String {
    format!(
        r#"
environment: dev
listen: "${{GARDIEN_LISTEN}}"
admin_listen: "${{GARDIEN_ADMIN_LISTEN}}"
upstreams:
  api: {{ url: "${{API_UPSTREAM_URL}}", connect_timeout: 1s, read_timeout: 2s }}
  down: {{ url: "${{DOWN_UPSTREAM_URL}}", connect_timeout: 1s, read_timeout: 1s }}
routes:
  - {{ name: limited, prefix: /api/limited, upstream: api, auth: public }}
  - {{ name: down, prefix: /api/down, upstream: down, auth: public }}
  - {{ name: api, prefix: /api/, upstream: api, auth: public }}
cors:
  origins: ["{ORIGIN}"]
  credentials: true
  methods: [GET, POST, PUT, DELETE]
  headers: [Authorization, Content-Type, X-Request-Id]
  expose: [X-Request-Id, RateLimit, RateLimit-Policy, Retry-After]
  max_age: 600s
rate_limits:
  rules:
    - {{ name: keyed, routes: [limited], key: api_key, rate: 1/min, burst: 3 }}
server: {{ threads: 1, graceful_shutdown_timeout: 1s, max_header_bytes: 4096, h2c: {h2c} }}
"#
    )
}

async fn start(h2c: bool, upstream: &RecordingUpstream, down: &RefusingAddress) -> GatewayProcess {
    let url = upstream.url();
    GatewayProcess::start(
        &policy(h2c),
        &[
            ("API_UPSTREAM_URL", &url),
            ("BACKEND_UPSTREAM_URL", &url),
            ("DOWN_UPSTREAM_URL", &down.url()),
        ],
    )
    .await
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    Http11,
    /// HTTP/2 with prior knowledge: the connection starts with the preface, no upgrade.
    H2c,
}

/// What `curl` got: the HTTP version it spoke, the status, the headers (lower-case names,
/// every value) and the body. `None` when curl could not get an answer at all.
#[derive(Debug)]
struct Answer {
    version: String,
    status: u16,
    headers: BTreeMap<String, Vec<String>>,
    body: String,
}

impl Answer {
    fn one(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// Headers that differ between two answers to the same request by design: the date, the
/// request id (fresh each time) and the HTTP/1.1 connection headers HTTP/2 forbids.
const PER_ANSWER: &[&str] = &["date", "x-request-id", "connection", "keep-alive"];

/// Runs `curl` (on a blocking thread: the upstream runs on this test's runtime). The
/// request and the whole transfer are bounded by `--max-time`.
async fn curl(
    protocol: Protocol,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Option<Answer> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "10", "--noproxy", "*", "-X", method])
        .arg(match protocol {
            Protocol::Http11 => "--http1.1",
            Protocol::H2c => "--http2-prior-knowledge",
        })
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_version}"]);
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    command.arg(url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the curl thread")
        .expect("curl runs (scripts/install-deps.sh test installs it)");
    if !output.status.success() {
        return None;
    }
    Some(parse_answer(
        String::from_utf8_lossy(&output.stdout).trim(),
        &head,
        &body,
    ))
}

fn parse_answer(version: &str, head: &Path, body: &Path) -> Answer {
    let head = std::fs::read_to_string(head).expect("the response head");
    let mut lines = head.lines();
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status in {status_line:?}"));
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers
                .entry(name.trim().to_ascii_lowercase())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    Answer {
        version: version.to_owned(),
        status,
        headers,
        body: std::fs::read_to_string(body).unwrap_or_default(),
    }
}

/// Sends the same request over both protocols and checks they were answered the same:
/// status, every header but [`PER_ANSWER`], and the error code of a JSON error body.
/// Returns both answers (HTTP/1.1 first).
async fn same_answer(
    gateway: &GatewayProcess,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Answer, Answer) {
    let url = gateway.url(path);
    let h1 = curl(Protocol::Http11, method, &url, headers)
        .await
        .unwrap_or_else(|| panic!("{method} {path} over HTTP/1.1"));
    let h2 = curl(Protocol::H2c, method, &url, headers)
        .await
        .unwrap_or_else(|| panic!("{method} {path} over h2c"));
    assert_eq!(h1.version, "1.1", "{h1:?}");
    assert_eq!(h2.version, "2", "served as HTTP/2: {h2:?}");
    assert_eq!(h1.status, h2.status, "{method} {path}:\n{h1:?}\n{h2:?}");
    let comparable = |a: &Answer| {
        a.headers
            .iter()
            .filter(|(name, _)| !PER_ANSWER.contains(&name.as_str()))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(comparable(&h1), comparable(&h2), "{method} {path}");
    for answer in [&h1, &h2] {
        assert!(answer.one("x-request-id").is_some(), "{answer:?}");
    }
    assert!(
        h2.one("connection").is_none() && h2.one("keep-alive").is_none(),
        "no connection-specific header in HTTP/2: {h2:?}"
    );
    if h1.status >= 400 {
        assert_eq!(error_shape(&h1.body).0, error_shape(&h2.body).0, "{path}");
    }
    (h1, h2)
}

#[tokio::test]
async fn with_h2c_on_http2_gets_the_answers_and_headers_of_http11() {
    let upstream = RecordingUpstream::start().await;
    let down = RefusingAddress::new();
    let gateway = start(true, &upstream, &down).await;

    // A proxied request from the frontend's origin, with a spoofed identity header.
    let (_, h2) = same_answer(
        &gateway,
        "GET",
        "/api/things?page=2",
        &[("Origin", ORIGIN), ("X-User-Id", "admin")],
    )
    .await;
    assert_eq!(h2.status, 200);
    assert_eq!(h2.one("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(h2.one("access-control-allow-credentials"), Some("true"));
    assert_eq!(h2.one("x-content-type-options"), Some("nosniff"));
    assert_eq!(h2.one("x-frame-options"), Some("DENY"));
    assert!(
        h2.one("x-powered-by").is_none() && h2.one("server").is_none(),
        "{h2:?}"
    );
    // Both reached the upstream over HTTP/1.1, the same way.
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for request in &seen {
        assert_eq!(request.target, "/api/things?page=2");
        assert!(
            !request.headers.contains_key("x-user-id"),
            "identity stripped: {request:?}"
        );
        assert_eq!(
            request.headers.get("host").map(String::as_str),
            Some(upstream.addr.to_string().as_str())
        );
        assert_eq!(
            request.headers.get("x-forwarded-host").map(String::as_str),
            Some(gateway.proxy_addr().as_str()),
            "{request:?}"
        );
        assert_eq!(
            request.headers.get("x-forwarded-proto").map(String::as_str),
            Some("http")
        );
    }

    // A preflight, answered by the gateway, allowed and refused.
    let preflight = [
        ("Origin", ORIGIN),
        ("Access-Control-Request-Method", "PUT"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let (_, h2) = same_answer(&gateway, "OPTIONS", "/api/things", &preflight).await;
    assert_eq!(h2.status, 204);
    assert_eq!(h2.one("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(h2.one("access-control-max-age"), Some("600"));
    let refused = [
        ("Origin", "https://evil.example"),
        ("Access-Control-Request-Method", "PUT"),
    ];
    let (_, h2) = same_answer(&gateway, "OPTIONS", "/api/things", &refused).await;
    assert_eq!(h2.status, 403);
    assert_eq!(upstream.count(), 2, "preflights never reach the upstream");

    // The gateway's own errors: no route, a head too large, an upstream that refuses.
    let (_, h2) = same_answer(&gateway, "GET", "/nowhere", &[("Origin", ORIGIN)]).await;
    assert_eq!(
        (h2.status, error_shape(&h2.body).0.as_str()),
        (404, "route_not_found")
    );
    let big = "b".repeat(5_000);
    let (_, h2) = same_answer(&gateway, "GET", "/api/things", &[("X-Big", &big)]).await;
    assert_eq!(
        (h2.status, error_shape(&h2.body).0.as_str()),
        (431, "headers_too_large")
    );
    let (h1, h2) = same_answer(&gateway, "GET", "/api/down/x", &[("Origin", ORIGIN)]).await;
    assert_eq!(
        (h2.status, error_shape(&h2.body).0.as_str()),
        (502, "upstream_unreachable")
    );
    assert_eq!(
        h1.one("connection"),
        Some("close"),
        "HTTP/1.1 says the connection closes"
    );
    assert_eq!(h2.one("access-control-allow-origin"), Some(ORIGIN));
}

#[tokio::test]
async fn with_h2c_on_http2_is_refused_by_the_same_rate_limit_after_the_same_count() {
    let upstream = RecordingUpstream::start().await;
    let down = RefusingAddress::new();
    let gateway = start(true, &upstream, &down).await;
    let url = gateway.url("/api/limited");
    // One bucket per protocol (the rule keys on the API key): burst 3, then 429.
    let mut statuses = BTreeMap::new();
    let mut refusals = Vec::new();
    for (protocol, key) in [(Protocol::Http11, "key-one"), (Protocol::H2c, "key-two")] {
        let mut seen = Vec::new();
        for _ in 0..5 {
            let answer = curl(
                protocol,
                "GET",
                &url,
                &[("X-Api-Key", key), ("Origin", ORIGIN)],
            )
            .await
            .expect("an answer");
            seen.push(answer.status);
            if answer.status == 429 {
                refusals.push(answer);
            }
        }
        statuses.insert(format!("{protocol:?}"), seen);
    }
    assert_eq!(
        statuses["Http11"],
        vec![200, 200, 200, 429, 429],
        "{statuses:?}"
    );
    assert_eq!(statuses["Http11"], statuses["H2c"], "{statuses:?}");
    let (h1, h2) = (&refusals[0], &refusals[2]);
    assert_eq!(h2.version, "2");
    for name in [
        "retry-after",
        "ratelimit-policy",
        "access-control-allow-origin",
    ] {
        assert!(h1.one(name).is_some(), "{name}: {h1:?}");
        assert_eq!(h1.one(name), h2.one(name), "{name}");
    }
    assert_eq!(h1.one("ratelimit"), h2.one("ratelimit"));
    assert_eq!(error_shape(&h2.body).0, "rate_limited");
    assert_eq!(
        upstream.count(),
        6,
        "refused requests never reach the upstream"
    );
}

#[tokio::test]
async fn with_h2c_on_a_short_http11_request_is_not_held_for_the_preface() {
    let upstream = RecordingUpstream::start().await;
    let down = RefusingAddress::new();
    let gateway = start(true, &upstream, &down).await;
    // 23 bytes, fewer than the 24 of the HTTP/2 preface, and the client then waits.
    let request = b"GET /api/x HTTP/1.0\r\n\r\n";
    let started = std::time::Instant::now();
    let (status, answer) = raw_request(&gateway.proxy_addr(), request).await;
    assert_eq!(status, Some(200), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn with_h2c_off_http2_is_not_served_and_the_admin_listener_never_speaks_it() {
    let upstream = RecordingUpstream::start().await;
    let down = RefusingAddress::new();
    let gateway = start(false, &upstream, &down).await;
    // The preface is read as an HTTP/1.1 request line (`PRI * HTTP/2.0`) and refused with
    // an HTTP/1.1 400: curl gets no HTTP/2 answer.
    let url = gateway.url("/api/x");
    let answer = curl(Protocol::H2c, "GET", &url, &[]).await;
    assert!(answer.is_none(), "not served as HTTP/2: {answer:?}");
    let (status, text) = raw_request(
        &gateway.proxy_addr(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    )
    .await;
    assert_eq!(status, Some(400), "{text}");
    assert_eq!(upstream.count(), 0);
    // HTTP/1.1 keeps working.
    let h1 = curl(Protocol::Http11, "GET", &url, &[])
        .await
        .expect("HTTP/1.1");
    assert_eq!((h1.version.as_str(), h1.status), ("1.1", 200));

    // The admin listener is HTTP/1.1 only, even with h2c on for the proxy.
    let on = start(true, &upstream, &down).await;
    let healthz = on.admin_url("/healthz");
    assert!(curl(Protocol::H2c, "GET", &healthz, &[]).await.is_none());
    let h1 = curl(Protocol::Http11, "GET", &healthz, &[])
        .await
        .expect("HTTP/1.1");
    assert_eq!(h1.status, 200);
}
