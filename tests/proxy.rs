//! Routing, request ids, forwarding headers, security headers per environment, and the
//! JSON errors for upstream failures, through the real gateway.

mod support;

use std::collections::HashSet;
use std::path::Path;

use support::{
    client, error_shape, header, raw_request, GatewayProcess, RecordingUpstream, RefusingAddress,
    TEST_POLICY,
};

struct Setup {
    api: RecordingUpstream,
    backend: RecordingUpstream,
    gateway: GatewayProcess,
}

async fn setup() -> Setup {
    let api = RecordingUpstream::start().await;
    let backend = RecordingUpstream::start().await;
    let gateway = GatewayProcess::start(
        TEST_POLICY,
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("BACKEND_UPSTREAM_URL", &backend.url()),
        ],
    )
    .await;
    Setup {
        api,
        backend,
        gateway,
    }
}

#[tokio::test]
async fn routes_pick_upstreams_in_order_and_keep_the_path() {
    let s = setup().await;
    let c = client();
    let get = |path: &str| c.get(s.gateway.url(path)).send();

    assert_eq!(
        get("/api/auth/login?next=/x").await.expect("auth").status(),
        200
    );
    assert_eq!(s.api.last().path, "/api/auth/login");
    assert_eq!(get("/api/reports/7").await.expect("reports").status(), 200);
    assert_eq!(s.backend.last().path, "/api/reports/7");
    assert_eq!(get("/api/reportsx").await.expect("api").status(), 200);
    assert_eq!(s.api.last().path, "/api/reportsx", "segment-aware prefix");

    // The target reaches the upstream byte for byte: query, percent-encodings, case.
    for target in [
        "/api/auth/login?next=%2Fx&q=a%20b&u=%E2%9C%93",
        "/api/reports/caf%C3%A9?Sort=Desc&empty=",
    ] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: app.example.com\r\nX-Custom-Header: Kept\r\nConnection: close\r\n\r\n"
        );
        let (status, _) = raw_request(&s.gateway.proxy_addr(), request.as_bytes()).await;
        assert_eq!(status, Some(200), "{target}");
        let seen = if target.starts_with("/api/auth/") {
            s.api.last()
        } else {
            s.backend.last()
        };
        assert_eq!(seen.target, target);
        assert_eq!(
            seen.headers.get("x-custom-header").map(String::as_str),
            Some("Kept")
        );
    }

    let response = get("/elsewhere").await.expect("404");
    assert_eq!(response.status(), 404);
    let (code, _) = error_shape(&response.text().await.expect("body"));
    assert_eq!(code, "route_not_found");

    let response = c
        .post(s.gateway.url("/readonly/x"))
        .send()
        .await
        .expect("405");
    assert_eq!(response.status(), 405);
    assert_eq!(
        header(response.headers(), "allow").as_deref(),
        Some("GET, HEAD")
    );
    let (code, _) = error_shape(&response.text().await.expect("body"));
    assert_eq!(code, "method_not_allowed");
}

#[tokio::test]
async fn path_tricks_are_refused_before_any_upstream() {
    let s = setup().await;
    let addr = s.gateway.proxy_addr();
    for path in [
        "/api/auth/../reports",
        "/api/auth/%2e%2e/reports",
        "/api/auth%2f..%2freports",
        "/api//reports",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let (status, answer) = raw_request(&addr, request.as_bytes()).await;
        assert_eq!(status, Some(400), "{path}: {answer}");
        let body = answer.split("\r\n\r\n").nth(1).expect("body");
        assert_eq!(error_shape(body).0, "bad_path");
    }
    assert_eq!(s.api.count() + s.backend.count(), 0);
}

#[tokio::test]
async fn request_id_is_kept_replaced_or_generated_and_sent_upstream() {
    let s = setup().await;
    let c = client();

    let response = c
        .get(s.gateway.url("/api/x"))
        .header("X-Request-Id", "client-trace-01HZX")
        .send()
        .await
        .expect("request");
    assert_eq!(
        header(response.headers(), "x-request-id").as_deref(),
        Some("client-trace-01HZX")
    );
    assert_eq!(
        s.api.last().headers.get("x-request-id").map(String::as_str),
        Some("client-trace-01HZX")
    );

    let response = c
        .get(s.gateway.url("/api/x"))
        .header("X-Request-Id", "bad id <script>")
        .send()
        .await
        .expect("request");
    let replaced = header(response.headers(), "x-request-id").expect("id");
    assert_ne!(replaced, "bad id <script>");
    assert_eq!(replaced.len(), 36, "a UUID");
    assert_eq!(s.api.last().headers.get("x-request-id"), Some(&replaced));

    let first = c
        .get(s.gateway.url("/api/x"))
        .send()
        .await
        .expect("request");
    let second = c
        .get(s.gateway.url("/api/x"))
        .send()
        .await
        .expect("request");
    let (a, b) = (
        header(first.headers(), "x-request-id").expect("generated"),
        header(second.headers(), "x-request-id").expect("generated"),
    );
    assert_ne!(a, b);

    // Gateway errors carry the same id in the body and the header.
    let response = c.get(s.gateway.url("/nowhere")).send().await.expect("404");
    let id = header(response.headers(), "x-request-id").expect("id");
    let (_, body_id) = error_shape(&response.text().await.expect("body"));
    assert_eq!(id, body_id);
}

#[tokio::test]
async fn upstream_sees_its_own_host_and_forwarded_headers_it_can_trust() {
    let s = setup().await;
    client()
        .get(s.gateway.url("/api/x"))
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .expect("request");
    let seen = s.api.last();
    assert_eq!(seen.headers.get("host"), Some(&s.api.addr.to_string()));
    assert_eq!(
        seen.headers.get("x-forwarded-host"),
        Some(&s.gateway.proxy_addr())
    );
    assert_eq!(
        seen.headers.get("x-forwarded-for").map(String::as_str),
        Some("127.0.0.1"),
        "an untrusted client's X-Forwarded-For is replaced"
    );
    assert_eq!(
        seen.headers.get("x-forwarded-proto").map(String::as_str),
        Some("http")
    );
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let s = setup().await;
    let c = client();
    for _ in 0..20 {
        let response = c
            .get(s.gateway.url("/api/x"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        response.bytes().await.expect("body");
    }
    let connections: HashSet<_> = s.api.requests().iter().map(|r| r.peer).collect();
    assert!(
        connections.len() <= 2,
        "20 sequential requests used {} upstream connections",
        connections.len()
    );
}

/// A gateway error that ends the client connection says so (`Connection: close`): a client
/// that keeps connections alive must not send its next request on a socket the gateway is
/// closing (it would see a reset).
#[tokio::test]
async fn a_502_closes_the_connection_and_says_so() {
    let api = RecordingUpstream::start().await;
    let refusing = RefusingAddress::new();
    let gateway = GatewayProcess::start(
        TEST_POLICY,
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("BACKEND_UPSTREAM_URL", &refusing.url()),
        ],
    )
    .await;
    let client = client();
    for round in 0..10 {
        for (path, status) in [("/api/orders", 200), ("/api/reports", 502)] {
            let response = client
                .get(gateway.url(path))
                .send()
                .await
                .unwrap_or_else(|e| panic!("round {round}, {path}: {e:?}"));
            assert_eq!(response.status(), status, "round {round}, {path}");
            if status == 502 {
                assert_eq!(
                    header(response.headers(), "connection").as_deref(),
                    Some("close"),
                    "round {round}"
                );
            }
            let _ = response.bytes().await;
        }
    }
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_json_error_with_edge_headers() {
    let api = RecordingUpstream::start().await;
    let refusing = RefusingAddress::new();
    let dead = refusing.url();
    let gateway = GatewayProcess::start(
        TEST_POLICY,
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("BACKEND_UPSTREAM_URL", &dead),
        ],
    )
    .await;
    let response = client()
        .get(gateway.url("/api/reports"))
        .header("Origin", "http://localhost:5173")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 502);
    let h = response.headers().clone();
    assert_eq!(
        header(&h, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(&h, "access-control-allow-origin").as_deref(),
        Some("http://localhost:5173"),
        "the frontend can read the error"
    );
    assert_eq!(
        header(&h, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let (code, id) = error_shape(&response.text().await.expect("body"));
    assert_eq!(code, "upstream_unreachable");
    assert_eq!(header(&h, "x-request-id"), Some(id));
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(
            r#"gardien_upstream_errors_total{kind="connect_refused",upstream="backend"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn slow_upstream_is_a_504_json_error() {
    let s = setup().await;
    let started = std::time::Instant::now();
    let response = client()
        .get(s.gateway.url("/api/slow/3000"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2900),
        "read_timeout 1s applied"
    );
    let (code, _) = error_shape(&response.text().await.expect("body"));
    assert_eq!(code, "upstream_timeout");
}

/// The shipped policies, with the upstreams pointed at the test's.
async fn shipped(name: &str, api: &RecordingUpstream) -> GatewayProcess {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name);
    let dir = tempfile::tempdir().expect("tempdir");
    GatewayProcess::start_file(
        &path,
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("BACKEND_UPSTREAM_URL", &api.url()),
            ("FRONTEND_URL", "https://app.example.com"),
            ("FRONTEND_URL_PROD", "https://www.example.com"),
            ("JWT_ISSUER", "https://id.example.com/"),
            ("JWT_AUDIENCE", "api.example.com"),
            // Nothing listens there: the gateway starts, logs the failed fetch, and
            // answers protected routes 401; the headers under test are on every answer.
            ("JWKS_URL", "https://127.0.0.1:9/jwks.json"),
            (
                "GARDIEN_INTERNAL_SECRET",
                "test-internal-secret-of-at-least-32-bytes",
            ),
            // The machine's Redis: staging and production require the variable.
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            // Nothing in front of the test: the socket peer is the client.
            ("GARDIEN_CLIENT_IP", "direct"),
        ],
        dir,
    )
    .await
}

#[tokio::test]
async fn security_headers_follow_the_environment() {
    let api = RecordingUpstream::start().await;
    let always = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    for (policy, hsts) in [
        ("dev.yaml", None),
        ("staging.yaml", Some("max-age=86400")),
        (
            "production.yaml",
            Some("max-age=63072000; includeSubDomains"),
        ),
    ] {
        let gateway = shipped(policy, &api).await;
        for path in ["/api/auth/login", "/api/things", "/nowhere"] {
            let response = client()
                .get(gateway.url(path))
                .send()
                .await
                .expect("request");
            let h = response.headers();
            for (name, value) in always {
                assert_eq!(
                    header(h, name).as_deref(),
                    Some(value),
                    "{policy} {path} {name}"
                );
            }
            assert!(header(h, "permissions-policy").is_some(), "{policy} {path}");
            assert_eq!(
                header(h, "strict-transport-security").as_deref(),
                hsts,
                "{policy} {path}"
            );
            assert!(
                header(h, "server").is_none(),
                "{policy} {path}: Server removed"
            );
            assert!(
                header(h, "x-powered-by").is_none(),
                "{policy} {path}: X-Powered-By removed"
            );
        }
    }
}
