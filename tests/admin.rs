//! The admin listener: `/healthz`, `/readyz` following the upstreams, `/metrics` counting
//! requests, `/status`.

mod support;

use support::{client, GatewayProcess, RecordingUpstream, TEST_POLICY};

async fn get_json(url: String) -> (u16, serde_json::Value) {
    let response = client().get(url).send().await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn readyz_follows_the_upstreams() {
    let api = RecordingUpstream::start().await;
    let mut backend = RecordingUpstream::start().await;
    let gateway = GatewayProcess::start(
        TEST_POLICY,
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("BACKEND_UPSTREAM_URL", &backend.url()),
        ],
    )
    .await;

    let (status, body) = get_json(gateway.admin_url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");

    backend.stop().await;
    let (status, body) = get_json(gateway.admin_url("/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    let failing: Vec<_> = body["failing"]
        .as_array()
        .expect("failing list")
        .iter()
        .map(|f| f["upstream"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(failing, vec!["backend"]);

    // /healthz says the process is up, whatever the upstreams.
    let (status, body) = get_json(gateway.admin_url("/healthz")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    // Back up on the same address: ready again.
    let _backend = RecordingUpstream::start_on(&backend.addr.to_string()).await;
    let (status, _) = get_json(gateway.admin_url("/readyz")).await;
    assert_eq!(status, 200);
}

fn series_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests_by_route_method_and_status() {
    let api = RecordingUpstream::start().await;
    let gateway = GatewayProcess::start(
        TEST_POLICY,
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("BACKEND_UPSTREAM_URL", &api.url()),
        ],
    )
    .await;
    let scrape = || async {
        client()
            .get(gateway.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let ok = r#"gardien_requests_total{method="GET",route="api",status="2xx"}"#;
    let missing = r#"gardien_requests_total{method="GET",route="unmatched",status="4xx"}"#;
    let before = scrape().await;
    for _ in 0..3 {
        client()
            .get(gateway.url("/api/x"))
            .send()
            .await
            .expect("request");
    }
    client()
        .get(gateway.url("/nowhere"))
        .send()
        .await
        .expect("request");
    let after = scrape().await;
    assert_eq!(
        series_value(&after, ok) - series_value(&before, ok),
        3.0,
        "{after}"
    );
    assert_eq!(
        series_value(&after, missing) - series_value(&before, missing),
        1.0
    );
    assert!(
        series_value(
            &after,
            r#"gardien_request_duration_seconds_count{route="api"}"#
        ) >= 3.0,
        "{after}"
    );
    assert!(after.contains("gardien_cors_rejections_total"));
    assert!(after.contains("gardien_upstream_errors_total") || !after.contains("upstream_errors"));
}

#[tokio::test]
async fn status_describes_the_running_policy() {
    let api = RecordingUpstream::start().await;
    let gateway = GatewayProcess::start(
        TEST_POLICY,
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("BACKEND_UPSTREAM_URL", &api.url()),
        ],
    )
    .await;
    let (status, body) = get_json(gateway.admin_url("/status")).await;
    assert_eq!(status, 200);
    assert_eq!(body["environment"], "dev");
    let routes: Vec<_> = body["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(routes, vec!["auth", "reports", "api", "readonly"]);
    let (status, body) = get_json(gateway.admin_url("/nope")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}
