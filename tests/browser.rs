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

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use support::browser::{require_browser, ChromeDriver};
use support::processes::DemoApi;
use support::{client, GatewayProcess, RefusingAddress};

/// The frontend served on both origins; it exposes `window.signUpAndLogIn`.
const PAGE: &str = include_str!("browser/index.html");
/// The Vite dev server origin that `policies/dev.yaml` allows literally.
const VITE_PORT: u16 = 5173;
/// Password for the test accounts; the demo API wants 8 to 128 characters.
const PASSWORD: &str = "correct horse battery staple";
/// The counter the gateway bumps when it refuses an origin.
const REFUSED_SERIES: &str = r#"gardien_cors_rejections_total{reason="origin_not_allowed"}"#;
/// Upper bound for the whole test, so a wedged browser fails it instead of hanging CI.
const WHOLE_TEST: Duration = Duration::from_secs(100);

/// Calls the page's function and hands its summary to WebDriver's callback. A missing
/// function or a thrown error becomes `{fatal}`, so the test reports it instead of timing out.
const RUN_PAGE_SCRIPT: &str = r#"
const [gateway, email, password, done] = arguments;
if (typeof window.signUpAndLogIn !== "function") {
  done({ fatal: "window.signUpAndLogIn is missing: the page did not load" });
} else {
  window.signUpAndLogIn(gateway, email, password).then(done, (e) => done({ fatal: String(e) }));
}
"#;

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
    let (allowed_port, allowed_listeners) = match bind_localhost(VITE_PORT) {
        Some(listeners) => (VITE_PORT, listeners),
        None => bind_ephemeral_localhost(),
    };
    let (refused_port, refused_listeners) = bind_ephemeral_localhost();
    serve_page(allowed_listeners);
    serve_page(refused_listeners);
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

    let driver = ChromeDriver::start().await;
    let browser = driver.session().await;
    eprintln!(
        "browser test: {allowed_origin} allowed, {refused_origin} refused, ready after {:?}",
        started.elapsed()
    );

    // Collect both outcomes first and close the session before asserting, so a failed
    // assertion never leaves a browser behind.
    let unique = unique_suffix();
    let allowed_email = format!("browser-allowed-{unique}@example.test");
    let refused_email = format!("browser-refused-{unique}@example.test");
    let allowed = run_page(&browser, &allowed_origin, &gateway.base, &allowed_email).await;
    let refused = run_page(&browser, &refused_origin, &gateway.base, &refused_email).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), browser.close()).await;

    let allowed = allowed.unwrap_or_else(|e| panic!("allowed origin: {e}\n{}", gateway.log()));
    eprintln!("browser test: from {allowed_origin}: {allowed}");
    assert_eq!(allowed["origin"], allowed_origin.as_str(), "{allowed}");
    assert_eq!(allowed["register"]["status"], 201, "sign-up: {allowed}");
    assert_eq!(allowed["login"]["status"], 200, "login: {allowed}");
    assert_eq!(allowed["tokenRead"], true, "token: {allowed}");
    // With the token, the page reaches a protected route and sees its own identity, which
    // the gateway took from the verified token (and signed for the API).
    assert_eq!(allowed["me"]["status"], 200, "/api/me: {allowed}");
    assert_eq!(
        allowed["me"]["userId"], allowed["registeredId"],
        "{allowed}"
    );
    assert_eq!(allowed["me"]["email"], allowed_email.as_str(), "{allowed}");
    assert_eq!(allowed["me"]["signed"], true, "{allowed}");

    let refused = refused.unwrap_or_else(|e| panic!("refused origin: {e}\n{}", gateway.log()));
    eprintln!("browser test: from {refused_origin}: {refused}");
    assert_eq!(refused["origin"], refused_origin.as_str(), "{refused}");
    for step in ["register", "login"] {
        assert_eq!(refused[step]["status"], Value::Null, "{step}: {refused}");
        assert_eq!(
            refused[step]["error"]["name"], "TypeError",
            "{step}: {refused}"
        );
        assert_eq!(
            refused[step]["error"]["message"], "Failed to fetch",
            "{step}: {refused}"
        );
    }
    assert_eq!(refused["tokenRead"], false, "{refused}");

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

/// Loads `origin`'s page in the browser and runs sign-up then login through `gateway`.
/// Errors are returned as text, so the caller can close the session before failing.
async fn run_page(
    browser: &fantoccini::Client,
    origin: &str,
    gateway: &str,
    email: &str,
) -> Result<Value, String> {
    browser
        .goto(&format!("{origin}/"))
        .await
        .map_err(|e| format!("loading {origin}/: {e}"))?;
    let summary = browser
        .execute_async(
            RUN_PAGE_SCRIPT,
            vec![json!(gateway), json!(email), json!(PASSWORD)],
        )
        .await
        .map_err(|e| format!("running the page script on {origin}: {e}"))?;
    match summary.get("fatal") {
        Some(fatal) => Err(format!("the page script on {origin} failed: {fatal}")),
        None => Ok(summary),
    }
}

/// A value for emails that no earlier run (the demo API keeps users in memory) has used.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// Binds `port` on both loopback addresses, or `None` if either is taken. Chromium may
/// resolve `localhost` to `::1` first: a dev server holding only `[::1]:5173` must not
/// answer in place of the test page. No IPv6 at all is fine.
fn bind_localhost(port: u16) -> Option<Vec<TcpListener>> {
    let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).ok()?;
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
        Ok(v6) => Some(vec![v4, v6]),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Some(vec![v4]),
        Err(_) => None,
    }
}

/// An ephemeral port bound on both loopback addresses (see [`bind_localhost`]): the system
/// picks it on 127.0.0.1 and the listener is kept while `::1` is tried on the same port.
fn bind_ephemeral_localhost() -> (u16, Vec<TcpListener>) {
    for _ in 0..20 {
        let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("an ephemeral port on 127.0.0.1");
        let port = v4.local_addr().expect("the bound address").port();
        match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
            Ok(v6) => return (port, vec![v4, v6]),
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => return (port, vec![v4]),
            Err(_) => continue,
        }
    }
    panic!("no ephemeral port was free on both 127.0.0.1 and ::1 in 20 tries");
}

/// Serves the test page on `listeners` for the rest of the test.
fn serve_page(listeners: Vec<TcpListener>) {
    let app = Router::new().route("/", get(|| async { Html(PAGE) }));
    for listener in listeners {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking page listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio page listener");
        let app = app.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
}
