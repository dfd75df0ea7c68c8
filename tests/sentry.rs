//! Error reports from the release build of `gardien` to a local Sentry ingestion endpoint
//! that speaks the envelope protocol (`gardien_fakes::sentry`): what the server received is
//! parsed and asserted on, kind by kind, tag by tag, and the raw bytes are searched for every
//! secret the requests and the policy carried.
//!
//! Needs `target/release/gardien` (`make test` builds it: `cargo build --release --workspace --bins`).

mod support;

use std::time::Duration;

use gardien_fakes::sentry::FakeSentry;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use support::jwt::{claims, hs_with_secret};
use support::{client, header, release_binary, GatewayProcess, RefusingAddress, GATEWAY_SOURCES};

const KEY: &str = "f00dfeedf00dfeedf00dfeedf00dfeed";
const PROJECT: &str = "1";
const HS_SECRET: &str = "hs-secret-of-the-sentry-test-0123456789abcdef";
const INTERNAL_SECRET: &str = "identity-secret-of-the-sentry-test-0123456789";
const QUERY_SECRET: &str = "query-secret-value-42";
const COOKIE_SECRET: &str = "cookie-secret-value-42";
/// How long a report may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(15);

const POLICY: &str = r#"
environment: dev
listen: "${GARDIEN_LISTEN}"
admin_listen: "${GARDIEN_ADMIN_LISTEN}"
upstreams:
  api: { url: "${API_UPSTREAM_URL}", connect_timeout: 1s, read_timeout: 2s }
routes:
  - { name: api, prefix: /api/, upstream: api }
jwt:
  issuers:
    - issuer: "https://hs.test"
      audiences: [gardien-test]
      algorithms: [HS256]
      secret: TEST_HS_SECRET
    - issuer: "https://rs.test"
      audiences: [gardien-test]
      algorithms: [RS256]
      jwks_url: "${JWKS_URL}"
  identity_secret: GARDIEN_INTERNAL_SECRET
rate_limits:
  store: redis
  redis: { url: "${REDIS_URL}", replicas: 1, timeout: 200ms }
  rules:
    - { name: ip, key: ip, rate: 1000/s, burst: 1000 }
server: { threads: 1, graceful_shutdown_timeout: 1s }
"#;

fn tag<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event["tags"][name].as_str()
}

fn kind_is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |event| tag(event, "kind") == Some(kind)
}

/// Runs `command` to its end (bounded) off the runtime, with secrets from its environment
/// only; its output.
async fn run(mut command: std::process::Command) -> std::process::Output {
    command
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("SECRET_MANAGER_PROJECT")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("SECRETS_DIR", "/nonexistent");
    let run = tokio::task::spawn_blocking(move || command.output());
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the command ended within 60 s")
        .expect("join")
        .expect("the command ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_build_reports_failures_grouped_tagged_and_scrubbed() {
    let binary = release_binary("gardien", GATEWAY_SOURCES);
    let sentry = FakeSentry::start(KEY, PROJECT).await;
    let api = RefusingAddress::new();
    let jwks = RefusingAddress::new();
    let redis = RefusingAddress::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let dsn = sentry.dsn();
    let redis_url = format!("redis://:redis-password-0123456789@{}", redis.addr);
    let env = [
        ("SENTRY_DSN", dsn.as_str()),
        ("API_UPSTREAM_URL", &api.url()),
        ("JWKS_URL", &format!("{}/jwks.json", jwks.url())),
        ("REDIS_URL", &redis_url),
        ("TEST_HS_SECRET", HS_SECRET),
        ("GARDIEN_INTERNAL_SECRET", INTERNAL_SECRET),
    ];
    let gateway = GatewayProcess::start_binary(&binary, &policy, &env, dir).await;

    // Twenty requests to an upstream that refuses connections: twenty 502s, one report.
    let token = hs_with_secret(
        Algorithm::HS256,
        HS_SECRET.as_bytes(),
        None,
        &claims("https://hs.test", "gardien-test", "user-1", 300),
    );
    let mut request_ids = Vec::new();
    for _ in 0..20 {
        let response = client()
            .get(gateway.url(&format!("/api/orders?token={QUERY_SECRET}")))
            .header("authorization", format!("Bearer {token}"))
            .header("cookie", format!("session={COOKIE_SECRET}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 502);
        request_ids.push(header(response.headers(), "x-request-id").expect("a request id"));
    }
    let unreachable = sentry
        .wait_event(ARRIVAL, kind_is("upstream_unreachable"))
        .await
        .unwrap_or_else(|| panic!("no upstream_unreachable event:\n{}", gateway.log()));

    // Tags: environment, release (the build info's commit), route, upstream, request id, trace.
    let metrics = gateway.metrics().await;
    let commit = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gardien_build_info{commit=\""))
        .and_then(|rest| rest.split('"').next())
        .expect("gardien_build_info's commit");
    assert_eq!(unreachable["environment"], "dev");
    assert_eq!(
        unreachable["release"],
        format!("gardien@{}+{commit}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(tag(&unreachable, "route"), Some("api"));
    assert_eq!(tag(&unreachable, "upstream"), Some("api"));
    assert_eq!(tag(&unreachable, "upstream_error"), Some("connect_refused"));
    assert_eq!(tag(&unreachable, "status"), Some("502"));
    // `error` is Sentry's default level: the SDK leaves it out.
    assert_eq!(unreachable["level"].as_str().unwrap_or("error"), "error");
    assert_eq!(
        tag(&unreachable, "request_id"),
        Some(request_ids[0].as_str()),
        "the first failure is the one reported"
    );
    let trace_id = tag(&unreachable, "trace_id").expect("a trace id tag");
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{trace_id}"
    );
    assert_eq!(unreachable["contexts"]["trace"]["trace_id"], trace_id);
    assert_eq!(
        unreachable["fingerprint"],
        serde_json::json!(["upstream_unreachable", "api/connect_refused"])
    );

    // The key set that cannot be fetched, and Redis that refuses: one report each.
    let jwks_event = sentry
        .wait_event(ARRIVAL, kind_is("jwks_fetch_failed"))
        .await
        .unwrap_or_else(|| panic!("no jwks_fetch_failed event:\n{}", gateway.log()));
    assert_eq!(tag(&jwks_event, "issuer"), Some("https://rs.test"));
    let fallback = sentry
        .wait_event(ARRIVAL, kind_is("rate_limit_fallback"))
        .await
        .unwrap_or_else(|| panic!("no rate_limit_fallback event:\n{}", gateway.log()));
    assert_eq!(fallback["level"], "warning");

    // A reload refused: the last good policy stays, and one report says why.
    std::fs::write(
        gateway.policy_path(),
        POLICY.replace("rate: 1000/s", "rate: often"),
    )
    .expect("break the policy");
    let refused = sentry
        .wait_event(ARRIVAL, kind_is("policy_reload_refused"))
        .await
        .unwrap_or_else(|| panic!("no policy_reload_refused event:\n{}", gateway.log()));
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate_limits.rules[0].rate")),
        "{refused}"
    );

    // Grouped and rate-limited: twenty failures, one event of that kind and upstream.
    let events = sentry.events();
    let count = |kind: &str| {
        events
            .iter()
            .filter(|e| tag(e, "kind") == Some(kind))
            .count()
    };
    assert_eq!(count("upstream_unreachable"), 1, "{events:#?}");
    assert_eq!(count("jwks_fetch_failed"), 1, "{events:#?}");

    // Nothing secret left the process: not the token, the cookie, the query string, the
    // identity or issuer secret, the Redis password, the DSN's key in a payload.
    let raw = String::from_utf8_lossy(&sentry.raw()).into_owned();
    for secret in [
        token.as_str(),
        COOKIE_SECRET,
        QUERY_SECRET,
        "token=",
        HS_SECRET,
        INTERNAL_SECRET,
        "redis-password-0123456789",
        "x-gardien-identity",
    ] {
        assert!(!raw.contains(secret), "{secret} was sent to Sentry:\n{raw}");
    }
    for event in &events {
        assert!(event.get("request").is_none(), "{event}");
        assert!(event.get("user").is_none(), "{event}");
        assert!(
            event["breadcrumbs"]["values"]
                .as_array()
                .is_none_or(|b| b.is_empty()),
            "{event}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_test_sends_an_event_and_a_panic_from_the_release_build() {
    let binary = release_binary("gardien", GATEWAY_SOURCES);
    let sentry = FakeSentry::start(KEY, PROJECT).await;
    let mut command = std::process::Command::new(&binary);
    command
        .args(["report-test", "--panic", "--policy"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/dev.yaml"))
        .env("SENTRY_DSN", sentry.dsn());
    let output = run(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains(KEY), "the DSN's key was logged:\n{stderr}");
    let panic = sentry
        .wait_panic(ARRIVAL, "a deliberate panic")
        .await
        .unwrap_or_else(|| panic!("no panic event: {:#?}", sentry.events()));
    assert_eq!(panic["environment"], "dev");
    assert!(
        panic["release"]
            .as_str()
            .is_some_and(|r| r.starts_with("gardien@")),
        "{panic}"
    );
    let test_event = sentry
        .wait_event(ARRIVAL, kind_is("report_test"))
        .await
        .expect("the test event");
    assert_eq!(test_event["level"], "warning");
}

#[tokio::test]
async fn a_dsn_that_does_not_parse_refuses_the_start_without_printing_it() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gardien"));
    command
        .args(["check", "--policy"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/dev.yaml"))
        .env("SENTRY_DSN", "sentry-key-not-a-dsn-0123456789");
    let output = run(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("SENTRY_DSN is not a valid Sentry DSN"),
        "{stderr}"
    );
    assert!(!stderr.contains("sentry-key-not-a-dsn"), "{stderr}");
}
