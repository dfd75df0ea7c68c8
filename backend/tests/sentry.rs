//! Error reports from the release build of `gardien-backend` to a local Sentry ingestion
//! endpoint that speaks the envelope protocol (`gardien_fakes::sentry`): a delivery that ends
//! `providers_exhausted` and an internal error, each tagged and scrubbed, on a real
//! PostgreSQL. What the server received is parsed, and the raw bytes are searched for the
//! recipient, the message, the provider keys and the identity secret.
//!
//! Needs `target/release/gardien-backend` (`make test` builds it).

mod support;

use std::time::Duration;

use gardien_fakes::sentry::FakeSentry;
use reqwest::Method;
use serde_json::{json, Value};
use support::delivery::{email_template, Fakes, SENDGRID_KEY};
use support::process::{release_binary, signed, BackendProcess};
use support::{Engine, TestDb, SECRET};

const KEY: &str = "0badc0de0badc0de0badc0de0badc0de";
const RECIPIENT: &str = "ada.lovelace@example.com";
const NAME_IN_BODY: &str = "Ada-body-marker-7731";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ARRIVAL: Duration = Duration::from_secs(20);

fn tag<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event["tags"][name].as_str()
}

fn kind_is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |event| tag(event, "kind") == Some(kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_build_reports_exhausted_deliveries_and_internal_errors_scrubbed() {
    let binary = release_binary();
    let sentry = FakeSentry::start(KEY, "7").await;
    let db = TestDb::new(Engine::Postgres).await;
    let fakes = Fakes::start().await;
    fakes.sendgrid.go_down().await;
    fakes.smtp.go_down().await;
    let mut env = fakes.process_env();
    for (name, value) in [
        ("DATABASE_URL", db.url.as_str()),
        ("SENTRY_DSN", sentry.dsn().as_str()),
        ("NOTIFY_MODE", "live"),
        ("NOTIFY_POLL_INTERVAL", "100ms"),
        ("NOTIFY_RETRY_BASE", "100ms"),
        ("NOTIFY_RETRY_MAX", "300ms"),
        ("NOTIFY_PROVIDER_TIMEOUT", "2s"),
    ] {
        env.push((name.to_owned(), value.to_owned()));
    }
    let backend = BackendProcess::start_binary(&binary, &env).await;
    let client = reqwest::Client::new();

    // Every email provider down: the notification ends `providers_exhausted`, reported once.
    let answer = signed(
        &client,
        Method::POST,
        &backend.url("/api/notifications/templates"),
        "root",
        "admin",
    )
    .json(&email_template("welcome", "account"))
    .send()
    .await
    .expect("create the template");
    assert_eq!(answer.status(), 201);
    let answer = signed(
        &client,
        Method::POST,
        &backend.url("/api/notifications"),
        "svc-api",
        "internal",
    )
    .json(&json!({"user_id": "ada", "template_key": "welcome",
                  "variables": {"name": NAME_IN_BODY}, "to": {"email": RECIPIENT}}))
    .send()
    .await
    .expect("send");
    assert_eq!(answer.status(), 202);
    let notification: Value = answer.json().await.expect("the notification");
    let notification_id = notification["id"].as_str().expect("an id").to_owned();
    let exhausted = sentry
        .wait_event(ARRIVAL, kind_is("providers_exhausted"))
        .await
        .unwrap_or_else(|| panic!("no providers_exhausted event:\n{}", backend.logs()));
    assert_eq!(tag(&exhausted, "channel"), Some("email"));
    assert_eq!(
        tag(&exhausted, "notification_id"),
        Some(notification_id.as_str())
    );
    assert_eq!(exhausted["environment"], "dev");
    let release = exhausted["release"].as_str().expect("a release");
    assert!(
        release.starts_with(&format!("gardien@{}+", env!("CARGO_PKG_VERSION"))),
        "{release}"
    );

    // A failure of ours (a table gone): `500 internal_error` to the client, one report with
    // the request's id, route and the trace it continued from the gateway.
    sqlx::query("DROP TABLE notification_template_versions CASCADE")
        .execute(&db.db.pool)
        .await
        .expect("drop a table");
    let mut request_ids = Vec::new();
    for _ in 0..5 {
        let answer = signed(
            &client,
            Method::GET,
            &backend.url("/api/notifications/templates/welcome"),
            "root",
            "admin",
        )
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("get the template");
        assert_eq!(answer.status(), 500);
        let id = answer
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("a request id")
            .to_owned();
        request_ids.push(id);
    }
    let internal = sentry
        .wait_event(ARRIVAL, kind_is("internal_error"))
        .await
        .unwrap_or_else(|| panic!("no internal_error event:\n{}", backend.logs()));
    assert_eq!(tag(&internal, "request_id"), Some(request_ids[0].as_str()));
    assert_eq!(tag(&internal, "trace_id"), Some(TRACE_ID));
    assert_eq!(internal["contexts"]["trace"]["trace_id"], TRACE_ID);
    assert_eq!(
        tag(&internal, "route"),
        Some("/api/notifications/templates/{key}")
    );
    assert_eq!(
        internal["release"], release,
        "the same release on every event"
    );

    // Grouped and rate-limited: five failures, one event.
    let events = sentry.events();
    let internal_count = events
        .iter()
        .filter(|e| tag(e, "kind") == Some("internal_error"))
        .count();
    assert_eq!(internal_count, 1, "{events:#?}");

    // Nothing secret or personal left the process.
    let raw = String::from_utf8_lossy(&sentry.raw()).into_owned();
    for secret in [
        RECIPIENT,
        NAME_IN_BODY,
        SENDGRID_KEY,
        fakes.twilio_token.as_str(),
        SECRET,
        db.url.as_str(),
    ] {
        assert!(!raw.contains(secret), "{secret} was sent to Sentry:\n{raw}");
    }
    assert!(!backend.logs().contains(KEY), "the DSN's key was logged");
    drop(backend);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_test_sends_an_event_and_a_panic_from_the_release_build() {
    let binary = release_binary();
    let sentry = FakeSentry::start(KEY, "7").await;
    let mut command = std::process::Command::new(&binary);
    command
        .arg("report-test")
        .arg("--panic")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GARDIEN_ENVIRONMENT", "dev")
        .env("SECRETS_DIR", "/nonexistent")
        .env("SENTRY_DSN", sentry.dsn());
    let run = tokio::task::spawn_blocking(move || command.output());
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("report-test ended within 60 s")
        .expect("join")
        .expect("report-test ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains(KEY), "the DSN's key was logged:\n{stderr}");
    let panic = sentry
        .wait_panic(ARRIVAL, "a deliberate panic")
        .await
        .unwrap_or_else(|| panic!("no panic event: {:#?}", sentry.events()));
    assert_eq!(panic["environment"], "dev");
    assert!(
        sentry
            .wait_event(ARRIVAL, kind_is("report_test"))
            .await
            .is_some(),
        "no test event"
    );
}
