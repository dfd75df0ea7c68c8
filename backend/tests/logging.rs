//! The backend's logs as Cloud Logging reads them, from the real binary with
//! `GARDIEN_LOG_FORMAT=json` and `GOOGLE_CLOUD_PROJECT` (its Secret Manager faked on
//! loopback): every line it prints is one JSON object with Cloud Logging's severity, and
//! the lines of a request continue the trace of the `traceparent` gardien sent.

mod support;

use std::time::{Duration, Instant};

use gardien_fakes::secret_manager::{FakeMetadataServer, FakeSecretManager};
use serde_json::Value;
use support::process::BackendProcess;
use support::{Engine, TestDb, SECRET};

const PROJECT: &str = "gardien-logs-test";
const TOKEN: &str = "metadata-token-for-backend-logging";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const SEVERITIES: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/// Every line, parsed; panics on one that is not a Cloud Logging JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {line}"));
            let severity = value["severity"].as_str().unwrap_or_default();
            assert!(SEVERITIES.contains(&severity), "severity of {line}");
            assert!(value["message"].is_string(), "message of {line}");
            assert!(value["time"].is_string(), "time of {line}");
            value
        })
        .collect()
}

/// Waits (bounded) for a line of request `id`, and returns all of that request's lines.
async fn lines_of(backend: &BackendProcess, id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = json_lines(&backend.logs())
            .into_iter()
            .filter(|l| l["request_id"] == id)
            .collect();
        if !lines.is_empty() {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no line of {id} in 10s:\n{}",
            backend.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn trace_of(line: &Value) -> &str {
    line["logging.googleapis.com/trace"]
        .as_str()
        .and_then(|t| t.strip_prefix(&format!("projects/{PROJECT}/traces/")))
        .unwrap_or_else(|| panic!("no trace of the project on {line}"))
}

#[tokio::test]
async fn the_backend_continues_the_gateways_trace_in_json_lines() {
    let sm = FakeSecretManager::start().await;
    let metadata = FakeMetadataServer::start(TOKEN).await;
    sm.accept_token(TOKEN);
    let db = TestDb::new(Engine::Sqlite).await;
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", db.url.clone()),
        ("GARDIEN_LOG_FORMAT", "json".to_owned()),
        (
            "GARDIEN_LOG",
            "info,sqlx=warn,gardien_backend::trace=debug".to_owned(),
        ),
        ("GOOGLE_CLOUD_PROJECT", PROJECT.to_owned()),
        ("SECRET_MANAGER_BASE_URL", sm.url()),
        ("GCE_METADATA_HOST", metadata.host()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let backend = BackendProcess::start(&env).await;
    let client = reqwest::Client::new();

    let response = client
        .get(backend.url("/healthz?probe=1"))
        .header("traceparent", PARENT)
        .header("X-Request-Id", "backend-traced-1")
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), 200);
    let lines = lines_of(&backend, "backend-traced-1").await;
    for line in &lines {
        assert_eq!(trace_of(line), TRACE, "the gateway's trace is continued");
        let span = line["logging.googleapis.com/spanId"]
            .as_str()
            .expect("spanId");
        assert_eq!(span.len(), 16);
        assert_ne!(span, "00f067aa0ba902b7", "a span of its own");
        assert_eq!(line["logging.googleapis.com/trace_sampled"], true);
    }
    let served = lines
        .iter()
        .find(|l| l.get("httpRequest").is_some())
        .expect("the request's closing line");
    assert_eq!(served["httpRequest"]["requestUrl"], "/healthz", "no query");
    assert_eq!(served["httpRequest"]["status"], 200);

    // Without a traceparent (a probe): a new trace, not sampled.
    client
        .get(backend.url("/healthz"))
        .header("X-Request-Id", "backend-untraced-1")
        .send()
        .await
        .expect("healthz");
    let lines = lines_of(&backend, "backend-untraced-1").await;
    assert_ne!(trace_of(&lines[0]), TRACE);
    assert_eq!(lines[0]["logging.googleapis.com/trace_sampled"], false);

    let all = backend.logs();
    json_lines(&all);
    assert!(!all.contains(SECRET), "the internal secret is never logged");
}
