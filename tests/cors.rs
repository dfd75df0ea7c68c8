//! CORS through the real gateway: preflights answered at the edge, every origin case of the
//! policy, credentials, `Vary`, and the upstream's own CORS headers replaced.

mod support;

use support::{
    client, error_shape, header, header_all, raw_request, GatewayProcess, RecordingUpstream,
    TEST_POLICY,
};

struct Setup {
    api: RecordingUpstream,
    _backend: RecordingUpstream,
    gateway: GatewayProcess,
}

async fn setup(extra_env: &[(&str, &str)]) -> Setup {
    let api = RecordingUpstream::start().await;
    let backend = RecordingUpstream::start().await;
    let (api_url, backend_url) = (api.url(), backend.url());
    let mut env = vec![
        ("API_UPSTREAM_URL", api_url.as_str()),
        ("BACKEND_UPSTREAM_URL", backend_url.as_str()),
    ];
    env.extend_from_slice(extra_env);
    let gateway = GatewayProcess::start(TEST_POLICY, &env).await;
    Setup {
        api,
        _backend: backend,
        gateway,
    }
}

async fn preflight(
    gateway: &GatewayProcess,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> reqwest::Response {
    let mut request = client()
        .request(reqwest::Method::OPTIONS, gateway.url("/api/auth/login"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method);
    if let Some(headers) = headers {
        request = request.header("Access-Control-Request-Headers", headers);
    }
    request.send().await.expect("preflight")
}

#[tokio::test]
async fn allowed_preflight_is_answered_at_the_edge() {
    let s = setup(&[]).await;
    let response = preflight(
        &s.gateway,
        "http://localhost:5173",
        "POST",
        Some("content-type,authorization"),
    )
    .await;
    assert_eq!(response.status(), 204);
    let h = response.headers();
    assert_eq!(
        header(h, "access-control-allow-origin").as_deref(),
        Some("http://localhost:5173")
    );
    assert_eq!(
        header(h, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert!(header(h, "access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(header(h, "access-control-allow-headers")
        .is_some_and(|m| m.to_ascii_lowercase().contains("content-type")));
    assert_eq!(header(h, "access-control-max-age").as_deref(), Some("600"));
    assert!(header(h, "vary").is_some_and(|v| v.contains("Origin")));
    assert!(header(h, "x-request-id").is_some());
    assert_eq!(s.api.count(), 0, "a preflight never reaches the upstream");
}

#[tokio::test]
async fn refused_preflights_get_403_json_and_never_reach_the_upstream() {
    let s = setup(&[]).await;
    let cases = [
        (
            "https://evil.test",
            "POST",
            None,
            "cors_origin_not_allowed",
            "origin_not_allowed",
        ),
        (
            "http://localhost:5173",
            "TRACE",
            None,
            "cors_method_not_allowed",
            "method_not_allowed",
        ),
        (
            "http://localhost:5173",
            "POST",
            Some("content-type,x-evil"),
            "cors_header_not_allowed",
            "header_not_allowed",
        ),
        (
            "not-an-origin",
            "GET",
            None,
            "cors_malformed_origin",
            "malformed_origin",
        ),
    ];
    for (origin, method, headers, code, reason) in cases {
        let series = format!("gardien_cors_rejections_total{{reason=\"{reason}\"}}");
        let before = s.gateway.metric(&series).await;
        let response = preflight(&s.gateway, origin, method, headers).await;
        assert_eq!(response.status(), 403, "{origin} {method}");
        let h = response.headers().clone();
        assert!(
            h.keys().all(|k| !k.as_str().starts_with("access-control-")),
            "no CORS header on a refusal: {h:?}"
        );
        assert_eq!(
            header(&h, "content-type").as_deref(),
            Some("application/json")
        );
        let body = response.text().await.expect("body");
        let (found, request_id) = error_shape(&body);
        assert_eq!(found, code);
        assert_eq!(header(&h, "x-request-id"), Some(request_id));
        assert_eq!(s.gateway.metric(&series).await, before + 1.0, "{series}");
    }
    assert_eq!(s.api.count(), 0);
}

#[tokio::test]
async fn every_origin_case_of_the_policy() {
    let s = setup(&[(
        "FRONTEND_URL",
        "https://one.frontend.test, https://two.frontend.test:4443",
    )])
    .await;
    let cases = [
        ("http://localhost:5173", true),
        ("http://LOCALHOST:5173", true),
        ("http://localhost:5174", false),
        ("https://app.example.com", true),
        ("https://app.example.com:443", true),
        ("https://APP.example.com", true),
        ("http://app.example.com", false),
        ("https://a.example.com", true),
        ("https://a.b.example.com", true),
        ("https://example.com", false),
        ("https://evilexample.com", false),
        ("https://example.com.evil.net", false),
        ("http://a.example.com", false),
        ("https://a.example.com:8443", false),
        ("https://x.partner.test:8443", true),
        ("https://x.partner.test", false),
        ("https://one.frontend.test", true),
        ("https://two.frontend.test:4443", true),
        ("https://two.frontend.test", false),
        ("null", false),
        ("https://app.example.com/", false),
        ("https://app.example.com, https://evil.test", false),
    ];
    for (origin, allowed) in cases {
        let response = client()
            .get(s.gateway.url("/api/things"))
            .header("Origin", origin)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{origin}: actual requests pass");
        let h = response.headers();
        let acao = header(h, "access-control-allow-origin");
        if allowed {
            assert_eq!(acao.as_deref(), Some(origin), "{origin} echoed exactly");
            assert_eq!(
                header(h, "access-control-allow-credentials").as_deref(),
                Some("true")
            );
            assert_eq!(
                header(h, "access-control-expose-headers").as_deref(),
                Some("X-Request-Id, ETag")
            );
        } else {
            assert!(
                h.keys().all(|k| !k.as_str().starts_with("access-control-")),
                "{origin}: no CORS header: {h:?}"
            );
        }
    }
}

#[tokio::test]
async fn upstream_cors_headers_are_replaced_and_vary_is_merged() {
    let s = setup(&[]).await;
    for origin in [
        Some("http://localhost:5173"),
        Some("https://evil.test"),
        None,
    ] {
        let mut request = client().get(s.gateway.url("/api/things"));
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let response = request.send().await.expect("request");
        let h = response.headers();
        let acao = header_all(h, "access-control-allow-origin");
        assert!(
            !acao.contains(&"*".to_owned()),
            "{origin:?}: upstream `*` removed"
        );
        assert!(
            header(h, "access-control-allow-methods").is_none(),
            "{origin:?}: upstream's methods removed"
        );
        let vary = header_all(h, "vary").join(", ");
        assert!(
            vary.contains("Accept-Encoding"),
            "{origin:?}: upstream Vary kept: {vary}"
        );
        assert!(vary.contains("Origin"), "{origin:?}: Vary: Origin: {vary}");
    }
}

#[tokio::test]
async fn hostile_origin_and_header_bytes_never_break_the_gateway() {
    let s = setup(&[]).await;
    let addr = s.gateway.proxy_addr();
    let long_origin = format!("https://{}.example.com", "a".repeat(5000));
    let huge_header = "x".repeat(200_000);
    let requests: Vec<Vec<u8>> = vec![
        format!("GET /api/x HTTP/1.1\r\nHost: gw\r\nOrigin: {long_origin}\r\nConnection: close\r\n\r\n").into_bytes(),
        b"GET /api/x HTTP/1.1\r\nHost: gw\r\nOrigin: https://\xff\xfe.example.com\r\nConnection: close\r\n\r\n".to_vec(),
        b"OPTIONS /api/x HTTP/1.1\r\nHost: gw\r\nOrigin: http://localhost:5173\r\nAccess-Control-Request-Method: \xff\r\nConnection: close\r\n\r\n".to_vec(),
        b"OPTIONS /api/x HTTP/1.1\r\nHost: gw\r\nOrigin: \r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n".to_vec(),
        format!("GET /api/x HTTP/1.1\r\nHost: gw\r\nX-Big: {huge_header}\r\nConnection: close\r\n\r\n").into_bytes(),
        b"GET /api/x HTTP/1.1\r\nHost: gw\r\nOrigin: http://localhost:5173\r\nOrigin: https://evil.test\r\nConnection: close\r\n\r\n".to_vec(),
    ];
    // What each request must get: `Some(code)`, or `None` for "a 4xx or a closed
    // connection".
    let expected = [
        Some(200),
        Some(200),
        Some(403),
        Some(403),
        Some(431),
        Some(200),
    ];
    for (i, (request, expected)) in requests.iter().zip(expected).enumerate() {
        let (status, answer) = raw_request(&addr, request).await;
        let lower = answer.to_ascii_lowercase();
        assert!(
            !lower.contains("access-control-allow-origin"),
            "request {i}: no CORS header for hostile input: {answer}"
        );
        match (expected, status) {
            (Some(code), Some(got)) => assert_eq!(got, code, "request {i}: {answer}"),
            (None, Some(got)) => assert!((400..500).contains(&got), "request {i}: {answer}"),
            (None, None) => {}
            (Some(_), None) => panic!("request {i}: no answer"),
        }
    }
    // Still alive and serving.
    let response = client()
        .get(s.gateway.url("/api/after"))
        .send()
        .await
        .expect("gateway still up");
    assert_eq!(response.status(), 200);
    assert!(!s.gateway.log().contains("panicked"), "{}", s.gateway.log());
}

#[tokio::test]
async fn refusals_are_logged_once_per_origin() {
    let s = setup(&[]).await;
    for _ in 0..5 {
        client()
            .get(s.gateway.url("/api/x"))
            .header("Origin", "https://flood.test")
            .send()
            .await
            .expect("request");
    }
    client()
        .get(s.gateway.url("/api/x"))
        .header("Origin", "https://other.test")
        .send()
        .await
        .expect("request");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = s.gateway.log();
    let lines = |needle: &str| {
        log.lines()
            .filter(|l| l.contains("CORS request refused") && l.contains(needle))
            .count()
    };
    assert_eq!(lines("https://flood.test"), 1, "{log}");
    assert_eq!(lines("https://other.test"), 1, "{log}");
    assert!(log.contains("reason=\"origin_not_allowed\""), "{log}");
    assert_eq!(
        s.gateway
            .metric("gardien_cors_rejections_total{reason=\"origin_not_allowed\"}")
            .await,
        6.0
    );
}
