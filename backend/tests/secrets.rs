//! The backend's secrets through the real `gardien-backend` binary: `check` says where each
//! came from and lists every missing one; a production start without them is refused
//! with the same list; the internal secret comes from the fake Secret Manager and its
//! rotation is picked up by the running service without a restart, the value before it
//! accepted for the rotation window (and `GARDIEN_INTERNAL_SECRET_PREVIOUS` while set). No
//! secret value may appear in anything the binary prints.

#[path = "support/ready.rs"]
mod ready;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gardien_fakes::secret_manager::{FakeMetadataServer, FakeSecretManager};

const PROJECT: &str = "backend-tests";
const TOKEN: &str = "ya29.backend-tests-token";
const V1: &str = "backend-internal-secret-one-0123456789abcdef";
const V2: &str = "backend-internal-secret-two-fedcba9876543210";
const DB_PASSWORD: &str = "db-password-never-printed";

/// Every variable the backend reads a secret or its configuration from, removed so only
/// what a test passes counts.
const CLEARED: [&str; 22] = [
    "GARDIEN_ENVIRONMENT",
    "GARDIEN_INTERNAL_SECRET",
    "GARDIEN_INTERNAL_SECRET_PREVIOUS",
    "IDENTITY_ROTATION_WINDOW",
    "DATABASE_URL",
    "DATABASE_ALLOW_SQLITE",
    "SENTRY_DSN",
    "GOOGLE_CLOUD_PROJECT",
    "SECRET_MANAGER_PROJECT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "SECRET_MANAGER_BASE_URL",
    "GCE_METADATA_HOST",
    "BACKEND_LISTEN",
    "BACKEND_READY_FILE",
    "NOTIFY_MODE",
    "NOTIFY_EMAIL_PROVIDERS",
    "NOTIFY_SMS_PROVIDERS",
    "EMAIL_FROM",
    "SMTP_HOST",
    "TWILIO_FROM",
    "RUST_LOG",
    "LOG_FORMAT",
];

/// A production database that `check` only names (it does not connect).
const POSTGRES: (&str, &str) = (
    "DATABASE_URL",
    "postgres://gardien@db.internal:5432/gardien",
);
/// Both channels turned off: what a production service that sends nothing sets.
const CHANNELS_OFF: [(&str, &str); 2] = [
    ("NOTIFY_EMAIL_PROVIDERS", "none"),
    ("NOTIFY_SMS_PROVIDERS", "none"),
];

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gardien-backend"));
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env("GARDIEN_LOG", "info");
    for name in CLEARED {
        command.env_remove(name);
    }
    command.env("SECRETS_DIR", "/nonexistent/gardien-backend-test-secrets");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn backend(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().expect("run gardien-backend")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_no_value(printed: &str, values: &[&str]) {
    for value in values {
        assert!(
            !printed.contains(value),
            "a secret value was printed:\n{printed}"
        );
    }
}

#[test]
fn check_lists_the_missing_internal_secret_in_production() {
    let output = backend(
        &["check"],
        &[
            ("SENTRY_DSN", "https://public-sentry-key@sentry.example/1"),
            POSTGRES,
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = text(&output);
    assert!(
        stderr.contains("error: secret GARDIEN_INTERNAL_SECRET: missing (required: verifies X-Gardien-Identity (the signature gardien puts on identity headers)); tried file /nonexistent/gardien-backend-test-secrets/GARDIEN_INTERNAL_SECRET: absent; environment variable GARDIEN_INTERNAL_SECRET: absent"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 1 required secret(s) missing: GARDIEN_INTERNAL_SECRET"),
        "{stderr}"
    );
    assert!(
        stdout.contains("secret DATABASE_URL: environment variable DATABASE_URL"),
        "{stdout}"
    );
    assert!(
        stdout.contains("secret SENTRY_DSN: environment variable SENTRY_DSN"),
        "{stdout}"
    );
    assert!(!stdout.contains("ok: "), "{stdout}");
    assert_no_value(&format!("{stdout}{stderr}"), &["public-sentry-key"]);
}

#[test]
fn check_says_where_each_secret_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("GARDIEN_INTERNAL_SECRET"),
        format!("{V1}\n"),
    )
    .expect("write");
    let database = format!("postgres://app:{DB_PASSWORD}@db.internal:5432/gardien");
    let output = backend(
        &["check"],
        &[
            ("SECRETS_DIR", dir.path().to_str().expect("path")),
            ("DATABASE_URL", &database),
            CHANNELS_OFF[0],
            CHANNELS_OFF[1],
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "secret GARDIEN_INTERNAL_SECRET: file {}",
            dir.path().join("GARDIEN_INTERNAL_SECRET").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("secret DATABASE_URL: environment variable DATABASE_URL"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok: gardien-backend (production): database postgres://[credentials]@db.internal:5432/gardien; notifications: live mode, email off (NOTIFY_EMAIL_PROVIDERS=none), sms off (NOTIFY_SMS_PROVIDERS=none)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("database: PostgreSQL, host db.internal:5432, database gardien, user app (password masked) (the DATABASE_URL secret)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("email: off (NOTIFY_EMAIL_PROVIDERS=none)"),
        "{stdout}"
    );
    assert_no_value(&format!("{stdout}{stderr}"), &[V1, DB_PASSWORD]);
}

#[test]
fn dev_uses_the_development_default() {
    let output = backend(&["check"], &[("GARDIEN_ENVIRONMENT", "dev")]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("secret GARDIEN_INTERNAL_SECRET: development default"),
        "{stdout}"
    );
    assert!(stdout.contains("then development defaults"), "{stdout}");

    // Turned off: a dev service with no internal secret at all (what the contract test runs).
    let output = backend(
        &["check"],
        &[
            ("GARDIEN_ENVIRONMENT", "dev"),
            ("SECRETS_DEV_DEFAULTS", "off"),
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("secret GARDIEN_INTERNAL_SECRET: not set (optional"),
        "{stdout}"
    );
    assert!(!stdout.contains("development default"), "{stdout}");
}

#[test]
fn a_production_start_without_the_internal_secret_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    let output = backend(
        &[],
        &[
            ("BACKEND_LISTEN", "127.0.0.1:0"),
            ("BACKEND_READY_FILE", ready.to_str().expect("path")),
            ("DATABASE_URL", &database),
            ("DATABASE_ALLOW_SQLITE", "true"),
            CHANNELS_OFF[0],
            CHANNELS_OFF[1],
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = text(&output);
    assert!(
        stderr.contains("error: 1 required secret(s) missing: GARDIEN_INTERNAL_SECRET"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 required secret(s) missing in production; nothing was started"),
        "{stderr}"
    );
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(!ready.exists(), "it never listened");
    assert!(!dir.path().join("b.db").exists(), "nothing was touched");
}

/// The backend in a child process, killed on drop.
struct Running {
    child: Child,
    url: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts it on port 0 (SQLite, allowed in production for the test) and reads the
    /// address it bound from its ready file.
    async fn start(env: &[(&str, &str)]) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("backend.log");
        let ready = dir.path().join("ready");
        let database = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
        let mut child = command(&[], env)
            .env("BACKEND_LISTEN", "127.0.0.1:0")
            .env("BACKEND_READY_FILE", &ready)
            .env("DATABASE_URL", &database)
            .env("DATABASE_ALLOW_SQLITE", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn gardien-backend");
        let (waited, child) = tokio::task::spawn_blocking(move || {
            let waited = ready::wait_for_address(&ready, &mut child, Duration::from_secs(30));
            (waited, child)
        })
        .await
        .expect("join");
        let mut child = child;
        let addr = match waited {
            Ok(addr) => addr,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gardien-backend did not start: {why}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            }
        };
        Running {
            child,
            url: format!("http://{addr}"),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /api/reports` as gardien would send it, signed with `secret`.
async fn status_signed_with(backend: &Running, secret: &str) -> u16 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let identity: [(&str, &[u8]); 3] = [
        ("x-user-email", b"ada@example.com"),
        ("x-user-id", b"ada"),
        ("x-user-roles", b""),
    ];
    let signature =
        gardien_identity::sign(secret.as_bytes(), "GET", "/api/reports", now, &identity);
    reqwest::Client::new()
        .get(format!("{}/api/reports", backend.url))
        .header("x-user-id", "ada")
        .header("x-user-email", "ada@example.com")
        .header("x-user-roles", "")
        .header(gardien_identity::HEADER, signature)
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_secret_comes_from_secret_manager_and_rotates_without_a_restart() {
    let sm = FakeSecretManager::start().await;
    let metadata = FakeMetadataServer::start(TOKEN).await;
    sm.accept_token(TOKEN);
    sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", V1);
    let base = sm.url();
    let host = metadata.host();
    let backend = Running::start(&[
        ("GARDIEN_ENVIRONMENT", "production"),
        ("SECRET_MANAGER_PROJECT", PROJECT),
        ("SECRET_MANAGER_BASE_URL", &base),
        ("GCE_METADATA_HOST", &host),
        ("SECRETS_REFRESH_INTERVAL", "300ms"),
        CHANNELS_OFF[0],
        CHANNELS_OFF[1],
    ])
    .await;
    assert_eq!(
        status_signed_with(&backend, V1).await,
        200,
        "{}",
        backend.log()
    );
    assert_eq!(status_signed_with(&backend, V2).await, 401);

    sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", V2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_signed_with(&backend, V2).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the rotated secret was not picked up:\n{}",
            backend.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status_signed_with(&backend, V1).await,
        200,
        "the old secret stays accepted for the rotation window (dropped after it: below)"
    );

    // Secret Manager down: the last good value stays.
    sm.set_down(true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(status_signed_with(&backend, V2).await, 200);

    let log = backend.log();
    assert!(
        log.contains(&format!(
            "secret GARDIEN_INTERNAL_SECRET: Google Secret Manager (projects/{PROJECT}/secrets/GARDIEN_INTERNAL_SECRET/versions/1)"
        )),
        "{log}"
    );
    assert!(log.contains("secret changed"), "{log}");
    assert!(log.contains("keeping the last good value"), "{log}");
    assert_no_value(&log, &[V1, V2, TOKEN]);
}

/// The delivery providers' settings for `live`: SendGrid (EMAIL_FROM) and Twilio
/// (TWILIO_FROM), plus the internal secret.
const LIVE: [(&str, &str); 5] = [
    ("NOTIFY_MODE", "live"),
    ("EMAIL_FROM", "gardien <noreply@example.com>"),
    ("TWILIO_FROM", "+14155550100"),
    ("GARDIEN_INTERNAL_SECRET", V1),
    POSTGRES,
];

#[test]
fn live_in_production_requires_every_provider_secret() {
    let output = backend(&["check"], &LIVE);
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = text(&output);
    for name in [
        "SENDGRID_API_KEY",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
    ] {
        assert!(
            stderr.contains(&format!(
                "error: secret {name}: missing (required: a credential of the"
            )),
            "{name}: {stderr}"
        );
    }
    assert!(
        stderr.contains(
            "error: 3 required secret(s) missing: SENDGRID_API_KEY, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN"
        ),
        "{stderr}"
    );
    assert!(!stdout.contains("ok: "), "{stdout}");

    // The same list refuses a start.
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    let mut env = LIVE.to_vec();
    env.extend([
        ("BACKEND_LISTEN", "127.0.0.1:0"),
        ("DATABASE_URL", database.as_str()),
        ("DATABASE_ALLOW_SQLITE", "true"),
    ]);
    let output = backend(&[], &env);
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = text(&output);
    assert!(
        stderr.contains("3 required secret(s) missing in production; nothing was started"),
        "{stderr}"
    );
    assert!(!stdout.contains("listening"), "{stdout}");

    // Given, they are found (and not printed); the ok line names the providers.
    let key = "SG.live-key-never-printed-0123456789";
    let token = "twilio-token-never-printed-0123456789";
    let mut env = LIVE.to_vec();
    env.extend([
        ("SENDGRID_API_KEY", key),
        ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
        ("TWILIO_AUTH_TOKEN", token),
    ]);
    let output = backend(&["check"], &env);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("secret SENDGRID_API_KEY: environment variable SENDGRID_API_KEY"),
        "{stdout}"
    );
    assert!(
        stdout.contains("notifications: live mode, email via sendgrid, sms via twilio"),
        "{stdout}"
    );
    assert_no_value(&format!("{stdout}{stderr}"), &[key, token, V1]);
}

#[test]
fn sandbox_in_staging_reports_provider_secrets_without_requiring_them() {
    let output = backend(
        &["check"],
        &[
            ("GARDIEN_ENVIRONMENT", "staging"),
            ("EMAIL_FROM", "gardien <noreply@example.com>"),
            ("GARDIEN_INTERNAL_SECRET", V1),
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("secret SENDGRID_API_KEY: not set (optional"),
        "{stdout}"
    );
    assert!(
        stdout.contains("notifications: sandbox mode, email via sendgrid, sms via twilio"),
        "{stdout}"
    );
}

#[test]
fn bad_delivery_settings_are_listed_together() {
    let output = backend(
        &["check"],
        &[
            ("GARDIEN_ENVIRONMENT", "dev"),
            ("NOTIFY_MODE", "live"),
            ("NOTIFY_EMAIL_PROVIDERS", "sendgrid,mailgun"),
            ("NOTIFY_LEASE", "5s"),
            ("NOTIFY_PROVIDER_TIMEOUT", "10s"),
            ("SENDGRID_API_BASE_URL", "ftp://sendgrid.example"),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let (_, stderr) = text(&output);
    for expected in [
        "NOTIFY_EMAIL_PROVIDERS: unknown provider `mailgun`",
        "NOTIFY_LEASE:",
        "SENDGRID_API_BASE_URL:",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}

/// One sample of the backend's `/metrics`, `name{labels}` exactly as exposed; 0 if absent.
async fn backend_metric(backend: &Running, series: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", backend.url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_the_value_before_is_accepted_for_the_window() {
    const V0: &str = "backend-internal-secret-zero-00112233445566";
    const WINDOW: Duration = Duration::from_millis(1500);
    let sm = FakeSecretManager::start().await;
    let metadata = FakeMetadataServer::start(TOKEN).await;
    sm.accept_token(TOKEN);
    sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", V1);
    sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET_PREVIOUS", V0);
    let (base, host) = (sm.url(), metadata.host());
    let backend = Running::start(&[
        ("GARDIEN_ENVIRONMENT", "production"),
        ("SECRET_MANAGER_PROJECT", PROJECT),
        ("SECRET_MANAGER_BASE_URL", &base),
        ("GCE_METADATA_HOST", &host),
        ("SECRETS_REFRESH_INTERVAL", "200ms"),
        ("IDENTITY_ROTATION_WINDOW", "1500ms"),
        CHANNELS_OFF[0],
        CHANNELS_OFF[1],
    ])
    .await;
    let current = r#"gardien_backend_identity_verified_total{secret="current"}"#;
    let previous = r#"gardien_backend_identity_verified_total{secret="previous"}"#;
    // The explicit previous value is accepted, as the current one; another is not.
    assert_eq!(
        status_signed_with(&backend, V1).await,
        200,
        "{}",
        backend.log()
    );
    assert_eq!(status_signed_with(&backend, V0).await, 200);
    assert_eq!(status_signed_with(&backend, V2).await, 401);
    assert_eq!(backend_metric(&backend, current).await, 1.0);
    assert_eq!(backend_metric(&backend, previous).await, 1.0);

    // The explicit one removed, then a rotation: the value before it is still accepted…
    sm.delete(PROJECT, "GARDIEN_INTERNAL_SECRET_PREVIOUS");
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_signed_with(&backend, V0).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the explicit previous stays accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sm.add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", V2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_signed_with(&backend, V2).await != 200 {
        assert!(Instant::now() < deadline, "the rotation was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = Instant::now();
    let verified_previous = backend_metric(&backend, previous).await;
    assert_eq!(
        status_signed_with(&backend, V1).await,
        200,
        "within the window"
    );
    assert_eq!(
        backend_metric(&backend, previous).await,
        verified_previous + 1.0,
        "counted as verified by the previous secret"
    );
    // …until the window has passed, then refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_signed_with(&backend, V1).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the previous value is never dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The change happened at most one poll (50ms) and a request before `seen`.
    assert!(
        seen.elapsed() >= WINDOW - Duration::from_millis(300),
        "dropped after {:?}, before the window",
        seen.elapsed()
    );
    assert_eq!(status_signed_with(&backend, V2).await, 200);
    assert_no_value(&backend.log(), &[V0, V1, V2, TOKEN]);
}

#[test]
fn a_short_previous_secret_refuses_a_production_start() {
    let output = backend(
        &["check"],
        &[
            ("GARDIEN_INTERNAL_SECRET", V1),
            ("GARDIEN_INTERNAL_SECRET_PREVIOUS", "too-short"),
            POSTGRES,
            CHANNELS_OFF[0],
            CHANNELS_OFF[1],
        ],
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "error: GARDIEN_INTERNAL_SECRET_PREVIOUS: 9 bytes; production needs at least 32"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains(
            "secret GARDIEN_INTERNAL_SECRET_PREVIOUS: environment variable GARDIEN_INTERNAL_SECRET_PREVIOUS"
        ),
        "{stdout}"
    );
    assert_no_value(&format!("{stdout}{stderr}"), &["too-short", V1]);
}
