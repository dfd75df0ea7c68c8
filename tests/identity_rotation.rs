//! Rotating `GARDIEN_INTERNAL_SECRET` under load refuses nothing: gardien and
//! gardien-backend as real processes read the secret from one secrets directory (as a
//! mounted Kubernetes Secret or Cloud Run volume), each refreshing on its own interval; two
//! clients send authenticated requests through gardien to a backend endpoint that verifies
//! `X-Gardien-Identity` while the file is rewritten. gardien keeps signing with the value
//! before for `jwt.identity_rotation_delay`, the backend accepts that value for its
//! rotation window, so every answer is 2xx; after the window only the new value verifies.
//! The same run with the backend's window at 0 gets 401s: the test can fail.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use support::jwt::{claims, hs_with_secret, now};
use support::processes::BackendProcess;
use support::{client, series_value, GatewayProcess};

const OLD: &str = "identity-rotation-old-secret-0123456789abcdef";
const NEW: &str = "identity-rotation-new-secret-fedcba9876543210";
const JWT_SECRET: &str = "identity-rotation-jwt-hs256-secret-0123456789";
const ISSUER: &str = "https://hs.rotation.test";
const AUDIENCE: &str = "rotation";

/// The load: two clients, each at most this many requests, for at most this long.
const CLIENTS: usize = 2;
const MAX_REQUESTS_PER_CLIENT: usize = 3000;
const LOAD_TIME: Duration = Duration::from_secs(5);
/// When, after the load starts, the secret is rotated.
const ROTATE_AFTER: Duration = Duration::from_secs(1);

/// Timing (the rule of `gardien_identity::rotation`, made explicit for a test): gardien
/// refreshes every 200ms and waits 1.5s before it signs with a new value; the backend
/// refreshes every 500ms (later than gardien, so the delay matters) and accepts the value
/// before for 4s ≥ 200ms + 1.5s + its 2s identity window. gardien switches at most
/// ~2s after the rotation, well inside the load, and long before the backend's window ends.
const GATEWAY_REFRESH: &str = "200ms";
const ROTATION_DELAY: &str = "1500ms";
const BACKEND_REFRESH: &str = "500ms";
const IDENTITY_WINDOW: &str = "2s";
const BACKEND_ROTATION_WINDOW: &str = "4s";

fn policy() -> String {
    format!(
        r#"
environment: dev
listen: "${{GARDIEN_LISTEN}}"
admin_listen: "${{GARDIEN_ADMIN_LISTEN}}"
client_ip: direct
upstreams:
  backend: {{ url: "${{BACKEND_UPSTREAM_URL}}", connect_timeout: 1s, read_timeout: 5s }}
routes:
  - {{ name: reports, prefix: /api/reports, upstream: backend }}
jwt:
  issuers:
    - issuer: "{ISSUER}"
      audiences: [{AUDIENCE}]
      algorithms: [HS256]
      secret: JWT_SECRET
  identity_rotation_delay: {ROTATION_DELAY}
server: {{ graceful_shutdown_timeout: 1s }}
"#
    )
}

/// Replaces the secret file atomically (a rename), as kubelet updates a mounted Secret: a
/// refresh never reads a half-written file.
fn write_secret(dir: &Path, value: &str) {
    let temporary = dir.join(".GARDIEN_INTERNAL_SECRET.tmp");
    std::fs::write(&temporary, value).expect("write the secret");
    std::fs::rename(&temporary, dir.join("GARDIEN_INTERNAL_SECRET")).expect("rename");
}

struct Stack {
    secrets: tempfile::TempDir,
    backend: BackendProcess,
    gateway: GatewayProcess,
}

async fn stack(backend_rotation_window: &str) -> Stack {
    let secrets = tempfile::tempdir().expect("tempdir");
    write_secret(secrets.path(), OLD);
    let dir = secrets.path().display().to_string();
    let backend = BackendProcess::start(&[
        ("SECRETS_DIR", &dir),
        ("SECRETS_DEV_DEFAULTS", "off"),
        ("SECRETS_REFRESH_INTERVAL", BACKEND_REFRESH),
        ("IDENTITY_WINDOW", IDENTITY_WINDOW),
        ("IDENTITY_ROTATION_WINDOW", backend_rotation_window),
    ])
    .await;
    let backend_url = backend.url();
    let gateway = GatewayProcess::start(
        &policy(),
        &[
            ("BACKEND_UPSTREAM_URL", &backend_url),
            ("JWT_SECRET", JWT_SECRET),
            ("SECRETS_DIR", &dir),
            ("SECRETS_DEV_DEFAULTS", "off"),
            ("SECRETS_REFRESH_INTERVAL", GATEWAY_REFRESH),
        ],
    )
    .await;
    Stack {
        secrets,
        backend,
        gateway,
    }
}

fn bearer() -> String {
    let token = hs_with_secret(
        Algorithm::HS256,
        JWT_SECRET.as_bytes(),
        None,
        &claims(ISSUER, AUDIENCE, "rotating-user", 600),
    );
    format!("Bearer {token}")
}

/// `GET /api/reports` through gardien: the status.
async fn through_gardien(http: &reqwest::Client, gateway: &GatewayProcess, token: &str) -> u16 {
    match http
        .get(gateway.url("/api/reports"))
        .header("Authorization", token)
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// `GET /api/reports` straight to the backend, signed as gardien would with `secret`.
async fn signed_directly(backend: &BackendProcess, secret: &str) -> u16 {
    let unix_now = u64::try_from(now()).expect("positive");
    let identity: [(&str, &[u8]); 2] = [("x-user-id", b"direct-user"), ("x-user-roles", b"")];
    let signature = gardien_identity::sign(
        secret.as_bytes(),
        "GET",
        "/api/reports",
        unix_now,
        &identity,
    );
    client()
        .get(format!("{}/api/reports", backend.url()))
        .header("x-user-id", "direct-user")
        .header("x-user-roles", "")
        .header(gardien_identity::HEADER, signature)
        .send()
        .await
        .expect("an answer")
        .status()
        .as_u16()
}

async fn backend_metric(backend: &BackendProcess, series: &str) -> f64 {
    let text = client()
        .get(format!("{}/metrics", backend.url()))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    series_value(&text, series)
}

const VERIFIED_CURRENT: &str = r#"gardien_backend_identity_verified_total{secret="current"}"#;
const VERIFIED_PREVIOUS: &str = r#"gardien_backend_identity_verified_total{secret="previous"}"#;

/// What the load saw: every status (0: no answer), and how many requests started after
/// the rotation.
struct Load {
    statuses: Vec<u16>,
    after_rotation: usize,
}

impl Load {
    fn not_2xx(&self) -> Vec<u16> {
        self.statuses
            .iter()
            .copied()
            .filter(|s| !(200..300).contains(s))
            .collect()
    }
}

/// Runs the bounded load through gardien and rotates the secret file in the middle.
async fn rotate_under_load(s: &Stack) -> Load {
    let token = Arc::new(bearer());
    let rotated = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let gateway_url = s.gateway.url("/api/reports");
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (token, rotated, url) = (
            Arc::clone(&token),
            Arc::clone(&rotated),
            gateway_url.clone(),
        );
        clients.push(tokio::spawn(async move {
            let http = client();
            let mut statuses = Vec::new();
            let mut after_rotation = 0;
            while statuses.len() < MAX_REQUESTS_PER_CLIENT && started.elapsed() < LOAD_TIME {
                if rotated.load(Ordering::SeqCst) {
                    after_rotation += 1;
                }
                let status = match http
                    .get(&url)
                    .header("Authorization", token.as_str())
                    .send()
                    .await
                {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                statuses.push(status);
            }
            (statuses, after_rotation)
        }));
    }
    tokio::time::sleep(ROTATE_AFTER).await;
    write_secret(s.secrets.path(), NEW);
    rotated.store(true, Ordering::SeqCst);
    let mut load = Load {
        statuses: Vec::new(),
        after_rotation: 0,
    };
    for handle in clients {
        let (statuses, after) = handle.await.expect("a load client");
        load.statuses.extend(statuses);
        load.after_rotation += after;
    }
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_internal_secret_under_load_refuses_nothing() {
    let s = stack(BACKEND_ROTATION_WINDOW).await;
    let http = client();
    let token = bearer();
    assert_eq!(
        through_gardien(&http, &s.gateway, &token).await,
        200,
        "{}",
        s.backend.log()
    );

    let load = rotate_under_load(&s).await;
    let refused = load.not_2xx();
    assert!(
        refused.is_empty(),
        "{} of {} requests were not 2xx during the rotation: {:?}\ngateway:\n{}\nbackend:\n{}",
        refused.len(),
        load.statuses.len(),
        &refused[..refused.len().min(20)],
        s.gateway.log(),
        s.backend.log()
    );
    assert!(
        load.after_rotation >= 50,
        "the load ran across the rotation: {} requests after it",
        load.after_rotation
    );
    // The backend saw the new value before gardien signed with it: for a while it
    // verified gardien's signatures with the value before.
    assert!(
        backend_metric(&s.backend, VERIFIED_PREVIOUS).await >= 1.0,
        "no signature verified by the previous secret: gardien did not delay"
    );
    let log = s.gateway.log();
    assert!(
        log.contains(
            "identity secret rotated: X-Gardien-Identity stays signed with the previous value"
        ),
        "{log}"
    );

    // After the delay gardien signs with the new value only (the load ended ≥ 2.5s after
    // its switch at most ~2s after the rotation).
    let previous = backend_metric(&s.backend, VERIFIED_PREVIOUS).await;
    let current = backend_metric(&s.backend, VERIFIED_CURRENT).await;
    for _ in 0..20 {
        assert_eq!(through_gardien(&http, &s.gateway, &token).await, 200);
    }
    assert_eq!(
        backend_metric(&s.backend, VERIFIED_PREVIOUS).await,
        previous,
        "gardien still signs with the old value after its delay"
    );
    assert_eq!(
        backend_metric(&s.backend, VERIFIED_CURRENT).await,
        current + 20.0
    );

    // After the backend's window, the old value is refused; the new one is accepted.
    let deadline = Instant::now() + Duration::from_secs(15);
    while signed_directly(&s.backend, OLD).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the old secret is still accepted after the rotation window"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(signed_directly(&s.backend, NEW).await, 200);
    for printed in [s.gateway.log(), s.backend.log()] {
        for value in [OLD, NEW, JWT_SECRET] {
            assert!(!printed.contains(value), "a secret value was logged");
        }
    }
}

/// The same rotation, with the backend accepting only its current value
/// (`IDENTITY_ROTATION_WINDOW=0s`): while gardien still signs with the old value and the
/// backend already has the new one (≥ 1s of the load), requests are refused — what every
/// rotation did before. Once gardien switches, requests pass again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_previous_value_the_same_rotation_gets_401s() {
    let s = stack("0s").await;
    let load = rotate_under_load(&s).await;
    let refused = load.not_2xx();
    assert!(
        !refused.is_empty() && refused.iter().all(|status| *status == 401),
        "expected 401s and nothing else, got {} non-2xx of {}: {:?}",
        refused.len(),
        load.statuses.len(),
        &refused[..refused.len().min(20)]
    );
    let http = client();
    let token = bearer();
    let deadline = Instant::now() + Duration::from_secs(10);
    while through_gardien(&http, &s.gateway, &token).await != 200 {
        assert!(
            Instant::now() < deadline,
            "gardien never signed with the new value"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
