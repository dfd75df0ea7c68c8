//! A real browser through the real gateway: headless Debian Chromium, driven over WebDriver
//! by `chromedriver`, loads a frontend page from another origin and calls the demo API
//! through `gardien run --policy policies/dev.yaml` with `fetch(..., {credentials: 'include'})`.
//!
//! From the allowed origin (`http://localhost:5173`, or `FRONTEND_URL` when 5173 is busy)
//! sign-up and login succeed and the page reads the token. From a refused origin the
//! browser itself blocks the fetch, and the gateway counts the refusal.
//!
//! Needs `/usr/bin/chromium`, `/usr/bin/chromedriver` (`make test` installs them) and the
//! `demo_api` example binary (`cargo test` builds it; `cargo build --examples` otherwise).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::browser::{browser_session, frontend, require_browser};
use support::processes::DemoApi;
use support::{client, GatewayProcess, RefusingAddress};

/// The Vite dev server origin that `policies/dev.yaml` allows literally.
const VITE_PORT: u16 = 5173;
/// Password for the test accounts; the demo API wants 8 to 128 characters.
const PASSWORD: &str = "correct horse battery staple";
/// The counter the gateway bumps when it refuses an origin.
const REFUSED_SERIES: &str = r#"gardien_cors_rejections_total{reason="origin_not_allowed"}"#;
/// Upper bound for the whole test, so a wedged browser fails it instead of hanging CI.
const WHOLE_TEST: Duration = Duration::from_secs(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_up_and_logs_in_from_allowed_origin_only() {
    require_browser();
    tokio::time::timeout(WHOLE_TEST, scenario())
        .await
        .expect("the browser test finished within its time budget");
}

/// The whole test; every process it starts is killed on drop, even when it panics.
async fn scenario() {
    let started = Instant::now();
    let demo = DemoApi::start().await;

    // The allowed origin is the literal one of dev.yaml when its port is free; otherwise an
    // ephemeral port, allowed through `FRONTEND_URL` (which exercises `origins_from_env`).
    let (allowed_port, allowed_listeners) = match frontend::bind_localhost(VITE_PORT) {
        Some(listeners) => (VITE_PORT, listeners),
        None => frontend::bind_ephemeral_localhost().unwrap_or_else(|e| panic!("{e}")),
    };
    let (refused_port, refused_listeners) =
        frontend::bind_ephemeral_localhost().unwrap_or_else(|e| panic!("{e}"));
    frontend::serve(allowed_listeners).expect("serving the allowed origin's page");
    frontend::serve(refused_listeners).expect("serving the refused origin's page");
    let allowed_origin = format!("http://localhost:{allowed_port}");
    let refused_origin = format!("http://localhost:{refused_port}");

    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/dev.yaml");
    let api_url = demo.url();
    // Nothing listens there: no request of this test is routed to the backend.
    let refusing = RefusingAddress::new();
    let backend_url = refusing.url();
    // dev.yaml trusts the demo API's tokens; this one listens on an ephemeral port.
    let jwks_url = format!("{api_url}/.well-known/jwks.json");
    let mut env = vec![
        ("API_UPSTREAM_URL", api_url.as_str()),
        ("BACKEND_UPSTREAM_URL", backend_url.as_str()),
        ("JWT_ISSUER", api_url.as_str()),
        ("JWKS_URL", jwks_url.as_str()),
        (
            "GARDIEN_INTERNAL_SECRET",
            "browser-test-internal-secret-0123456789",
        ),
    ];
    if allowed_port != VITE_PORT {
        env.push(("FRONTEND_URL", allowed_origin.as_str()));
    }
    let gateway = GatewayProcess::start_file(
        &policy,
        &env,
        tempfile::tempdir().expect("a tempdir for the gateway"),
    )
    .await;
    let refused_before = gateway.metric(REFUSED_SERIES).await;

    let (_driver, browser) = browser_session().await;
    eprintln!(
        "browser test: {allowed_origin} allowed, {refused_origin} refused, ready after {:?}",
        started.elapsed()
    );

    // Collect both outcomes first and close the session before asserting, so a failed
    // assertion never leaves a browser behind.
    let unique = unique_suffix();
    let allowed_email = format!("browser-allowed-{unique}@example.test");
    let refused_email = format!("browser-refused-{unique}@example.test");
    let allowed = frontend::sign_up_and_log_in(
        &browser,
        &allowed_origin,
        &gateway.base,
        &allowed_email,
        PASSWORD,
    )
    .await;
    let refused = frontend::sign_up_and_log_in(
        &browser,
        &refused_origin,
        &gateway.base,
        &refused_email,
        PASSWORD,
    )
    .await;
    let closed = tokio::time::timeout(Duration::from_secs(10), browser.close()).await;

    let allowed = allowed.unwrap_or_else(|e| panic!("allowed origin: {e}\n{}", gateway.log()));
    eprintln!("browser test: from {allowed_origin}: {allowed}");
    if let Err(e) = frontend::expect_signed_in(&allowed, &allowed_origin, &allowed_email) {
        panic!("from {allowed_origin}: {e}\n{}", gateway.log());
    }

    let refused = refused.unwrap_or_else(|e| panic!("refused origin: {e}\n{}", gateway.log()));
    eprintln!("browser test: from {refused_origin}: {refused}");
    if let Err(e) = frontend::expect_blocked(&refused, &refused_origin) {
        panic!("from {refused_origin}: {e}\n{}", gateway.log());
    }

    // The browser blocked it because the gateway refused it (at the preflight), and the
    // sign-up never reached the API: that account does not exist.
    let refused_after = gateway.metric(REFUSED_SERIES).await;
    assert!(
        refused_after > refused_before,
        "{REFUSED_SERIES} went from {refused_before} to {refused_after}\n{}",
        gateway.log()
    );
    let direct_login = client()
        .post(format!("{}/api/auth/login", demo.url()))
        .json(&json!({"email": refused_email, "password": PASSWORD}))
        .send()
        .await
        .expect("a direct login to the demo API");
    assert_eq!(
        direct_login.status(),
        401,
        "the refused sign-up reached the API"
    );

    match closed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("closing the WebDriver session failed: {e}"),
        Err(_) => panic!("closing the WebDriver session took over 10s"),
    }
    eprintln!("browser test: passed in {:?}", started.elapsed());
}

/// A value for emails that no earlier run (the demo API keeps users in memory) has used.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}
