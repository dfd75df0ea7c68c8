//! `gardien check` and `gardien run` on good and bad policies: every problem listed with its
//! field path, exit code 1, nothing started.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gardien(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gardien"));
    command.args(args).env("NO_COLOR", "1");
    for name in [
        "API_UPSTREAM_URL",
        "BACKEND_UPSTREAM_URL",
        "FRONTEND_URL",
        "FRONTEND_URL_PROD",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWKS_URL",
        "GARDIEN_INTERNAL_SECRET",
        "REDIS_URL",
        "GARDIEN_CLIENT_IP",
        "GARDIEN_LISTEN",
        "GARDIEN_ADMIN_LISTEN",
        "GOOGLE_CLOUD_PROJECT",
        "SECRET_MANAGER_PROJECT",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ] {
        command.env_remove(name);
    }
    // Never this machine's mounted secrets.
    command.env("SECRETS_DIR", "/nonexistent/gardien-test-secrets");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run gardien")
}

fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const PRODUCTION_ENV: [(&str, &str); 10] = [
    ("API_UPSTREAM_URL", "https://api-abc123.a.run.app"),
    ("BACKEND_UPSTREAM_URL", "http://10.8.0.4:8081"),
    ("FRONTEND_URL", "https://app.example.com"),
    (
        "FRONTEND_URL_PROD",
        "https://www.example.com,https://example.com",
    ),
    ("JWT_ISSUER", "https://id.example.com/"),
    ("JWT_AUDIENCE", "api.example.com"),
    ("JWKS_URL", "https://id.example.com/.well-known/jwks.json"),
    (
        "GARDIEN_INTERNAL_SECRET",
        "an-internal-secret-of-at-least-32-bytes!",
    ),
    ("REDIS_URL", "redis://10.8.0.3:6379"),
    ("GARDIEN_CLIENT_IP", "google_load_balancer"),
];

#[test]
fn shipped_policies_pass_check() {
    for name in ["dev.yaml", "staging.yaml", "production.yaml"] {
        let path = policy(name);
        let output = gardien(
            &["check", "--policy", path.to_str().expect("path")],
            &PRODUCTION_ENV,
        );
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        // The secrets report, then a one-line summary.
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(lines[0].starts_with("secrets: looked up in "), "{stdout}");
        assert!(
            lines[1..lines.len() - 1]
                .iter()
                .all(|l| l.starts_with("secret ")),
            "{stdout}"
        );
        assert!(
            lines[lines.len() - 1].starts_with("ok: "),
            "one-line summary last: {stdout}"
        );
        assert!(
            stdout.contains(
                "secret GARDIEN_INTERNAL_SECRET: environment variable GARDIEN_INTERNAL_SECRET"
            ),
            "{stdout}"
        );
    }
    // dev needs no variable at all.
    let output = gardien(&["check"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn production_without_its_environment_names_every_variable() {
    let path = policy("production.yaml");
    let output = gardien(&["check", "--policy", path.to_str().expect("path")], &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    for expected in [
        "error: upstreams.api.url: environment variable API_UPSTREAM_URL is not set",
        "error: upstreams.backend.url: environment variable BACKEND_UPSTREAM_URL is not set",
        "error: cors.origins_from_env[0]: environment variable FRONTEND_URL is not set",
        "error: cors.origins_from_env[1]: environment variable FRONTEND_URL_PROD is not set",
        "error: jwt.issuers[0].issuer: environment variable JWT_ISSUER is not set",
        "error: jwt.issuers[0].audiences[0]: environment variable JWT_AUDIENCE is not set",
        "error: jwt.issuers[0].jwks_url: environment variable JWKS_URL is not set",
        "error: jwt.identity_secret: secret GARDIEN_INTERNAL_SECRET is not set",
        "error: rate_limits.redis.url: environment variable REDIS_URL is not set",
        "error: client_ip: environment variable GARDIEN_CLIENT_IP is not set",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

const BAD_POLICY: &str = r#"
environment: dev
listen: "127.0.0.1:8080"
admin_listen: "${ADMIN_ADDRESS}"
upstreams:
  api: { url: "http://127.0.0.1:3000", conect_timeout: 2s }
  backend: { url: "http://127.0.0.1:8081", read_timeout: 12 }
routes:
  - { name: auth, prefix: /api/auth/, upstream: apii, auth: public }
  - { name: api, prefix: /api/, upstream: api, auth: public }
cors:
  origins: ["https://*", "*.com", "https://app.example.com/login", "https://*.example.com"]
  credentials: yes please
"#;

const BAD_POLICY_ERRORS: [&str; 8] = [
    "error: admin_listen: environment variable ADMIN_ADDRESS is not set",
    "error: upstreams.api.conect_timeout: unknown field `conect_timeout`",
    "error: upstreams.backend.read_timeout: ",
    "error: cors.credentials: ",
    "error: routes[0].upstream: unknown upstream `apii`",
    "error: cors.origins[0]: a subdomain pattern needs a domain",
    "error: cors.origins[1]: `*.com` has no scheme",
    "error: cors.origins[2]: an origin has no path",
];

#[test]
fn check_lists_every_problem_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BAD_POLICY).expect("write");
    let output = gardien(&["check", "--policy", path.to_str().expect("path")], &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    for expected in BAD_POLICY_ERRORS {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        !err.contains("cors.origins[3]"),
        "the valid pattern is not an error:\n{err}"
    );
    // Standard output has the secrets report only: nothing is declared ok.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.lines().all(|l| l.starts_with("secret")), "{stdout}");
}

#[test]
fn typos_in_section_names_are_refused_with_a_suggestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("typo.yaml");
    let text = std::fs::read_to_string(policy("dev.yaml"))
        .expect("dev policy")
        .replace("security_headers:", "security_header:");
    std::fs::write(&path, text).expect("write");
    let output = gardien(&["check", "--policy", path.to_str().expect("path")], &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("error: security_header: unknown field `security_header`; did you mean `security_headers`?"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_bad_policy_with_the_same_list_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BAD_POLICY.replace("127.0.0.1:8080", "127.0.0.1:0")).expect("write");
    let output = gardien(&["run", "--policy", path.to_str().expect("path")], &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    for expected in BAD_POLICY_ERRORS {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("gardien started"), "nothing started:\n{err}");
}

#[test]
fn run_explains_a_busy_port() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = busy.local_addr().expect("addr").to_string();
    let output = gardien(
        &["run"],
        &[
            ("GARDIEN_LISTEN", &address),
            ("GARDIEN_ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("error: cannot listen on {address} (listen)")),
        "{err}"
    );
}

#[test]
fn missing_policy_file_is_explained() {
    let output = gardien(&["check", "--policy", "/nonexistent/policy.yaml"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("error: policy: cannot read /nonexistent/policy.yaml"));
}
