//! The service's shared behaviour: identity checks, the error shape, health, metrics,
//! the OpenAPI document — on SQLite and PostgreSQL.

mod support;

use axum::http::StatusCode;
use support::{Engine, TestApp};

both_databases!(health_and_readiness, |app| async move {
    assert_eq!(
        app.get("/healthz").unsigned().send().await.status,
        StatusCode::OK
    );
    let ready = app.get("/readyz").unsigned().send().await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json);
    assert_eq!(ready.json["status"], "ready");
    assert_eq!(ready.json["database"]["ok"], true, "{}", ready.json);
    assert!(ready.json["providers"].is_object(), "{}", ready.json);
    // The outbox backlog of every channel, from the last count.
    for channel in ["email", "sms"] {
        assert!(
            ready.json["outbox"]["channels"][channel]["due"].is_u64(),
            "{}",
            ready.json
        );
    }
    app.finish().await;
});

both_databases!(unknown_routes_answer_the_error_shape, |app| async move {
    let answer = app.get("/api/nowhere").user("u1").send().await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error_code(), "not_found");
    assert_eq!(
        answer.header("x-request-id").as_deref(),
        answer.json["error"]["request_id"].as_str()
    );
    app.finish().await;
});

#[tokio::test]
async fn openapi_document_is_served() {
    let app = TestApp::new(Engine::Sqlite).await;
    let answer = app.get("/openapi.json").unsigned().send().await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        answer.json
    );
    // The error codes are the shared list, as an enum clients can generate code from.
    let codes: Vec<&str> = answer.json["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let shared: Vec<&str> = gardien_errors::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(codes, shared);
    assert_eq!(
        answer.json["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
    app.finish().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = TestApp::new(Engine::Sqlite).await;
    app.get("/healthz").unsigned().send().await;
    let metrics =
        String::from_utf8(app.get("/metrics").unsigned().send().await.bytes).expect("utf8");
    assert!(
        metrics.contains(
            r#"gardien_backend_requests_total{method="GET",route="/healthz",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gardien_backend_db_connections{state="max"}"#),
        "{metrics}"
    );
    app.finish().await;
}
