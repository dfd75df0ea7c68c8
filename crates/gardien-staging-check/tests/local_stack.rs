//! The local form of the staging check (`scripts/staging-check.sh`, what `make
//! staging-check` runs): the whole stack in its staging shape on loopback, every flow `ok`;
//! and the same stack with the wrong frontend origin allowed fails the run.
//!
//! Needs the workspace's binaries (`cargo build --workspace --bins --examples`; `make test`
//! builds them), PostgreSQL at 127.0.0.1:5432 (database `test`), Redis at 127.0.0.1:6379,
//! and Debian's `chromium` and `chromium-driver` (the browser flow; `make test` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Flows the local form must pass, one `ok` line each.
const LOCAL_FLOWS: [&str; 15] = [
    "refused_origin",
    "signup_login",
    "me",
    "spoofed_identity",
    "forged_token",
    "expired_token",
    "preferences_etag",
    "reports",
    "admin_signup",
    "template_preview",
    "email_sms_fallback",
    "backend_bypass_refused",
    "browser_signup_login",
    "load",
    "login_brute_force",
];

/// The script bounds itself; this bounds the test even if it did not.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// `target/<profile>/`, from this test binary in `target/<profile>/deps/`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Runs the script with `env`, each run in its own Redis database so parallel runs never
/// share rate-limit buckets.
fn run_local(env: &[(&str, &str)]) -> (Output, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut command = Command::new("timeout");
    command
        .arg(RUN_TIMEOUT.as_secs().to_string())
        .arg(root.join("scripts/staging-check.sh"))
        .env("STAGING_BIN_DIR", bin_dir())
        .env("STAGING_CHECK_TIMEOUT", "180")
        .env_remove("FRONTEND_URL")
        .env_remove("STAGING_ORIGIN");
    for (name, value) in env {
        command.env(name, value);
    }
    let started = Instant::now();
    let output = command.output().expect("run scripts/staging-check.sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!(
        "staging-check ran {:?}\n{stdout}\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, stdout)
}

fn line_of<'a>(stdout: &'a str, flow: &str) -> Option<&'a str> {
    stdout.lines().find(|line| {
        line.get(5..)
            .is_some_and(|rest| rest.split_whitespace().next() == Some(flow))
    })
}

#[test]
fn local_staging_stack_passes_every_flow() {
    let (output, stdout) = run_local(&[("STAGING_REDIS_URL", "redis://127.0.0.1:6379/11")]);
    for flow in LOCAL_FLOWS {
        let line = line_of(&stdout, flow).unwrap_or_else(|| panic!("no line for {flow}"));
        assert!(line.starts_with("ok   "), "{flow}: {line}");
    }
    assert!(!stdout.contains("FAIL "), "{stdout}");
    assert_eq!(output.status.code(), Some(0), "exit code");
}

#[test]
fn a_stack_allowing_another_origin_fails_the_check() {
    let (output, stdout) = run_local(&[
        ("STAGING_REDIS_URL", "redis://127.0.0.1:6379/12"),
        ("FRONTEND_URL", "https://not-the-frontend.example"),
    ]);
    let line = line_of(&stdout, "signup_login").expect("a signup_login line");
    assert!(
        line.starts_with("FAIL ") && line.contains("preflight"),
        "{line}"
    );
    assert_eq!(output.status.code(), Some(1), "exit code");
}
