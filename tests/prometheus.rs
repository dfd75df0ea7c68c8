//! The alerts and the dashboard, proven against a real Prometheus (Debian's
//! `/usr/bin/prometheus`): it scrapes a real gardien (admin `/metrics`, job `gardien`) and a
//! real gardien-backend (`/metrics`, job `gardien-backend`, the job names of
//! deploy/gke/podmonitoring.yaml) every second under traffic, with
//! deploy/prometheus/alerts.yaml loaded (its `for` and windows shortened by
//! `prometheus/rules.rs`, nothing else). Every panel query of deploy/grafana/gardien.json
//! must return at least one series; then the upstream `api` is stopped and
//! `GardienUpstreamDown` and `GardienHigh5xxRatio` must fire, and resolve once it is back.
//!
//! It fails when, for instance: a metric is renamed in the code or in a panel (that panel
//! returns no series); a panel query is not valid PromQL; an alert is renamed, does not load,
//! or its expression never fires on an outage (say `gardien_upstream_up == 2`) or never
//! resolves; a `for`/window is not one the rewrite can shorten; the gateway stops counting
//! 5xx or stops probing its upstream.
//!
//! `cargo build -p gardien-backend && cargo test --test prometheus` (`make test` installs
//! Prometheus and builds the backend); about a minute on a debug build.

mod support;

#[path = "prometheus/dashboard.rs"]
mod dashboard;
#[path = "prometheus/rules.rs"]
mod rules;
#[path = "prometheus/server.rs"]
mod server;
#[path = "prometheus/upstream.rs"]
mod upstream;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gardien_fakes::sendgrid::FakeSendGrid;
use gardien_fakes::smtp::FakeSmtp;
use serde_json::{json, Value};
use server::Prometheus;
use support::jwt::{claims, JwksServer, TestKey};
use support::processes::BackendProcess;
use support::{GatewayProcess, RecordingUpstream};
use upstream::StoppableUpstream;

const ISSUER: &str = "https://id.test";
const AUDIENCE: &str = "gardien-test";
const INTERNAL_SECRET: &str = "prometheus-test-internal-secret-0123456789";
const SENDGRID_KEY: &str = "SG.prometheus-test.0123456789abcdefghijklmnopqrstuvwxyz";

/// The two alerts an upstream outage must fire (names of deploy/prometheus/alerts.yaml).
const UPSTREAM_DOWN: &str = "GardienUpstreamDown";
const HIGH_5XX: &str = "GardienHigh5xxRatio";

const FIRE_WITHIN: Duration = Duration::from_secs(30);
/// The 5xx ratio resolves once its (shortened, 15 s) window holds no 5xx.
const RESOLVE_WITHIN: Duration = Duration::from_secs(45);

/// `api` is the upstream the test stops (probed every 200 ms); `slow` never stops and
/// serves the shedding (`max_in_flight: 2`) and the rate-limited route, so their 503/429
/// stay off the routes of `api`; `backend` is gardien-backend.
const POLICY: &str = r#"
environment: dev
listen: "${GARDIEN_LISTEN}"
admin_listen: "${GARDIEN_ADMIN_LISTEN}"
upstreams:
  api:
    url: "${API_UPSTREAM_URL}"
    connect_timeout: 500ms
    read_timeout: 2s
    health: { path: /healthz, interval: 200ms, timeout: 150ms, healthy_after: 1, unhealthy_after: 1 }
  slow: { url: "${SLOW_UPSTREAM_URL}", connect_timeout: 500ms, read_timeout: 3s }
  backend:
    url: "${BACKEND_UPSTREAM_URL}"
    connect_timeout: 1s
    read_timeout: 5s
    health: { path: /readyz, interval: 500ms, timeout: 400ms }
routes:
  - { name: templates, prefix: /api/notifications/templates, upstream: backend, roles: [admin] }
  - { name: notifications, prefix: /api/notifications, upstream: backend }
  - { name: reports, prefix: /api/reports, upstream: backend }
  - { name: slow, prefix: /slow, upstream: slow, auth: public }
  - { name: limited, prefix: /limited, upstream: slow, auth: public }
  - { name: me, prefix: /api/me, upstream: api }
  - { name: api, prefix: /api/, upstream: api, auth: public }
cors:
  origins: ["https://app.example.com"]
  methods: [GET, POST]
  headers: [Authorization, Content-Type]
jwt:
  issuers:
    - issuer: "https://id.test"
      audiences: [gardien-test]
      algorithms: [RS256]
      jwks_url: "${JWKS_URL}"
      required_claims: [sub]
  forward_claims: { sub: X-User-Id, email: X-User-Email, roles: X-User-Roles }
  roles_claim: roles
  identity_secret: GARDIEN_INTERNAL_SECRET
rate_limits:
  store: local
  rules:
    - { name: limited-ip, routes: [limited], key: ip, rate: 1/min, burst: 1 }
  adaptive: { max_in_flight: 2 }
server: { threads: 2, graceful_shutdown_timeout: 1s }
"#;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// What the traffic loop sends, every round: 2xx, a CORS refusal (actual and preflight), a
/// bad token, a valid one, a rate-limited route, the backend, an unmatched path.
#[derive(Clone)]
struct Traffic {
    client: reqwest::Client,
    base: String,
    token: String,
}

/// The statuses of one round, in the order sent (`0`: no answer).
async fn round(t: &Traffic) -> Vec<u16> {
    let url = |path: &str| format!("{}{path}", t.base);
    let c = &t.client;
    let requests = [
        c.get(url("/api/things")),
        c.get(url("/api/things"))
            .header("Origin", "https://evil.test"),
        c.request(reqwest::Method::OPTIONS, url("/api/things"))
            .header("Origin", "https://evil.test")
            .header("Access-Control-Request-Method", "GET"),
        c.get(url("/api/me"))
            .header("Authorization", "Bearer not.a.token"),
        c.get(url("/api/me")).header("Authorization", &t.token),
        c.get(url("/limited")),
        c.get(url("/api/reports")).header("Authorization", &t.token),
        c.get(url("/nowhere")),
    ];
    let mut statuses = Vec::with_capacity(requests.len());
    for request in requests {
        statuses.push(request.send().await.map_or(0, |r| r.status().as_u16()));
    }
    statuses
}

/// Rounds every 200 ms until `stop` (or a hard cap of three minutes).
fn keep_traffic(traffic: Traffic, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut rounds = 0;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            round(&traffic).await;
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        rounds
    })
}

/// Whether `alerts` holds `name` with `label="value"`, in `state` (`None`: any state).
fn has_alert(alerts: &[Value], name: &str, label: &str, value: &str, state: Option<&str>) -> bool {
    alerts.iter().any(|a| {
        a["labels"]["alertname"] == name
            && a["labels"][label] == value
            && state.is_none_or(|s| a["state"] == s)
    })
}

/// Polls `/api/v1/alerts` until `done` holds, within `limit`; how long it took.
async fn wait_alerts(
    prometheus: &Prometheus,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let alerts = prometheus.alerts().await;
        if done(&alerts) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}; /api/v1/alerts:\n{}",
            alerts
                .iter()
                .map(|a| format!(
                    "{} {} {}",
                    a["state"], a["labels"]["alertname"], a["labels"]
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn outage_alerts(alerts: &[Value], state: Option<&str>) -> (bool, bool) {
    (
        has_alert(alerts, UPSTREAM_DOWN, "upstream", "api", state),
        has_alert(alerts, HIGH_5XX, "route", "api", state),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_and_resolve_and_every_panel_has_series_in_a_real_prometheus() {
    server::require_binary();
    // The rules, shortened: checked before anything starts.
    let alerts: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/alerts.yaml")).expect("alerts.yaml");
    let short = rules::shortened(&alerts);
    rules::assert_only_durations_changed(&alerts, &short);
    let names = rules::alert_names(&alerts);
    for name in [UPSTREAM_DOWN, HIGH_5XX] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} is not in alerts.yaml"
        );
    }
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/gardien.json")).expect("gardien.json");
    let queries = dashboard::panel_queries(&dashboard);
    assert!(queries.len() >= 21, "{} panel queries", queries.len());

    // The stack: a stoppable `api`, a `slow` one, the JWKS, fake SendGrid and SMTP, the
    // backend, the gateway.
    let mut api = StoppableUpstream::start().await;
    let slow = RecordingUpstream::start().await;
    let key = TestKey::rsa_a("k1");
    let jwks = JwksServer::start(&[&key]).await;
    let sendgrid = FakeSendGrid::start().await;
    sendgrid.accept_key(SENDGRID_KEY);
    let smtp = FakeSmtp::start().await;
    let smtp_port = smtp.port().to_string();
    let backend = BackendProcess::start(&[
        ("GARDIEN_INTERNAL_SECRET", INTERNAL_SECRET),
        ("NOTIFY_MODE", "live"),
        ("NOTIFY_EMAIL_PROVIDERS", "sendgrid,smtp"),
        ("NOTIFY_SMS_PROVIDERS", "none"),
        ("NOTIFY_ATTEMPTS_PER_PROVIDER", "1"),
        ("NOTIFY_POLL_INTERVAL", "100ms"),
        ("NOTIFY_RETRY_BASE", "100ms"),
        ("NOTIFY_RETRY_MAX", "400ms"),
        ("NOTIFY_PROVIDER_TIMEOUT", "3s"),
        ("NOTIFY_LEASE", "10s"),
        ("EMAIL_FROM", "gardien <noreply@example.com>"),
        ("SENDGRID_API_BASE_URL", &sendgrid.base_url()),
        ("SENDGRID_API_KEY", SENDGRID_KEY),
        ("SENDGRID_TIMEOUT", "2s"),
        ("SMTP_HOST", &smtp.host()),
        ("SMTP_PORT", &smtp_port),
        ("SMTP_TLS", "none"),
        ("SMTP_TIMEOUT", "2s"),
    ])
    .await;
    let gateway = GatewayProcess::start(
        POLICY,
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("SLOW_UPSTREAM_URL", &slow.url()),
            ("BACKEND_UPSTREAM_URL", &backend.url()),
            ("JWKS_URL", &jwks.url()),
            ("GARDIEN_INTERNAL_SECRET", INTERNAL_SECRET),
        ],
    )
    .await;

    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [alerts.yaml]
scrape_configs:
  - job_name: gardien
    static_configs: [{{ targets: ["{gateway}"] }}]
  - job_name: gardien-backend
    static_configs: [{{ targets: ["{backend}"] }}]
"#,
        gateway = host_port(&gateway.admin),
        backend = backend.addr,
    );
    let prometheus = Prometheus::start(
        &config,
        &serde_yaml::to_string(&short).expect("the shortened rules"),
    )
    .await;

    // One round, checked: each request gets the answer it is there for.
    let mut admin = claims(ISSUER, AUDIENCE, "ops", 3600);
    admin["roles"] = json!(["admin"]);
    let traffic = Traffic {
        client: support::client(),
        base: gateway.base.clone(),
        token: format!("Bearer {}", key.sign(&admin)),
    };
    let first = round(&traffic).await;
    let second = round(&traffic).await;
    assert_eq!(
        (first.clone(), second[5]),
        (vec![200, 200, 403, 401, 200, 200, 200, 404], 429),
        "statuses of the first round (and the second /limited); gardien log:\n{}",
        gateway.log()
    );

    // The events the delivery panels need: a template, and a notification whose first
    // provider (SendGrid) fails once, so it fails over to SMTP.
    let template = json!({
        "key": "welcome", "category": "account", "channel": "email", "default_locale": "en",
        "variables": ["name"],
        "locales": {"en": {"email": {"subject": "Hello {{ name }}", "html": "<p>Hello {{ name }}</p>", "text": "Hello {{ name }}"}}}
    });
    let created = traffic
        .client
        .post(gateway.url("/api/notifications/templates"))
        .header("Authorization", &traffic.token)
        .json(&template)
        .send()
        .await
        .expect("create the template");
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    sendgrid.fail_next(1, 503);
    let sent = traffic
        .client
        .post(gateway.url("/api/notifications"))
        .header("Authorization", &traffic.token)
        .json(&json!({
            "user_id": "ada", "template_key": "welcome", "variables": {"name": "Ada"},
            "channels": ["email"], "to": {"email": "ada@example.com"}
        }))
        .send()
        .await
        .expect("send a notification");
    assert_eq!(sent.status(), 202, "{:?}", sent.text().await);
    let deadline = Instant::now() + Duration::from_secs(20);
    while smtp.messages().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the notification never reached SMTP after SendGrid failed (SendGrid saw {} requests); backend log:\n{}",
            sendgrid.requests().len(),
            backend.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Shedding: more concurrent slow requests than `max_in_flight`, until one is shed.
    let mut shed = false;
    for _ in 0..10 {
        let burst = (0..5).map(|_| traffic.client.get(gateway.url("/slow/400")).send());
        let answers = futures::future::join_all(burst).await;
        if answers
            .iter()
            .any(|a| a.as_ref().is_ok_and(|r| r.status() == 503))
        {
            shed = true;
            break;
        }
    }
    assert!(shed, "no request was shed with max_in_flight: 2");

    let stop = Arc::new(AtomicBool::new(false));
    let background = keep_traffic(traffic.clone(), Arc::clone(&stop));

    // Both targets scraped, every rule loaded and evaluated without error.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let targets = prometheus
            .api("/api/v1/targets", &[])
            .await
            .expect("targets");
        let up: Vec<&str> = targets["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["health"] == "up")
            .filter_map(|t| t["labels"]["job"].as_str())
            .collect();
        if up.contains(&"gardien") && up.contains(&"gardien-backend") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets not both up in 20s: {targets:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let data = prometheus.api("/api/v1/rules", &[]).await.expect("rules");
        let loaded: Vec<(String, String, String)> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .map(|r| {
                let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                (text("name"), text("health"), text("lastError"))
            })
            .collect();
        // Prometheus lists the groups in its own order.
        let mut loaded_names: Vec<&String> = loaded.iter().map(|(n, _, _)| n).collect();
        let mut expected: Vec<&String> = names.iter().collect();
        loaded_names.sort();
        expected.sort();
        assert_eq!(loaded_names, expected, "Prometheus loaded every alert");
        let errors: Vec<_> = loaded.iter().filter(|(_, h, _)| h == "err").collect();
        assert!(errors.is_empty(), "rules evaluated with errors: {errors:?}");
        if loaded.iter().all(|(_, health, _)| health == "ok") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not all evaluated in 20s: {loaded:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every panel query: success and at least one series (a new series needs two scrapes
    // before `rate` has a value, hence the bounded retry).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut failing = Vec::new();
        for query in &queries {
            match prometheus.query(&query.expr).await {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => failing.push(format!("{}: {}  → no series", query.panel, query.expr)),
                Err(e) => failing.push(format!("{}: {}  → {e}", query.panel, query.expr)),
            }
        }
        if failing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} dashboard queries fail after 30s of scraping:\n{}",
            failing.len(),
            queries.len(),
            failing.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Before the outage neither alert is pending or firing for `api`.
    wait_alerts(
        &prometheus,
        Duration::from_secs(20),
        "quiet before the outage",
        |a| outage_alerts(a, None) == (false, false),
    )
    .await;

    // The outage: both alerts fire while traffic keeps flowing.
    api.stop().await;
    let fired = wait_alerts(&prometheus, FIRE_WITHIN, "both alerts firing", |a| {
        outage_alerts(a, Some("firing")) == (true, true)
    })
    .await;

    // Back: both resolve (leave /api/v1/alerts).
    api.restart().await;
    let resolved = wait_alerts(&prometheus, RESOLVE_WITHIN, "both alerts resolved", |a| {
        outage_alerts(a, None) == (false, false)
    })
    .await;

    stop.store(true, Ordering::SeqCst);
    let rounds = background.await.expect("the traffic loop");
    eprintln!(
        "{} panel queries with series; fired {fired:?} after the stop, resolved {resolved:?} after the restart; {rounds} traffic rounds",
        queries.len()
    );
}
