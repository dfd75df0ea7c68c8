//! `/status` on the admin listener: a page for people (server-rendered HTML, allowed only
//! its own hashed style by its CSP, refreshing itself) for browsers, JSON for everyone
//! else and always at `/status.json`.
//!
//! The gateway runs a policy of two upstreams with health checks: the real
//! gardien-backend (SQLite), whose `/readyz` JSON (database, provider circuits, outbox
//! backlog) the page shows, and one where nothing listens. A little traffic, some of it
//! 5xx, goes through first. Headless Chromium then loads the page and the test reads the
//! DOM. With `GARDIEN_STATUS_SCREENSHOT=path.png` the page is also saved there (how
//! docs/images/status-page.png was made).

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::Locator;
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::browser::{browser_log, browser_session, require_browser};
use support::processes::BackendProcess;
use support::{client, GatewayProcess, RefusingAddress};

/// Two upstreams with fast health checks: `backend` (its `/readyz`) and `api`.
const POLICY: &str = r#"
environment: dev
listen: "${GARDIEN_LISTEN}"
admin_listen: "${GARDIEN_ADMIN_LISTEN}"
upstreams:
  backend:
    url: "${BACKEND_UPSTREAM_URL}"
    connect_timeout: 1s
    read_timeout: 2s
    health: { path: /readyz, interval: 1s, timeout: 900ms }
  api:
    url: "${API_UPSTREAM_URL}"
    connect_timeout: 1s
    read_timeout: 1s
    health: { path: /api/health, interval: 1s, timeout: 900ms }
routes:
  - { name: backend_health, prefix: /healthz, upstream: backend, auth: public }
  - { name: api, prefix: /api/, upstream: api, auth: public }
cors:
  origins: ["http://localhost:5173"]
server: { threads: 1, graceful_shutdown_timeout: 1s }
"#;

/// Chromium's Accept header for a navigation.
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
/// Requests sent through the gateway: answered by the backend, and 5xx (nothing listens
/// behind `api`).
const OK_REQUESTS: u64 = 5;
const FAILED_REQUESTS: u64 = 3;
/// Upper bound for the browser test, so a wedged browser fails it instead of hanging.
const WHOLE_TEST: Duration = Duration::from_secs(120);

/// The processes of one test: dropped (killed) at its end, even when it panics.
struct Setup {
    gateway: GatewayProcess,
    _backend: BackendProcess,
    _refusing: RefusingAddress,
}

impl Setup {
    /// The gateway in front of the backend and of a refusing address, with both health
    /// checks decided and the traffic sent.
    async fn start() -> Setup {
        let backend = BackendProcess::start(&[]).await;
        let refusing = RefusingAddress::new();
        let (backend_url, api_url) = (backend.url(), refusing.url());
        let gateway = GatewayProcess::start(
            POLICY,
            &[
                ("BACKEND_UPSTREAM_URL", backend_url.as_str()),
                ("API_UPSTREAM_URL", api_url.as_str()),
            ],
        )
        .await;
        let setup = Setup {
            gateway,
            _backend: backend,
            _refusing: refusing,
        };
        setup.wait_for_health().await;
        setup.send_traffic().await;
        setup
    }

    /// Until `/status.json` says the backend is up (with its `/readyz` details) and `api`
    /// down; at most 20 s.
    async fn wait_for_health(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status_json().await;
            let backend = upstream(&status, "backend");
            let api = upstream(&status, "api");
            let decided = backend["up"] == true
                && backend["health"]["details"]["database"]["ok"] == true
                && api["up"] == false;
            if decided {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "health not decided in 20s: {status}\n{}",
                self.gateway.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn send_traffic(&self) {
        let client = client();
        for _ in 0..OK_REQUESTS {
            let answer = client
                .get(self.gateway.url("/healthz"))
                .send()
                .await
                .expect("GET /healthz through the gateway");
            assert_eq!(answer.status(), 200, "the backend's /healthz");
        }
        for _ in 0..FAILED_REQUESTS {
            // The same keep-alive client: a 502 says `Connection: close`, so the next
            // request opens a new connection (tests/proxy.rs).
            let answer = client
                .get(self.gateway.url("/api/things"))
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "GET /api/things through the gateway: {e:?}\n{}",
                        self.gateway.log()
                    )
                });
            assert!(answer.status().is_server_error(), "{}", answer.status());
        }
    }

    async fn status_json(&self) -> Value {
        let (code, body) = self.gateway.admin_json("/status.json").await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// The hash of `gardien_policy_info` in `/metrics`.
    async fn policy_hash_in_metrics(&self) -> String {
        let metrics = self.gateway.metrics().await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("gardien_policy_info{hash=\""))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("gardien_policy_info in {metrics}"))
            .to_owned()
    }
}

fn upstream<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["upstreams"]
        .as_array()
        .and_then(|all| all.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("upstream {name} in {status}"))
}

/// `'sha256-…'` of `text`, computed here rather than trusted from the gateway.
fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_json_for_scripts_and_a_page_for_browsers() {
    let setup = Setup::start().await;
    let gateway = &setup.gateway;
    let client = client();

    // No Accept, or a script's: JSON, as before.
    for accept in [None, Some("application/json"), Some("*/*")] {
        let mut request = client.get(gateway.admin_url("/status"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let answer = request.send().await.expect("GET /status");
        assert_eq!(answer.status(), 200);
        assert_eq!(
            support::header(answer.headers(), "content-type").as_deref(),
            Some("application/json"),
            "Accept {accept:?}"
        );
        let body: Value = answer.json().await.expect("JSON");
        assert_eq!(body["environment"], "dev");
    }
    // `/status.json` is JSON even for a browser.
    let answer = client
        .get(gateway.admin_url("/status.json"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .expect("GET /status.json");
    assert_eq!(
        support::header(answer.headers(), "content-type").as_deref(),
        Some("application/json")
    );
    let status: Value = answer.json().await.expect("JSON");

    // The JSON carries what the page shows.
    let traffic = &status["traffic"]["last_minute"];
    let requests = traffic["requests"].as_u64().expect("requests");
    let errors = traffic["errors_5xx"].as_u64().expect("5xx");
    assert!(requests >= OK_REQUESTS + FAILED_REQUESTS, "{traffic}");
    assert!(errors >= FAILED_REQUESTS, "{traffic}");
    assert!(errors < requests, "{traffic}");
    assert_eq!(
        status["traffic"]["last_15_minutes"]["requests"], traffic["requests"],
        "{status}"
    );
    assert_eq!(
        status["policy"]["hash"],
        setup.policy_hash_in_metrics().await.as_str()
    );
    assert_eq!(status["policy"]["last_reload"], Value::Null);
    assert!(status["policy"]["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("policy.yaml")));
    assert_eq!(status["rate_limits"]["state"], "local");
    let backend = upstream(&status, "backend");
    assert_eq!(backend["adaptive_factor"], 1.0);
    let details = &backend["health"]["details"];
    for channel in ["email", "sms"] {
        assert!(
            details["outbox"]["channels"][channel]["due"].is_u64(),
            "the backend's outbox backlog: {details}"
        );
    }
    assert!(details["providers"].is_object(), "{details}");
    let api = upstream(&status, "api");
    assert_eq!(api["health"]["error_kind"], "connect_refused", "{api}");

    // A browser's Accept: the page, with a CSP that allows exactly its one style.
    let answer = client
        .get(gateway.admin_url("/status"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .expect("GET /status as a browser");
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    assert_eq!(
        support::header(&headers, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        support::header(&headers, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        support::header(&headers, "cache-control").as_deref(),
        Some("no-store")
    );
    let page = answer.text().await.expect("the page");
    assert_eq!(page.matches("<style>").count(), 1, "{page}");
    let style = page
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(style, _)| style)
        .expect("a style element");
    let csp = support::header(&headers, "content-security-policy").expect("a CSP");
    assert!(
        csp.starts_with(&format!(
            "default-src 'none'; style-src {};",
            csp_hash(style)
        )),
        "{csp}"
    );
    assert!(!page.contains("<script"), "no script on the page");
    assert!(page.contains(r#"<meta http-equiv="refresh" content="5">"#));

    // HEAD as for the other paths.
    let answer = client
        .head(gateway.admin_url("/status"))
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .expect("HEAD /status");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        support::header(answer.headers(), "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_shows_a_down_upstream_backend_details_and_traffic() {
    require_browser();
    tokio::time::timeout(WHOLE_TEST, browser_scenario())
        .await
        .expect("the status page test finished within its time budget");
}

async fn browser_scenario() {
    let setup = Setup::start().await;
    let expected = setup.status_json().await;
    let hash = setup.policy_hash_in_metrics().await;
    let (_driver, browser) = browser_session().await;
    // Read everything first and close the session before asserting, so a failed
    // assertion never leaves a browser behind.
    let seen = read_page(&browser, &setup.gateway.admin_url("/status")).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), browser.close()).await;
    let seen = seen.unwrap_or_else(|e| panic!("{e}\n{}", setup.gateway.log()));
    eprintln!("status page: {seen:#?}");

    assert_eq!(seen.api_state, "down");
    let api_error = upstream(&expected, "api")["error"]
        .as_str()
        .expect("the down upstream's error")
        .to_owned();
    assert!(!api_error.is_empty());
    // As is, but for the spaces HTML collapses.
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        words(&seen.api_error),
        words(&api_error),
        "the probe's error"
    );
    assert_eq!(seen.backend_state, "up");
    let latency: f64 = seen
        .backend_latency
        .strip_suffix(" ms")
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("a latency in ms: {:?}", seen.backend_latency));
    assert!(latency > 0.0, "{latency}");
    assert_eq!(seen.policy_hash, hash, "the hash of gardien_policy_info");
    let requests: u64 = seen.requests_1m.parse().expect("a request count");
    let errors: u64 = seen.errors_1m.parse().expect("a 5xx count");
    assert!(requests >= OK_REQUESTS + FAILED_REQUESTS, "{requests}");
    assert!(errors >= FAILED_REQUESTS, "{errors}");
    assert_eq!(seen.database, "ok", "the backend's database");
    assert!(
        seen.outbox.starts_with("email: 0 due"),
        "the backend's outbox backlog: {:?}",
        seen.outbox
    );
    assert_eq!(seen.store, "local");
    // The stylesheet applied (a blocked one leaves the badge transparent).
    assert_eq!(seen.down_badge_background, "rgba(179, 38, 30, 1)");
    assert_eq!(seen.up_badge_background, "rgba(27, 127, 59, 1)");
    let severe: Vec<_> = seen
        .console
        .iter()
        .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING")
        .collect();
    assert!(severe.is_empty(), "console errors (CSP?): {severe:?}");
    assert!(
        seen.console_works,
        "the browser log did not show a console.error the test wrote: the clean console \
         above proves nothing"
    );
    assert!(seen.refreshed, "the page did not reload itself within 15 s");
    match closed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("closing the WebDriver session failed: {e}"),
        Err(_) => panic!("closing the WebDriver session took over 10s"),
    }
}

/// What the test reads off the page.
#[derive(Debug)]
struct Seen {
    api_state: String,
    api_error: String,
    backend_state: String,
    backend_latency: String,
    policy_hash: String,
    requests_1m: String,
    errors_1m: String,
    database: String,
    outbox: String,
    store: String,
    down_badge_background: String,
    up_badge_background: String,
    console: Vec<Value>,
    /// A `console.error` written by the test itself showed up in the browser log.
    console_works: bool,
    refreshed: bool,
}

async fn read_page(browser: &fantoccini::Client, url: &str) -> Result<Seen, String> {
    browser
        .goto(url)
        .await
        .map_err(|e| format!("loading {url}: {e}"))?;
    let text = |css: &'static str| async move {
        browser
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("`{css}` on the page: {e}"))?
            .text()
            .await
            .map_err(|e| format!("the text of `{css}`: {e}"))
    };
    let background = |css: &'static str| async move {
        browser
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("`{css}` on the page: {e}"))?
            .css_value("background-color")
            .await
            .map_err(|e| format!("the background of `{css}`: {e}"))
    };
    let mut seen = Seen {
        api_state: text(r#"tr.upstream[data-upstream="api"] .state .badge"#).await?,
        api_error: text(r#"tr.upstream[data-upstream="api"] .error"#).await?,
        backend_state: text(r#"tr.upstream[data-upstream="backend"] .state .badge"#).await?,
        backend_latency: text(r#"tr.upstream[data-upstream="backend"] .latency"#).await?,
        policy_hash: text("#policy-hash").await?,
        requests_1m: text("#requests-1m").await?,
        errors_1m: text("#errors-1m").await?,
        database: text(r#".details[data-upstream="backend"] .database .badge"#).await?,
        outbox: text(r#".details[data-upstream="backend"] .outbox[data-channel="email"]"#).await?,
        store: text("#rate-limit-store .badge").await?,
        down_badge_background: background(r#"tr.upstream[data-upstream="api"] .badge"#).await?,
        up_badge_background: background(r#"tr.upstream[data-upstream="backend"] .badge"#).await?,
        console: browser_log(browser).await?,
        console_works: false,
        refreshed: false,
    };
    // WebDriver's scripts are not the page's: the CSP does not apply to them.
    browser
        .execute("console.error('gardien-status-probe')", vec![])
        .await
        .map_err(|e| format!("writing to the console: {e}"))?;
    seen.console_works = browser_log(browser).await?.iter().any(|entry| {
        entry["message"]
            .as_str()
            .is_some_and(|m| m.contains("gardien-status-probe"))
    });
    if let Ok(path) = std::env::var("GARDIEN_STATUS_SCREENSHOT") {
        // Tall enough for the whole page.
        browser
            .set_window_size(1000, 1400)
            .await
            .map_err(|e| format!("resizing the window: {e}"))?;
        let png = browser
            .screenshot()
            .await
            .map_err(|e| format!("a screenshot: {e}"))?;
        std::fs::write(&path, png).map_err(|e| format!("writing {path}: {e}"))?;
    }
    // The page reloads itself: the time it was rendered at changes.
    let first = text("header .meta").await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Mid-reload the element may be gone; the next round finds the new one.
        if text("header .meta").await.is_ok_and(|now| now != first) {
            seen.refreshed = true;
            break;
        }
    }
    Ok(seen)
}
