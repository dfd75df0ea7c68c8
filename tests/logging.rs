//! Traces and logs for Cloud Logging, through real processes: the demo API, gardien-backend
//! and two gateways (one exposed directly, one behind a trusted hop, `client_ip:
//! cloud_run`), all with `GARDIEN_LOG_FORMAT=json` and `GOOGLE_CLOUD_PROJECT` (its Secret
//! Manager faked on loopback). Every line both binaries print is parsed as JSON; the lines
//! of one request carry one trace id in the gateway and in the backend; a client's
//! `traceparent` is replaced unless it came through the trusted hop; the access line has
//! Cloud Logging's `httpRequest` without the query; no line holds a token or a signature.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use gardien_fakes::secret_manager::{FakeMetadataServer, FakeSecretManager};
use serde_json::{json, Value};
use support::processes::{BackendProcess, DemoApi};
use support::{client, GatewayProcess, RecordingUpstream};

const SECRET: &str = "logging-test-internal-secret-0123456789";
const PROJECT: &str = "gardien-logs-test";
const TOKEN: &str = "metadata-token-for-logging";
/// A trace a client (or Google's front end) sends.
const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const QUERY_SECRET: &str = "query-value-that-must-never-be-logged";
const SEVERITIES: [&str; 5] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
const TRACE_KEY: &str = "logging.googleapis.com/trace";
const SPAN_KEY: &str = "logging.googleapis.com/spanId";

/// Every line of a process's stderr, each parsed as one JSON object.
fn json_lines(who: &str, text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{who} printed a line that is not JSON ({e}): {line}"));
            assert!(value.is_object(), "{who}: not an object: {line}");
            let severity = value["severity"].as_str().unwrap_or_default();
            assert!(
                SEVERITIES.contains(&severity),
                "{who}: severity {severity:?} is not Cloud Logging's: {line}"
            );
            assert!(value["message"].is_string(), "{who}: no message: {line}");
            let time = value["time"].as_str().unwrap_or_default();
            assert!(
                humantime::parse_rfc3339(time).is_ok(),
                "{who}: time {time:?} is not RFC 3339: {line}"
            );
            value
        })
        .collect()
}

/// The lines of request `id`.
fn of_request<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["request_id"] == id).collect()
}

/// Waits (bounded) until `log()` holds a line with `needle`: the access line is written
/// just after the answer.
async fn wait_for(log: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = log();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no `{needle}` in 10s:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The trace id of a line (`projects/<project>/traces/<id>`).
fn trace_of(line: &Value) -> String {
    let full = line[TRACE_KEY]
        .as_str()
        .unwrap_or_else(|| panic!("no trace on {line}"));
    full.strip_prefix(&format!("projects/{PROJECT}/traces/"))
        .unwrap_or_else(|| panic!("trace key not in the project: {full}"))
        .to_owned()
}

/// The one trace id all `lines` share.
fn one_trace(who: &str, lines: &[&Value]) -> String {
    assert!(!lines.is_empty(), "{who}: no line for the request");
    let trace = trace_of(lines[0]);
    for line in lines {
        assert_eq!(
            trace_of(line),
            trace,
            "{who}: one trace per request: {line}"
        );
        assert!(line[SPAN_KEY].is_string(), "{who}: spanId on {line}");
    }
    trace
}

/// `dev.yaml` with the access log on for every request.
fn policy_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/dev.yaml");
    let text = std::fs::read_to_string(path).expect("policies/dev.yaml");
    let anchor = "  graceful_shutdown_timeout: 2s\n";
    assert!(text.contains(anchor), "dev.yaml's server section changed");
    text.replace(
        anchor,
        &format!("{anchor}  access_log: {{ sample: 1.0 }}\n"),
    )
}

async fn register_and_log_in(gateway: &GatewayProcess) -> String {
    let credentials = json!({"email": "ada@example.com", "password": "correct horse battery"});
    for path in ["/api/auth/register", "/api/auth/login"] {
        let response = client()
            .post(gateway.url(path))
            .json(&credentials)
            .send()
            .await
            .expect(path);
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        if path.ends_with("login") {
            let body: Value = response.json().await.expect("json");
            return format!("Bearer {}", body["token"].as_str().expect("a token"));
        }
    }
    unreachable!()
}

#[tokio::test]
async fn both_binaries_write_cloud_logging_lines_tied_by_one_trace() {
    let sm = FakeSecretManager::start().await;
    let metadata = FakeMetadataServer::start(TOKEN).await;
    sm.accept_token(TOKEN);
    let (sm_url, metadata_host) = (sm.url(), metadata.host());
    let google = [
        ("GOOGLE_CLOUD_PROJECT", PROJECT),
        ("SECRET_MANAGER_BASE_URL", sm_url.as_str()),
        ("GCE_METADATA_HOST", metadata_host.as_str()),
        ("GARDIEN_LOG_FORMAT", "json"),
        ("GARDIEN_INTERNAL_SECRET", SECRET),
    ];
    let demo = DemoApi::start().await;
    let mut backend_env = google.to_vec();
    backend_env.push(("GARDIEN_LOG", "info,gardien_backend::trace=debug"));
    let backend = BackendProcess::start(&backend_env).await;
    let recording = RecordingUpstream::start().await;
    let (api, jwks) = (demo.url(), format!("{}/.well-known/jwks.json", demo.url()));
    let (backend_url, recording_url) = (backend.url(), recording.url());
    let gateway_env = |client_ip: &'static str| {
        let mut env = google.to_vec();
        env.extend([
            ("API_UPSTREAM_URL", api.as_str()),
            ("JWT_ISSUER", api.as_str()),
            ("JWKS_URL", jwks.as_str()),
            ("GARDIEN_CLIENT_IP", client_ip),
        ]);
        env
    };
    let mut direct_env = gateway_env("direct");
    direct_env.push(("BACKEND_UPSTREAM_URL", backend_url.as_str()));
    let mut behind_env = gateway_env("cloud_run");
    behind_env.push(("BACKEND_UPSTREAM_URL", recording_url.as_str()));
    // Exposed directly: no client's trace is believed.
    let direct = GatewayProcess::start(&policy_text(), &direct_env).await;
    // Behind a platform that appends the client to X-Forwarded-For: its trace is believed.
    let behind = GatewayProcess::start(&policy_text(), &behind_env).await;
    let token = register_and_log_in(&direct).await;

    // 1. Untrusted peer, through to the real backend.
    let response = client()
        .get(direct.url(&format!(
            "/api/notifications/preferences?token={QUERY_SECRET}"
        )))
        .header("Authorization", &token)
        .header("traceparent", CLIENT_TRACEPARENT)
        .header("X-Cloud-Trace-Context", format!("{CLIENT_TRACE}/1;o=1"))
        .header("X-Request-Id", "logs-untrusted-1")
        .header("User-Agent", "logging-test/1.0")
        .send()
        .await
        .expect("preferences");
    assert_eq!(response.status(), 200);
    let gateway_text = wait_for(|| direct.log(), "logs-untrusted-1").await;
    let backend_text = wait_for(|| backend.log(), "logs-untrusted-1").await;
    let gateway_lines = json_lines("gardien", &gateway_text);
    let backend_lines = json_lines("gardien-backend", &backend_text);
    let at_gateway = of_request(&gateway_lines, "logs-untrusted-1");
    let at_backend = of_request(&backend_lines, "logs-untrusted-1");
    let trace = one_trace("gardien", &at_gateway);
    assert_ne!(trace, CLIENT_TRACE, "a client's traceparent is replaced");
    assert_eq!(
        one_trace("gardien-backend", &at_backend),
        trace,
        "one trace, both binaries"
    );
    assert_ne!(
        at_gateway[0][SPAN_KEY], at_backend[0][SPAN_KEY],
        "each binary logs its own span"
    );
    assert!(at_gateway
        .iter()
        .all(|l| l["logging.googleapis.com/trace_sampled"] == false));

    // The access line: Cloud Logging's httpRequest, the path without its query.
    let access = at_gateway
        .iter()
        .find(|l| l.get("httpRequest").is_some())
        .unwrap_or_else(|| panic!("no access line:\n{gateway_text}"));
    let http = &access["httpRequest"];
    assert_eq!(http["requestMethod"], "GET");
    assert_eq!(http["requestUrl"], "/api/notifications/preferences");
    assert_eq!(http["status"], 200);
    assert_eq!(http["remoteIp"], "127.0.0.1");
    assert_eq!(http["userAgent"], "logging-test/1.0");
    assert_eq!(http["protocol"], "HTTP/1.1");
    assert!(
        http["responseSize"].as_u64().is_some_and(|n| n > 0),
        "{http}"
    );
    let latency = http["latency"].as_str().expect("latency");
    let seconds: f64 = latency
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("latency {latency:?} is not `<seconds>s`"));
    assert!((0.0..10.0).contains(&seconds));

    // 2. Through the trusted hop: the front end's trace is continued, and forwarded with
    //    gardien's span as parent.
    let response = client()
        .get(behind.url("/api/notifications/preferences?x=1"))
        .header("Authorization", &token)
        .header("traceparent", CLIENT_TRACEPARENT)
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Request-Id", "logs-trusted-1")
        .send()
        .await
        .expect("through the trusted hop");
    assert_eq!(response.status(), 200);
    let behind_text = wait_for(|| behind.log(), "logs-trusted-1").await;
    let behind_lines = json_lines("gardien (trusted hop)", &behind_text);
    let at_behind = of_request(&behind_lines, "logs-trusted-1");
    assert_eq!(one_trace("gardien (trusted hop)", &at_behind), CLIENT_TRACE);
    let seen = recording.last();
    let forwarded = seen
        .headers
        .get("traceparent")
        .expect("traceparent upstream");
    let gardien_span = at_behind[0][SPAN_KEY].as_str().expect("spanId");
    assert_eq!(forwarded, &format!("00-{CLIENT_TRACE}-{gardien_span}-01"));
    let access = at_behind
        .iter()
        .find(|l| l.get("httpRequest").is_some())
        .expect("the access line");
    assert_eq!(access["httpRequest"]["remoteIp"], "203.0.113.9");
    let signature = seen
        .headers
        .get("x-gardien-identity")
        .expect("the identity signature upstream")
        .clone();

    // No line of any binary holds a credential, a signature or a query.
    let bearer = token.trim_start_matches("Bearer ");
    for (who, text) in [
        ("gardien", direct.log()),
        ("gardien (trusted hop)", behind.log()),
        ("gardien-backend", backend.log()),
    ] {
        json_lines(who, &text);
        for secret in [bearer, signature.as_str(), QUERY_SECRET, SECRET] {
            assert!(!text.contains(secret), "{who} logged a secret:\n{text}");
        }
    }
}
