//! Never losing a notification, with real `gardien-backend` processes: killed (`SIGKILL`)
//! in the middle of a batch and started again, every queued notification is delivered; on
//! PostgreSQL two replicas' workers share the outbox without delivering any row twice; and a
//! provider's accepts never outnumber the attempt records (the at-least-once bound of
//! docs/DELIVERY.md). No secret value appears in anything the processes printed.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::delivery::{email_template, Fakes, SENDGRID_KEY};
use support::process::{signed, BackendProcess};
use support::{Engine, TestDb};

const NOTIFICATIONS: usize = 40;

fn settings(db: &TestDb, fakes: &Fakes, workers: &str) -> Vec<(String, String)> {
    let mut env = fakes.process_env();
    for (name, value) in [
        ("DATABASE_URL", db.url.as_str()),
        ("NOTIFY_MODE", "live"),
        ("NOTIFY_WORKERS", workers),
        ("NOTIFY_BATCH", "8"),
        ("NOTIFY_CONCURRENCY", "4"),
        ("NOTIFY_POLL_INTERVAL", "100ms"),
        ("NOTIFY_LEASE", "3s"),
        ("NOTIFY_PROVIDER_TIMEOUT", "2s"),
        ("NOTIFY_RETRY_BASE", "100ms"),
        ("NOTIFY_RETRY_MAX", "500ms"),
    ] {
        env.push((name.to_owned(), value.to_owned()));
    }
    env
}

async fn create_template(client: &reqwest::Client, backend: &BackendProcess) {
    let answer = signed(
        client,
        Method::POST,
        &backend.url("/api/notifications/templates"),
        "root",
        "admin",
    )
    .json(&email_template("welcome", "account"))
    .send()
    .await
    .expect("create template");
    assert_eq!(
        answer.status(),
        201,
        "{}",
        answer.text().await.unwrap_or_default()
    );
}

/// Sends `count` notifications, spread over `backends`; their ids.
async fn send_many(
    client: &reqwest::Client,
    backends: &[&BackendProcess],
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let backend = backends[i % backends.len()];
        let answer = signed(
            client,
            Method::POST,
            &backend.url("/api/notifications"),
            "svc-api",
            "internal",
        )
        .json(
            &json!({"user_id": format!("user-{i}"), "template_key": "welcome",
                          "variables": {"name": format!("User {i}")},
                          "to": {"email": format!("user-{i}@example.com")}}),
        )
        .send()
        .await
        .expect("send");
        assert_eq!(answer.status(), 202);
        let body: serde_json::Value = answer.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    ids
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&db.db.pool)
        .await
        .expect("count")
}

/// Waits until every outbox row is `sent`.
async fn all_sent(db: &TestDb, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let pending = count(
            db,
            "SELECT COUNT(*) FROM notification_deliveries WHERE status <> 'sent'",
        )
        .await;
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} deliveries still not sent after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the fake received per notification, checked against the attempt records: every
/// notification delivered; more than once only where an attempt was abandoned by a killed
/// worker, and never more often than attempts were recorded. Returns the duplicates.
async fn check_deliveries(db: &TestDb, fakes: &Fakes, ids: &[String]) -> usize {
    let mut received: HashMap<String, usize> = HashMap::new();
    for delivery in fakes.sendgrid.deliveries() {
        let id = delivery.custom_args["notification_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *received.entry(id).or_default() += 1;
    }
    let mut duplicates = 0;
    for id in ids {
        let got = received.get(id).copied().unwrap_or(0);
        assert!(got >= 1, "notification {id} was never delivered");
        let attempts: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM notification_attempts a JOIN notification_deliveries d ON d.id = a.delivery_id \
             WHERE d.notification_id = $1",
        )
        .bind(id)
        .fetch_one(&db.db.pool)
        .await
        .expect("attempts");
        let abandoned: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM notification_attempts a JOIN notification_deliveries d ON d.id = a.delivery_id \
             WHERE d.notification_id = $1 AND a.outcome = 'abandoned'",
        )
        .bind(id)
        .fetch_one(&db.db.pool)
        .await
        .expect("abandoned");
        assert!(
            i64::try_from(got).expect("count") <= attempts,
            "{id}: {got} accepts for {attempts} attempt records"
        );
        if got > 1 {
            assert!(
                abandoned >= 1,
                "{id} delivered {got} times without an abandoned attempt"
            );
            assert!(i64::try_from(got).expect("count") <= abandoned + 1);
            duplicates += got - 1;
        }
    }
    duplicates
}

fn assert_no_secret(backend: &BackendProcess, fakes: &Fakes) {
    let logs = backend.logs();
    for secret in [
        SENDGRID_KEY,
        fakes.twilio_token.as_str(),
        fakes.secondary_token.as_str(),
    ] {
        assert!(
            !logs.contains(secret),
            "a secret value is in the logs:\n{logs}"
        );
    }
}

/// Kills one backend in the middle of a batch (its rows leased, attempts in flight),
/// starts it again, and checks that every notification is delivered. `companion`: a
/// second replica that keeps running meanwhile (PostgreSQL).
async fn killed_mid_batch(engine: Engine, companion: bool) {
    let db = TestDb::new(engine).await;
    let fakes = Fakes::start().await;
    // Slow enough that a batch is in flight when the kill comes.
    fakes.sendgrid.delay(Duration::from_millis(150));
    let client = reqwest::Client::new();
    let env = settings(&db, &fakes, "1");
    let mut victim = BackendProcess::start(&env).await;
    let other = if companion {
        Some(BackendProcess::start(&env).await)
    } else {
        None
    };
    create_template(&client, &victim).await;
    let ids = send_many(&client, &[&victim], NOTIFICATIONS).await;
    // Kill once some are delivered and the rest are still in the outbox.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fakes.sendgrid.deliveries().len() < 6 {
        assert!(Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill();
    let leased = count(
        &db,
        "SELECT COUNT(*) FROM notification_deliveries WHERE status = 'sending'",
    )
    .await;
    let delivered_at_kill = fakes.sendgrid.deliveries().len();
    assert!(
        delivered_at_kill < NOTIFICATIONS,
        "the kill came after everything was delivered ({delivered_at_kill})"
    );
    assert_no_secret(&victim, &fakes);
    let restarted = BackendProcess::start(&env).await;
    all_sent(&db, Duration::from_secs(40)).await;
    let duplicates = check_deliveries(&db, &fakes, &ids).await;
    println!(
        "{engine:?}: killed with {delivered_at_kill} of {NOTIFICATIONS} delivered and {leased} rows leased; \
         all delivered after the restart, {duplicates} duplicate(s) (each accounted for by an abandoned attempt)"
    );
    assert_no_secret(&restarted, &fakes);
    if let Some(other) = &other {
        assert_no_secret(other, &fakes);
    }
    drop(restarted);
    drop(other);
    db.drop_schema().await;
}

#[tokio::test]
async fn killed_mid_batch_loses_nothing_sqlite() {
    killed_mid_batch(Engine::Sqlite, false).await;
}

#[tokio::test]
async fn killed_mid_batch_loses_nothing_postgres_with_two_replicas() {
    killed_mid_batch(Engine::Postgres, true).await;
}

/// Two replicas, two workers each, one PostgreSQL outbox: every row delivered exactly
/// once, and both replicas did part of the work.
#[tokio::test]
async fn two_replicas_never_deliver_a_row_twice() {
    let db = TestDb::new(Engine::Postgres).await;
    let fakes = Fakes::start().await;
    fakes.sendgrid.delay(Duration::from_millis(10));
    let client = reqwest::Client::new();
    let env = settings(&db, &fakes, "2");
    let a = BackendProcess::start(&env).await;
    let b = BackendProcess::start(&env).await;
    create_template(&client, &a).await;
    let ids = send_many(&client, &[&a, &b], 80).await;
    all_sent(&db, Duration::from_secs(40)).await;
    let deliveries = fakes.sendgrid.deliveries();
    assert_eq!(deliveries.len(), ids.len(), "one delivery per notification");
    let mut received: HashMap<String, usize> = HashMap::new();
    for delivery in &deliveries {
        let id = delivery.custom_args["notification_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *received.entry(id).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(received.get(id), Some(&1), "{id}");
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM notification_attempts WHERE outcome <> 'accepted'"
        )
        .await,
        0
    );
    let workers: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT worker FROM notification_attempts")
            .fetch_all(&db.db.pool)
            .await
            .expect("workers");
    let processes: std::collections::BTreeSet<String> = workers
        .iter()
        .map(|w| {
            w.rsplit_once('-')
                .map(|(process, _)| process)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(processes.len(), 2, "both replicas delivered: {workers:?}");
    assert_no_secret(&a, &fakes);
    assert_no_secret(&b, &fakes);
    drop((a, b));
    db.drop_schema().await;
}
