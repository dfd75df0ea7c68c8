//! The admin listener: `/healthz`, `/readyz` following the upstreams, `/metrics` counting
//! requests, `/status`.

mod support;

use support::{client, series_value, GatewayProcess, RecordingUpstream, TEST_POLICY};

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

    let (status, body) = gateway.admin_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");

    backend.stop().await;
    let (status, body) = gateway.admin_json("/readyz").await;
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
    let (status, body) = gateway.admin_json("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    // Back up on the same address: ready again.
    let _backend = RecordingUpstream::start_on(&backend.addr.to_string()).await;
    let (status, _) = gateway.admin_json("/readyz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_method_and_status() {
    let api = RecordingUpstream::start().await;
    let gateway = GatewayProcess::with_upstream(TEST_POLICY, &api).await;
    let ok = r#"gardien_requests_total{method="GET",route="api",status="2xx"}"#;
    let missing = r#"gardien_requests_total{method="GET",route="unmatched",status="4xx"}"#;
    let before = gateway.metrics().await;
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
    // A request is counted when it ends, just after its answer is written: wait (bounded)
    // for the last one rather than racing it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let after = loop {
        let after = gateway.metrics().await;
        let counted = series_value(&after, missing) - series_value(&before, missing) >= 1.0
            && series_value(&after, ok) - series_value(&before, ok) >= 3.0;
        if counted || std::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
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

/// Upstream time, build, process: a proxied request shows in
/// `gardien_upstream_duration_seconds`; the build and process series are there.
#[tokio::test]
async fn metrics_show_upstream_time_build_and_process() {
    let api = RecordingUpstream::start().await;
    let gateway = GatewayProcess::with_upstream(TEST_POLICY, &api).await;
    let count = r#"gardien_upstream_duration_seconds_count{upstream="api"}"#;
    assert_eq!(series_value(&gateway.metrics().await, count), 0.0);
    client()
        .get(gateway.url("/api/x"))
        .send()
        .await
        .expect("request");
    client()
        .get(gateway.url("/nowhere"))
        .send()
        .await
        .expect("request");
    let metrics = gateway.metrics().await;
    assert_eq!(
        series_value(&metrics, count),
        1.0,
        "the proxied request only: {metrics}"
    );
    assert!(
        series_value(
            &metrics,
            r#"gardien_upstream_duration_seconds_sum{upstream="api"}"#
        ) > 0.0
    );
    let commit = gardien::admin::metrics::COMMIT;
    assert!(
        metrics.contains(&format!(
            r#"gardien_build_info{{commit="{commit}",version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    // A commit of this repository (built inside git: never `unknown`). Not compared with
    // HEAD: a target directory shared by several worktrees may hold another one's build.
    let in_git = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .is_ok_and(|out| out.status.success());
    if in_git {
        assert!(
            commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{commit}"
        );
    }
    assert!(series_value(&metrics, "process_resident_memory_bytes") > 0.0);
    assert!(series_value(&metrics, "process_open_fds") > 0.0);
    assert!(metrics.contains("process_cpu_seconds_total"), "{metrics}");
}

#[tokio::test]
async fn status_describes_the_running_policy() {
    let api = RecordingUpstream::start().await;
    let gateway = GatewayProcess::with_upstream(TEST_POLICY, &api).await;
    let (status, body) = gateway.admin_json("/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["environment"], "dev");
    let routes: Vec<_> = body["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(routes, vec!["auth", "reports", "api", "readonly"]);
    let (status, body) = gateway.admin_json("/nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}
