//! The delivery benchmark: notifications accepted per second, and the time from `POST
//! /api/notifications` to the provider's receipt, on SQLite and PostgreSQL.
//!
//! Run with `make bench-delivery` (or `cargo bench -p gardien-backend --bench delivery`
//! after `cargo build --release -p gardien-backend`). On 127.0.0.1 it starts the fake
//! SendGrid (in this process) and the release `gardien-backend` (a child process, `live`
//! mode, SendGrid's base URL pointed at the fake), then for each database:
//!
//! 1. accepted per second: 16 clients post notifications back to back for 10 s (closed
//!    loop); the workers deliver meanwhile, and the time until the last one reaches the fake
//!    gives the delivery rate;
//! 2. latency: 200 notifications a second for 10 s (open loop); for each, the time from the
//!    start of its `POST` to the moment the fake received its Mail Send request (matched by
//!    `custom_args.notification_id`), p50 and p99.
//!
//! The backend runs on CPU 1 and this process (clients and fake) on CPU 0 (`taskset`), as
//! in the gateway's load harness. Every load is bounded in time. The table replaces the
//! part of `docs/BENCHMARKS.md` between `<!-- delivery:begin -->` and `<!-- delivery:end -->`.

#[path = "../tests/support/ready.rs"]
mod ready;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gardien_fakes::sendgrid::FakeSendGrid;
use parking_lot::Mutex;
use serde_json::json;

const SECRET: &str = "delivery-bench-internal-secret-0123456789";
const KEY: &str = "SG.bench.0123456789abcdefghijklmnopqrstuvwxyz";
const CLOSED_CLIENTS: usize = 16;
const CLOSED_RUN: Duration = Duration::from_secs(10);
const PACED_RATE: u32 = 200;
const PACED_RUN: Duration = Duration::from_secs(10);
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

struct Backend {
    child: Child,
    addr: String,
    /// Holds the ready file.
    _dir: tempfile::TempDir,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_backend(database_url: &str, sendgrid: &str, workers: &str) -> Backend {
    let exe = std::env::current_exe().expect("bench path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|release| release.join("gardien-backend"))
        .expect("target/release");
    assert!(
        binary.exists(),
        "{} is missing: `make bench-delivery` builds it",
        binary.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let log = dir.path().join("backend.log");
    let mut child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(&binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BACKEND_LISTEN", "127.0.0.1:0")
        .env("BACKEND_READY_FILE", &ready)
        .env("DATABASE_URL", database_url)
        .env("DATABASE_MAX_CONNECTIONS", "16")
        .env("GARDIEN_ENVIRONMENT", "dev")
        .env("GARDIEN_INTERNAL_SECRET", SECRET)
        .env("NOTIFY_MODE", "live")
        .env("NOTIFY_WORKERS", workers)
        .env("NOTIFY_CONCURRENCY", "16")
        .env("NOTIFY_BATCH", "64")
        .env("EMAIL_FROM", "bench <bench@example.com>")
        .env("SENDGRID_API_BASE_URL", sendgrid)
        .env("SENDGRID_API_KEY", KEY)
        .env("GARDIEN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start gardien-backend");
    match ready::wait_for_address(&ready, &mut child, Duration::from_secs(30)) {
        Ok(addr) => Backend {
            child,
            addr: addr.to_string(),
            _dir: dir,
        },
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gardien-backend did not start: {why}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
}

fn signed(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    path: &str,
    roles: &str,
) -> reqwest::RequestBuilder {
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    let signature = gardien_identity::sign(
        SECRET.as_bytes(),
        method.as_str(),
        path,
        now,
        &[
            ("x-user-id", b"bench-service"),
            ("x-user-roles", roles.as_bytes()),
        ],
    );
    client
        .request(method, url)
        .header("x-user-id", "bench-service")
        .header("x-user-roles", roles)
        .header(gardien_identity::HEADER, signature)
}

/// Posts one notification; its id and when the `POST` started.
async fn post(client: &reqwest::Client, backend: &str, n: usize) -> Option<(String, Instant)> {
    let started = Instant::now();
    let answer = signed(
        client,
        reqwest::Method::POST,
        &format!("http://{backend}/api/notifications"),
        "/api/notifications",
        "internal",
    )
    .json(
        &json!({"user_id": format!("user-{n}"), "template_key": "welcome",
                  "variables": {"name": format!("User {n}")},
                  "to": {"email": format!("user-{n}@example.com")}}),
    )
    .send()
    .await
    .ok()?;
    if answer.status() != 202 {
        return None;
    }
    let body: serde_json::Value = answer.json().await.ok()?;
    Some((body["id"].as_str()?.to_owned(), started))
}

/// When the fake received each notification (first receipt).
fn receipts(fake: &FakeSendGrid) -> HashMap<String, Instant> {
    let mut seen = HashMap::new();
    for request in fake.requests() {
        if request.status != 202 {
            continue;
        }
        let Some(body) = request.json() else { continue };
        if let Some(id) = body["personalizations"][0]["custom_args"]["notification_id"].as_str() {
            seen.entry(id.to_owned()).or_insert(request.received_at);
        }
    }
    seen
}

async fn wait_delivered(fake: &FakeSendGrid, ids: usize) -> Option<Instant> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < deadline {
        let seen = receipts(fake);
        if seen.len() >= ids {
            return seen.values().max().copied();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[derive(Debug, Default, Clone, Copy)]
struct Row {
    accepted_per_sec: f64,
    delivered_per_sec: f64,
    paced_sent: usize,
    paced_delivered: usize,
    p50_ms: f64,
    p99_ms: f64,
}

async fn measure(fake: &FakeSendGrid, backend: &Backend) -> Row {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let template = signed(
        &client,
        reqwest::Method::POST,
        &format!("http://{}/api/notifications/templates", backend.addr),
        "/api/notifications/templates",
        "admin",
    )
    .json(
        &json!({"key": "welcome", "category": "account", "channel": "email", "default_locale": "en",
                  "variables": ["name"],
                  "locales": {"en": {"email": {"subject": "Welcome {{ name }}",
                                               "html": "<p>Hello {{ name }}, welcome aboard.</p>",
                                               "text": "Hello {{ name }}, welcome aboard."}}}}),
    )
    .send()
    .await
    .expect("template");
    assert_eq!(
        template.status(),
        201,
        "template: {}",
        template.text().await.unwrap_or_default()
    );

    // 1. Closed loop: accepted per second, and how fast the workers drain it.
    fake.clear();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLOSED_CLIENTS {
        let (client, counter, addr) = (client.clone(), Arc::clone(&counter), backend.addr.clone());
        clients.spawn(async move {
            let mut accepted = 0usize;
            while started.elapsed() < CLOSED_RUN {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if post(&client, &addr, n).await.is_some() {
                    accepted += 1;
                }
            }
            accepted
        });
    }
    let mut accepted = 0;
    while let Some(Ok(n)) = clients.join_next().await {
        accepted += n;
    }
    let accept_time = started.elapsed().as_secs_f64();
    let last = wait_delivered(fake, accepted).await;
    let delivered_per_sec = last.map_or(0.0, |t| accepted as f64 / (t - started).as_secs_f64());

    // 2. Open loop: latency from POST to the provider's receipt.
    fake.clear();
    let sent: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / PACED_RATE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = usize::try_from(u64::from(PACED_RATE) * PACED_RUN.as_secs()).unwrap_or(0);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let (client, sent, addr) = (client.clone(), Arc::clone(&sent), backend.addr.clone());
        tasks.spawn(async move {
            if let Some(posted) = post(&client, &addr, 1_000_000 + n).await {
                sent.lock().push(posted);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let posted = sent.lock().clone();
    let _ = wait_delivered(fake, posted.len()).await;
    let seen = receipts(fake);
    let mut latencies: Vec<Duration> = posted
        .iter()
        .filter_map(|(id, at)| seen.get(id).map(|got| got.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Row {
        accepted_per_sec: accepted as f64 / accept_time,
        delivered_per_sec,
        paced_sent: posted.len(),
        paced_delivered: latencies.len(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
    }
}

fn psql(sql: &str) -> bool {
    Command::new("psql")
        .args(["-q", "postgresql://postgres@127.0.0.1:5432/test", "-c", sql])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("delivery benchmark: run `make bench-delivery`");
        return;
    }
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fake = runtime.block_on(FakeSendGrid::start());
    fake.accept_key(KEY);
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = format!("gardien_delivery_bench_{}", std::process::id());
    let mut engines = vec![(
        "SQLite (1 worker)",
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        ),
        "1",
    )];
    if psql(&format!("CREATE SCHEMA {schema}")) {
        engines.push((
            "PostgreSQL (2 workers)",
            format!("postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}"),
            "2",
        ));
    }
    let mut rows = Vec::new();
    for (engine, url, workers) in &engines {
        println!("delivery benchmark: {engine}");
        let backend = start_backend(url, &fake.base_url(), workers);
        let row = runtime.block_on(measure(&fake, &backend));
        println!("  {row:?}");
        rows.push((*engine, row));
    }
    psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));

    let mut table = String::new();
    let _ = writeln!(
        table,
        "Measured {} on 2 vCPUs, loopback, release build, `NOTIFY_MODE=live` against the fake SendGrid (answering at once). The backend runs on CPU 1; the clients and the fake on CPU 0.\n",
        today()
    );
    let _ = writeln!(
        table,
        "| database | accepted/s ({CLOSED_CLIENTS} clients, {}s) | delivered/s (same run) | POST → provider p50 | p99 ({PACED_RATE}/s for {}s) | delivered of sent |",
        CLOSED_RUN.as_secs(),
        PACED_RUN.as_secs()
    );
    let _ = writeln!(table, "| --- | --- | --- | --- | --- | --- |");
    for (engine, row) in &rows {
        let _ = writeln!(
            table,
            "| {engine} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {} of {} |",
            row.accepted_per_sec,
            row.delivered_per_sec,
            row.p50_ms,
            row.p99_ms,
            row.paced_delivered,
            row.paced_sent
        );
    }
    if engines.len() == 1 {
        let _ = writeln!(
            table,
            "\n(PostgreSQL at 127.0.0.1:5432 was not reachable: its row is missing.)"
        );
    }
    println!("\n{table}");
    write_results(&table);
}

fn today() -> String {
    jiff::Zoned::now().date().to_string()
}

/// Replaces the table between the markers in docs/BENCHMARKS.md.
fn write_results(table: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/BENCHMARKS.md");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let (begin, end) = ("<!-- delivery:begin -->", "<!-- delivery:end -->");
    let (Some(start), Some(stop)) = (text.find(begin), text.find(end)) else {
        println!("(docs/BENCHMARKS.md has no delivery markers; table not written)");
        return;
    };
    let updated = format!("{}{begin}\n{table}{}", &text[..start], &text[stop..]);
    if std::fs::write(&path, updated).is_ok() {
        println!("written to docs/BENCHMARKS.md");
    }
}
