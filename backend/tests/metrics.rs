//! The operator's series: the outbox's due rows and their age per channel, whether the
//! database answers, the build and the process — on SQLite and PostgreSQL.

mod support;

use std::sync::Arc;

use gardien_backend::db::now_micros;
use gardien_backend::metrics::{Metrics, COMMIT, VERSION};
use prometheus::Encoder;
use support::{Engine, TestDb};

fn render(metrics: &Metrics) -> String {
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&metrics.gather(), &mut out)
        .expect("encode");
    String::from_utf8(out).expect("utf-8")
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

async fn insert(
    db: &TestDb,
    id: &str,
    channel: &str,
    status: &str,
    not_before: i64,
    lease: Option<i64>,
) {
    sqlx::query(
        "INSERT INTO notification_deliveries (id, notification_id, channel, status, not_before, \
           provider_index, provider_tries, attempts, sandbox, created_at, updated_at, lease_until) \
         VALUES ($1, 'n', $2, $3, $4, 0, 0, 0, 0, $4, $4, $5)",
    )
    .bind(id)
    .bind(channel)
    .bind(status)
    .bind(not_before)
    .bind(lease)
    .execute(&db.db.pool)
    .await
    .expect("insert");
}

async fn outbox_is_counted_per_channel(engine: Engine) {
    let db = TestDb::new(engine).await;
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    assert_eq!(
        metrics.outbox_backlog()["counted_seconds_ago"],
        serde_json::Value::Null,
        "not counted yet"
    );
    metrics.refresh_outbox(&db.db).await;
    let text = render(&metrics);
    assert_eq!(
        value(&text, r#"gardien_backend_outbox_due{channel="email"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "gardien_backend_database_up"),
        Some(1.0),
        "{text}"
    );

    let now = now_micros();
    let second = 1_000_000;
    insert(&db, "a", "email", "queued", now - 30 * second, None).await;
    insert(&db, "b", "email", "queued", now - 5 * second, None).await;
    // A lease that ran out 40 s ago: due again, and the oldest.
    insert(
        &db,
        "c",
        "sms",
        "sending",
        now - 100 * second,
        Some(now - 40 * second),
    )
    .await;
    // Not due: later, leased, or done.
    insert(&db, "d", "sms", "queued", now + 60 * second, None).await;
    insert(
        &db,
        "e",
        "email",
        "sending",
        now - 90 * second,
        Some(now + 60 * second),
    )
    .await;
    insert(&db, "f", "email", "sent", now - 500 * second, None).await;
    metrics.refresh_outbox(&db.db).await;
    let text = render(&metrics);
    assert_eq!(
        value(&text, r#"gardien_backend_outbox_due{channel="email"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"gardien_backend_outbox_due{channel="sms"}"#),
        Some(1.0),
        "{text}"
    );
    let email_age = value(
        &text,
        r#"gardien_backend_outbox_oldest_due_seconds{channel="email"}"#,
    )
    .expect("email age");
    assert!((30.0..60.0).contains(&email_age), "{text}");
    let sms_age = value(
        &text,
        r#"gardien_backend_outbox_oldest_due_seconds{channel="sms"}"#,
    )
    .expect("sms age");
    assert!((40.0..70.0).contains(&sms_age), "{text}");
    // The same count, as `/readyz` shows it.
    let backlog = metrics.outbox_backlog();
    assert_eq!(backlog["channels"]["email"]["due"], 2, "{backlog}");
    assert_eq!(backlog["channels"]["sms"]["due"], 1, "{backlog}");
    let shown_age = backlog["channels"]["email"]["oldest_due_seconds"]
        .as_f64()
        .expect("an age");
    assert!((shown_age - email_age).abs() < 1e-9, "{backlog}");
    let counted = backlog["counted_seconds_ago"].as_f64().expect("counted");
    assert!((0.0..30.0).contains(&counted), "{backlog}");

    // Delivered: back to zero.
    sqlx::query("UPDATE notification_deliveries SET status = 'sent'")
        .execute(&db.db.pool)
        .await
        .expect("update");
    metrics.refresh_outbox(&db.db).await;
    let text = render(&metrics);
    assert_eq!(
        value(&text, r#"gardien_backend_outbox_due{channel="email"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"gardien_backend_outbox_oldest_due_seconds{channel="sms"}"#
        ),
        Some(0.0),
        "{text}"
    );

    // The database gone: down, and the counts kept.
    db.db.pool.close().await;
    metrics.refresh_outbox(&db.db).await;
    let text = render(&metrics);
    assert_eq!(
        value(&text, "gardien_backend_database_up"),
        Some(0.0),
        "{text}"
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn outbox_is_counted_per_channel_on_sqlite() {
    outbox_is_counted_per_channel(Engine::Sqlite).await;
}

#[tokio::test]
async fn outbox_is_counted_per_channel_on_postgres() {
    outbox_is_counted_per_channel(Engine::Postgres).await;
}

#[test]
fn build_and_process_series_are_exported() {
    let metrics = Metrics::new().expect("metrics");
    let text = render(&metrics);
    assert!(
        text.contains(&format!(
            r#"gardien_backend_build_info{{commit="{COMMIT}",version="{VERSION}"}} 1"#
        )),
        "{text}"
    );
    // A commit of this repository (built inside git: never `unknown`). Not compared with
    // HEAD: a target directory shared by several worktrees may hold another one's build.
    let in_git = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .is_ok_and(|out| out.status.success());
    if in_git {
        assert!(
            COMMIT.len() == 12 && COMMIT.bytes().all(|b| b.is_ascii_hexdigit()),
            "{COMMIT}"
        );
    }
    assert!(
        value(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0),
        "{text}"
    );
    assert!(
        value(&text, "process_open_fds").is_some_and(|v| v > 0.0),
        "{text}"
    );
    assert!(text.contains("process_cpu_seconds_total"), "{text}");
}
