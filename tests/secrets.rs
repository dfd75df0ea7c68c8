//! Secrets through the real `gardien` binary: resolved from the fake Secret Manager (token
//! from the fake metadata server), files and the environment; `check`'s report for missing
//! ones; a production start refused with the same list; a rotated HS256 secret and identity
//! secret picked up by a running gateway without a restart. No secret value may appear in
//! anything the gateway prints.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gardien_fakes::secret_manager::{FakeMetadataServer, FakeSecretManager};
use jsonwebtoken::Algorithm;
use support::jwt::{claims, hs_with_secret, now};
use support::{client, GatewayProcess, RecordingUpstream};

const PROJECT: &str = "gardien-tests";
const TOKEN: &str = "ya29.gateway-tests-token";
const HS_ISSUER: &str = "https://hs.test";
const AUDIENCE: &str = "gardien-test";
const HS_V1: &str = "hs256-secret-version-one-0123456789abcdef";
const HS_V2: &str = "hs256-secret-version-two-fedcba9876543210";
const INTERNAL_V1: &str = "internal-secret-from-a-file-0123456789abcdef";
const INTERNAL_V2: &str = "internal-secret-rotated-in-the-file-987654321";

/// A policy with an HS256 issuer (secret `JWT_SECRET`) and an identity secret.
fn policy(environment: &str) -> String {
    format!(
        r#"
environment: {environment}
listen: "${{GARDIEN_LISTEN:-127.0.0.1:1}}"
admin_listen: "${{GARDIEN_ADMIN_LISTEN:-127.0.0.1:2}}"
client_ip: direct
upstreams:
  api: {{ url: "${{API_UPSTREAM_URL:-http://127.0.0.1:3}}", connect_timeout: 1s, read_timeout: 2s }}
routes:
  - {{ name: api, prefix: /api/, upstream: api }}
security_headers:
  strict_transport_security: "max-age=63072000; includeSubDomains"
jwt:
  issuers:
    - issuer: "{HS_ISSUER}"
      audiences: [{AUDIENCE}]
      algorithms: [HS256]
      secret: JWT_SECRET
  identity_secret: GARDIEN_INTERNAL_SECRET
  cache_size: 0
server: {{ threads: 1, graceful_shutdown_timeout: 1s }}
"#
    )
}

/// `gardien <args>` with only `env` (and no secret from this machine).
fn gardien(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gardien"));
    command.args(args).env("NO_COLOR", "1");
    for name in [
        "GARDIEN_INTERNAL_SECRET",
        "JWT_SECRET",
        "SENTRY_DSN",
        "GOOGLE_CLOUD_PROJECT",
        "SECRET_MANAGER_PROJECT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GARDIEN_LISTEN",
        "GARDIEN_ADMIN_LISTEN",
    ] {
        command.env_remove(name);
    }
    command.env("SECRETS_DIR", "/nonexistent/gardien-test-secrets");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run gardien")
}

fn write_policy(dir: &Path, environment: &str) -> String {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, policy(environment)).expect("write policy");
    path.display().to_string()
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

/// Secret Manager and the metadata server, faked on loopback.
struct Google {
    sm: FakeSecretManager,
    metadata: FakeMetadataServer,
}

impl Google {
    async fn start() -> Google {
        let sm = FakeSecretManager::start().await;
        let metadata = FakeMetadataServer::start(TOKEN).await;
        sm.accept_token(TOKEN);
        Google { sm, metadata }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SECRET_MANAGER_PROJECT", PROJECT.to_owned()),
            ("SECRET_MANAGER_BASE_URL", self.sm.url()),
            ("GCE_METADATA_HOST", self.metadata.host()),
        ]
    }
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `check` runs on a blocking thread while the fakes answer on this runtime.
async fn gardien_async(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        gardien(&args, &borrowed(&env))
    })
    .await
    .expect("gardien ran")
}

#[test]
fn check_lists_every_missing_secret_and_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(dir.path(), "production");
    let output = gardien(
        &["check", "--policy", &path],
        &[("SENTRY_DSN", "https://public-key-value@sentry.example/1")],
    );
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = text(&output);
    for expected in [
        "error: secret GARDIEN_INTERNAL_SECRET: missing (required: jwt.identity_secret: signs X-Gardien-Identity); tried file /nonexistent/gardien-test-secrets/GARDIEN_INTERNAL_SECRET: absent; environment variable GARDIEN_INTERNAL_SECRET: absent",
        "error: secret JWT_SECRET: missing (required: jwt.issuers[0].secret: HMAC key of https://hs.test); tried file /nonexistent/gardien-test-secrets/JWT_SECRET: absent; environment variable JWT_SECRET: absent",
        "error: 2 required secret(s) missing: GARDIEN_INTERNAL_SECRET, JWT_SECRET",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(
        stdout.contains("secret SENTRY_DSN: environment variable SENTRY_DSN"),
        "{stdout}"
    );
    assert!(!stdout.contains("ok: "), "{stdout}");
    assert_no_value(&format!("{stdout}{stderr}"), &["public-key-value"]);
}

#[test]
fn check_says_where_each_secret_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(dir.path(), "production");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    std::fs::write(secrets.join("JWT_SECRET"), format!("{HS_V1}\n")).expect("write");
    let output = gardien(
        &["check", "--policy", &path],
        &[
            ("SECRETS_DIR", secrets.to_str().expect("path")),
            ("GARDIEN_INTERNAL_SECRET", INTERNAL_V1),
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let expected_file = format!(
        "secret JWT_SECRET: file {}",
        secrets.join("JWT_SECRET").display()
    );
    assert!(stdout.contains(&expected_file), "{stdout}");
    assert!(
        stdout.contains(
            "secret GARDIEN_INTERNAL_SECRET: environment variable GARDIEN_INTERNAL_SECRET"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("secret SENTRY_DSN: not set (optional: error reporting)"),
        "{stdout}"
    );
    assert!(
        stdout.lines().last().is_some_and(|l| l.starts_with("ok: ")),
        "{stdout}"
    );
    assert_no_value(&format!("{stdout}{stderr}"), &[HS_V1, INTERNAL_V1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_secret_manager_and_reports_an_outage() {
    let google = Google::start().await;
    google.sm.add_version(PROJECT, "JWT_SECRET", HS_V1);
    let v = google
        .sm
        .add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", INTERNAL_V1);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(dir.path(), "production");
    let args = vec!["check".to_owned(), "--policy".to_owned(), path.clone()];

    let output = gardien_async(args.clone(), google.env()).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "secret GARDIEN_INTERNAL_SECRET: Google Secret Manager (projects/{PROJECT}/secrets/GARDIEN_INTERNAL_SECRET/versions/{v})"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("secrets: looked up in Google Secret Manager (project gardien-tests, token from the metadata server"),
        "{stdout}"
    );
    assert!(google.sm.requests().iter().all(|r| r
        .headers
        .get("authorization")
        .map(String::as_str)
        == Some(&format!("Bearer {TOKEN}")[..])));

    // Secret Manager down: the environment answers, and the report says why.
    google.sm.set_down(true);
    let mut env = google.env();
    env.push(("JWT_SECRET", HS_V2.to_owned()));
    env.push(("GARDIEN_INTERNAL_SECRET", INTERNAL_V2.to_owned()));
    let output = gardien_async(args, env).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("secret JWT_SECRET: environment variable JWT_SECRET (after Google Secret Manager projects/{PROJECT}/secrets/JWT_SECRET/versions/latest: failed: 503 UNAVAILABLE: The service is currently unavailable.)")),
        "{stdout}"
    );
    assert_no_value(
        &format!("{stdout}{stderr}"),
        &[HS_V1, HS_V2, INTERNAL_V1, INTERNAL_V2, TOKEN],
    );
}

#[test]
fn a_production_start_with_missing_secrets_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_policy(dir.path(), "production");
    let output = gardien(
        &["run", "--policy", &path],
        &[
            ("GARDIEN_LISTEN", "127.0.0.1:0"),
            ("GARDIEN_ADMIN_LISTEN", "127.0.0.1:0"),
            ("GARDIEN_INTERNAL_SECRET", INTERNAL_V1),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = text(&output);
    assert!(
        stderr.contains("error: secret JWT_SECRET: missing (required: jwt.issuers[0].secret"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 1 required secret(s) missing: JWT_SECRET"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 required secret(s) missing in production; nothing was started"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("gardien started"),
        "nothing listens: {stderr}"
    );
    assert_no_value(&format!("{stdout}{stderr}"), &[INTERNAL_V1]);
}

async fn status_with(gateway: &GatewayProcess, secret: &str) -> u16 {
    let token = hs_with_secret(
        Algorithm::HS256,
        secret.as_bytes(),
        None,
        &claims(HS_ISSUER, AUDIENCE, "rotating-user", 300),
    );
    client()
        .get(gateway.url("/api/me"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("answer")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_gateway_picks_up_rotated_secrets() {
    let google = Google::start().await;
    google.sm.add_version(PROJECT, "JWT_SECRET", HS_V1);
    let api = RecordingUpstream::start().await;
    let secrets_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        secrets_dir.path().join("GARDIEN_INTERNAL_SECRET"),
        INTERNAL_V1,
    )
    .expect("write");
    let mut env = google.env();
    env.push(("API_UPSTREAM_URL", api.url()));
    env.push(("SECRETS_REFRESH_INTERVAL", "300ms".to_owned()));
    env.push(("SECRETS_DIR", secrets_dir.path().display().to_string()));
    let gateway = GatewayProcess::start(&policy("staging"), &borrowed(&env)).await;

    assert_eq!(status_with(&gateway, HS_V1).await, 200);
    assert_eq!(status_with(&gateway, HS_V2).await, 401, "not yet rotated");
    let seen = api.last();
    let signature = seen.headers.get("x-gardien-identity").expect("signed");
    let forwarded: Vec<(&str, &[u8])> = ["x-user-email", "x-user-id", "x-user-roles"]
        .iter()
        .filter_map(|name| seen.headers.get(*name).map(|v| (*name, v.as_bytes())))
        .collect();
    let unix_now = u64::try_from(now()).expect("positive");
    assert_eq!(
        gardien_identity::verify(
            INTERNAL_V1.as_bytes(),
            signature,
            "GET",
            "/api/me",
            &forwarded,
            unix_now,
            30
        ),
        Ok(())
    );

    // Rotate both: a new Secret Manager version, a rewritten mounted file.
    google.sm.add_version(PROJECT, "JWT_SECRET", HS_V2);
    std::fs::write(
        secrets_dir.path().join("GARDIEN_INTERNAL_SECRET"),
        INTERNAL_V2,
    )
    .expect("rewrite");
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_with(&gateway, HS_V2).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the rotated secret was not picked up:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status_with(&gateway, HS_V1).await,
        401,
        "the old secret is gone"
    );
    // The identity signature uses the rotated internal secret too (same reload).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(status_with(&gateway, HS_V2).await, 200);
        let seen = api.last();
        let signature = seen
            .headers
            .get("x-gardien-identity")
            .expect("signed")
            .clone();
        let forwarded: Vec<(&str, &[u8])> = ["x-user-email", "x-user-id", "x-user-roles"]
            .iter()
            .filter_map(|name| seen.headers.get(*name).map(|v| (*name, v.as_bytes())))
            .collect();
        let unix_now = u64::try_from(now()).expect("positive");
        if gardien_identity::verify(
            INTERNAL_V2.as_bytes(),
            &signature,
            "GET",
            "/api/me",
            &forwarded,
            unix_now,
            30,
        )
        .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "identity secret not rotated:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // While Secret Manager is down, the last good value stays.
    google.sm.set_down(true);
    let failed = r#"gardien_secret_refreshes_total{result="failed"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.metric(failed).await < 1.0 {
        assert!(Instant::now() < deadline, "no failed refresh counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_with(&gateway, HS_V2).await, 200);
    assert!(
        gateway
            .metric(r#"gardien_policy_reloads_total{result="applied"}"#)
            .await
            >= 1.0
    );

    let log = gateway.log();
    assert!(log.contains("secret changed"), "{log}");
    assert!(log.contains("policy reloaded"), "{log}");
    assert!(log.contains("keeping the last good value"), "{log}");
    assert_no_value(&log, &[HS_V1, HS_V2, INTERNAL_V1, INTERNAL_V2, TOKEN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_looks_the_secrets_up_again_at_once() {
    let google = Google::start().await;
    google.sm.add_version(PROJECT, "JWT_SECRET", HS_V1);
    let api = RecordingUpstream::start().await;
    let mut env = google.env();
    env.push(("API_UPSTREAM_URL", api.url()));
    env.push(("GARDIEN_INTERNAL_SECRET", INTERNAL_V1.to_owned()));
    // Far longer than the test: only the signal can explain a pick-up.
    env.push(("SECRETS_REFRESH_INTERVAL", "1h".to_owned()));
    let gateway = GatewayProcess::start(&policy("dev"), &borrowed(&env)).await;
    assert_eq!(status_with(&gateway, HS_V1).await, 200);

    google.sm.add_version(PROJECT, "JWT_SECRET", HS_V2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status_with(&gateway, HS_V2).await, 401, "no refresh yet");
    let status = Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_with(&gateway, HS_V2).await != 200 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not pick up the new version:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_no_value(&gateway.log(), &[HS_V1, HS_V2, INTERNAL_V1, TOKEN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_value_the_policy_refuses_keeps_the_running_policy() {
    let google = Google::start().await;
    google.sm.add_version(PROJECT, "JWT_SECRET", HS_V1);
    google
        .sm
        .add_version(PROJECT, "GARDIEN_INTERNAL_SECRET", INTERNAL_V1);
    let api = RecordingUpstream::start().await;
    let mut env = google.env();
    env.push(("API_UPSTREAM_URL", api.url()));
    env.push(("SECRETS_REFRESH_INTERVAL", "300ms".to_owned()));
    let gateway = GatewayProcess::start(&policy("production"), &borrowed(&env)).await;
    assert_eq!(status_with(&gateway, HS_V1).await, 200);

    // Production refuses an HMAC key under 32 bytes: the new version cannot be applied.
    google.sm.add_version(PROJECT, "JWT_SECRET", "too-short");
    let refused = r#"gardien_policy_reloads_total{result="refused"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.metric(refused).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no refused reload:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status_with(&gateway, HS_V1).await,
        200,
        "the last good policy stays"
    );
    assert_eq!(status_with(&gateway, "too-short").await, 401);
    let log = gateway.log();
    assert!(log.contains("secret JWT_SECRET is 9 bytes"), "{log}");
    assert_no_value(&log, &[HS_V1, "too-short", INTERNAL_V1, TOKEN]);
}
