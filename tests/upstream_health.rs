//! Upstream HTTP health checks, with real processes: an upstream that accepts connections
//! but answers 503 on its health path is down (`gardien_upstream_up` 0, `/readyz` 503) and
//! comes back when it answers 200; one that never answers is down; an upstream without a
//! `health` is judged by TCP reachability as before; a reload applies a changed `health`;
//! the shipped policy's paths are the ones the demo API and gardien-backend serve.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use serde_json::Value;
use support::processes::{BackendProcess, DemoApi};
use support::{GatewayProcess, RecordingUpstream, TEST_POLICY};

/// How long a health transition may take in these tests (intervals are 300 ms).
const BOUND: Duration = Duration::from_secs(10);

/// An upstream whose health path answers the status the test sets (every other path 200),
/// recording the `Host` and path of each request.
struct SwitchableUpstream {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
    _task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Switch {
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl SwitchableUpstream {
    async fn start(status: u16) -> Self {
        let switch = Switch {
            status: Arc::new(AtomicU16::new(status)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new().fallback(answer).with_state(switch.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SwitchableUpstream {
            addr,
            status: switch.status,
            seen: switch.seen,
            _task: task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// `(path, host, user agent)` of every request to `/health`.
    fn health_requests(&self) -> Vec<(String, String, String)> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn answer(State(switch): State<Switch>, uri: Uri, headers: HeaderMap) -> StatusCode {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if uri.path() == "/health" {
        switch.seen.lock().expect("lock").push((
            uri.path().to_owned(),
            get("host"),
            get("user-agent"),
        ));
        return StatusCode::from_u16(switch.status.load(Ordering::SeqCst))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    StatusCode::OK
}

/// Accepts connections and never answers (each held until the listener is dropped).
struct SilentUpstream {
    addr: SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl SilentUpstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.truncate(64);
                held.push(stream);
            }
        });
        SilentUpstream { addr, _task: task }
    }
}

/// `TEST_POLICY` with an HTTP health check on `api` (`backend` keeps TCP readiness).
fn policy_with_health(health: &str) -> String {
    let policy = TEST_POLICY.replace(
        r#"api: { url: "${API_UPSTREAM_URL}", connect_timeout: 1s, read_timeout: 1s }"#,
        &format!(
            r#"api: {{ url: "${{API_UPSTREAM_URL}}", connect_timeout: 1s, read_timeout: 1s, health: {health} }}"#
        ),
    );
    assert_ne!(policy, TEST_POLICY);
    policy
}

/// Short enough for quick tests, long enough for a loaded machine not to flap.
const FAST_HEALTH: &str = "{ path: /health, interval: 300ms, timeout: 250ms, unhealthy_after: 1 }";

async fn start(api: &str, backend: &str, policy: &str) -> GatewayProcess {
    GatewayProcess::start(
        policy,
        &[("API_UPSTREAM_URL", api), ("BACKEND_UPSTREAM_URL", backend)],
    )
    .await
}

/// Polls `/readyz` and `gardien_upstream_up{upstream="api"}` until both say `up` (or
/// both say down), within [`BOUND`]; returns the last `/readyz` body.
async fn wait_api(gateway: &GatewayProcess, up: bool) -> Value {
    let series = r#"gardien_upstream_up{upstream="api"}"#;
    let deadline = Instant::now() + BOUND;
    loop {
        let (status, body) = gateway.admin_json("/readyz").await;
        let metric = gateway.metric(series).await;
        let api_ready = body["upstreams"]
            .as_array()
            .and_then(|all| all.iter().find(|u| u["upstream"] == "api"))
            .map(|u| u["ready"] == true);
        let reached = if up {
            status == 200 && metric == 1.0 && api_ready == Some(true)
        } else {
            status == 503 && metric == 0.0 && api_ready == Some(false)
        };
        if reached {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "api not {} within {BOUND:?}: /readyz {status} {body}, {series} {metric}\n{}",
            if up { "up" } else { "down" },
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn entry<'a>(body: &'a Value, list: &str, name: &str) -> &'a Value {
    body[list]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|u| u["upstream"] == name || u["name"] == name)
        })
        .unwrap_or_else(|| panic!("{name} in {list}: {body}"))
}

#[tokio::test]
async fn an_upstream_answering_503_is_down_until_it_answers_200() {
    let api = SwitchableUpstream::start(200).await;
    let backend = RecordingUpstream::start().await;
    let gateway = start(&api.url(), &backend.url(), &policy_with_health(FAST_HEALTH)).await;

    let body = wait_api(&gateway, true).await;
    let api_entry = entry(&body, "upstreams", "api");
    assert_eq!(api_entry["check"], "http", "{body}");
    assert_eq!(api_entry["health"]["status_code"], 200, "{body}");
    assert!(
        api_entry["health"]["latency_ms"].as_f64().is_some(),
        "{body}"
    );
    assert_eq!(entry(&body, "upstreams", "backend")["check"], "tcp");
    // The probe goes through the upstream's own address with its `Host`.
    let (path, host, agent) = api.health_requests().pop().expect("a probe");
    assert_eq!(
        (path.as_str(), host, agent.as_str()),
        ("/health", api.addr.to_string(), "gardien-health-check")
    );

    // Still accepting connections (a TCP probe would pass), but answering 503.
    api.set(503);
    let body = wait_api(&gateway, false).await;
    let failing = entry(&body, "failing", "api");
    assert_eq!(failing["health"]["status_code"], 503, "{body}");
    assert_eq!(failing["health"]["error_kind"], "status", "{body}");
    assert_eq!(
        body["failing"].as_array().map(Vec::len),
        Some(1),
        "the backend (TCP) stays ready: {body}"
    );
    let (_, status) = gateway.admin_json("/status").await;
    let shown = entry(&status, "upstreams", "api");
    assert_eq!(shown["check"], "http", "{status}");
    assert_eq!(shown["health"]["up"], false, "{status}");
    assert_eq!(shown["health"]["path"], "/health", "{status}");
    assert_eq!(shown["health"]["status_code"], 503, "{status}");
    let metrics = gateway.metrics().await;
    assert!(
        support::series_value(
            &metrics,
            r#"gardien_upstream_health_checks_total{result="status",upstream="api"}"#
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        support::series_value(
            &metrics,
            r#"gardien_upstream_health_check_seconds_count{upstream="api"}"#
        ) >= 2.0,
        "{metrics}"
    );

    api.set(200);
    wait_api(&gateway, true).await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_its_health_check_is_down() {
    let api = SilentUpstream::start().await;
    let backend = RecordingUpstream::start().await;
    let gateway = start(
        &format!("http://{}", api.addr),
        &backend.url(),
        &policy_with_health(FAST_HEALTH),
    )
    .await;
    let body = wait_api(&gateway, false).await;
    let failing = entry(&body, "failing", "api");
    assert_eq!(failing["health"]["error_kind"], "timeout", "{body}");
    assert!(failing["health"].get("status_code").is_none(), "{body}");
    assert!(
        gateway
            .metric(r#"gardien_upstream_health_checks_total{result="timeout",upstream="api"}"#)
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn without_health_tcp_reachability_decides_as_before() {
    // Answers 503 everywhere, but accepts connections: ready by TCP.
    let api = SwitchableUpstream::start(503).await;
    let mut backend = RecordingUpstream::start().await;
    let gateway = start(&api.url(), &backend.url(), TEST_POLICY).await;
    let body = wait_api(&gateway, true).await;
    assert_eq!(entry(&body, "upstreams", "api")["check"], "tcp", "{body}");
    assert!(
        api.health_requests().is_empty(),
        "no HTTP probe without `health`"
    );
    backend.stop().await;
    let (status, body) = gateway.admin_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(entry(&body, "failing", "backend")["check"], "tcp", "{body}");
}

#[tokio::test]
async fn a_reload_applies_a_changed_health_check() {
    let api = SwitchableUpstream::start(503).await;
    let backend = RecordingUpstream::start().await;
    // `/api/x` answers 200 (only `/health` follows the switch).
    let before =
        policy_with_health("{ path: /api/x, interval: 300ms, timeout: 250ms, unhealthy_after: 1 }")
            .replace(
                "graceful_shutdown_timeout: 1s }",
                "graceful_shutdown_timeout: 1s, watch_policy: false }",
            );
    let gateway = start(&api.url(), &backend.url(), &before).await;
    wait_api(&gateway, true).await;

    let after = before.replace("path: /api/x", "path: /health");
    std::fs::write(gateway.policy_path(), &after).expect("rewrite the policy");
    let status = Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let body = wait_api(&gateway, false).await;
    assert_eq!(
        entry(&body, "failing", "api")["health"]["path"],
        "/health",
        "{body}"
    );

    // Without `health`, back to TCP: ready again.
    let without = TEST_POLICY.replace(
        "graceful_shutdown_timeout: 1s }",
        "graceful_shutdown_timeout: 1s, watch_policy: false }",
    );
    std::fs::write(gateway.policy_path(), &without).expect("rewrite the policy");
    let status = Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let body = wait_api(&gateway, true).await;
    assert_eq!(entry(&body, "upstreams", "api")["check"], "tcp", "{body}");
}

#[tokio::test]
async fn the_shipped_policy_checks_the_demo_api_and_the_backend_health_paths() {
    let secret = "upstream-health-internal-secret-0123456789";
    let demo = DemoApi::start().await;
    let backend = BackendProcess::start(&[("GARDIEN_INTERNAL_SECRET", secret)]).await;
    let api = demo.url();
    let jwks = format!("{api}/.well-known/jwks.json");
    let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/dev.yaml");
    let gateway = GatewayProcess::start_file(
        &policy,
        &[
            ("API_UPSTREAM_URL", &api),
            ("BACKEND_UPSTREAM_URL", &backend.url()),
            ("JWT_ISSUER", &api),
            ("JWKS_URL", &jwks),
            ("GARDIEN_INTERNAL_SECRET", secret),
        ],
        tempfile::tempdir().expect("tempdir"),
    )
    .await;
    // The policy is probed before it serves: no waiting for the 5 s interval.
    let (status, body) = gateway.admin_json("/readyz").await;
    assert_eq!(status, 200, "{body}\n{}", gateway.log());
    for (name, path) in [("api", "/api/health"), ("backend", "/readyz")] {
        let shown = entry(&body, "upstreams", name);
        assert_eq!(shown["check"], "http", "{body}");
        assert_eq!(shown["health"]["path"], path, "{body}");
        assert_eq!(shown["health"]["status_code"], 200, "{body}");
    }
}

/// An HTTPS upstream with a self-signed certificate for 127.0.0.1 that answers every
/// request `200` and records each request head.
struct TlsUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
            )
            .expect("config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsUpstream {
            addr,
            heads,
            _task: task,
        }
    }
}

#[tokio::test]
async fn the_probe_uses_the_upstreams_tls_settings() {
    let api = TlsUpstream::start().await;
    let backend = RecordingUpstream::start().await;
    let url = format!("https://{}", api.addr);
    // Verified (the default): a self-signed certificate fails the check as `tls`.
    let gateway = start(&url, &backend.url(), &policy_with_health(FAST_HEALTH)).await;
    let body = wait_api(&gateway, false).await;
    assert_eq!(
        entry(&body, "failing", "api")["health"]["error_kind"],
        "tls",
        "{body}"
    );
    assert!(api.heads.lock().expect("lock").is_empty());
    drop(gateway);

    // `tls_verify: false` accepts it: the probe speaks HTTPS with the upstream's `Host`.
    let policy = policy_with_health(FAST_HEALTH).replace(
        "connect_timeout: 1s, read_timeout: 1s, health:",
        "connect_timeout: 1s, read_timeout: 1s, tls_verify: false, health:",
    );
    let gateway = start(&url, &backend.url(), &policy).await;
    let body = wait_api(&gateway, true).await;
    assert_eq!(
        entry(&body, "upstreams", "api")["health"]["status_code"],
        200,
        "{body}"
    );
    let head = api
        .heads
        .lock()
        .expect("lock")
        .first()
        .cloned()
        .expect("a probe");
    assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: {}\r\n", api.addr)),
        "{head}"
    );
}
