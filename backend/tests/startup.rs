//! What the real `gardien-backend` binary refuses and reports when it starts: outside
//! `dev` a channel with no provider (unless turned off with `none`), in production a
//! missing `DATABASE_URL` or a SQLite one not asked for; the database `check` names
//! (never its password); port 0 and the ready file; the log variables shared with gardien.

#[path = "support/ready.rs"]
mod ready;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const SECRET: &str = "startup-tests-internal-secret-0123456789";
const DB_PASSWORD: &str = "startup-db-password-never-printed";
const POSTGRES: (&str, &str) = (
    "DATABASE_URL",
    "postgres://gardien@db.internal:5432/gardien",
);

/// Every variable the tests set, removed first so only what a test passes counts.
const CLEARED: &[&str] = &[
    "GARDIEN_ENVIRONMENT",
    "GARDIEN_INTERNAL_SECRET",
    "DATABASE_URL",
    "DATABASE_ALLOW_SQLITE",
    "SECRET_MANAGER_PROJECT",
    "GOOGLE_CLOUD_PROJECT",
    "BACKEND_LISTEN",
    "BACKEND_READY_FILE",
    "NOTIFY_MODE",
    "NOTIFY_EMAIL_PROVIDERS",
    "NOTIFY_SMS_PROVIDERS",
    "EMAIL_FROM",
    "SMTP_HOST",
    "TWILIO_FROM",
    "TWILIO_MESSAGING_SERVICE_SID",
    "GARDIEN_LOG",
    "GARDIEN_LOG_FORMAT",
    "RUST_LOG",
    "LOG_FORMAT",
];

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gardien-backend"));
    command.args(args).env("NO_COLOR", "1");
    for name in CLEARED {
        command.env_remove(name);
    }
    command
        .env(
            "SECRETS_DIR",
            "/nonexistent/gardien-backend-startup-secrets",
        )
        .env("GARDIEN_INTERNAL_SECRET", SECRET);
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (Output, String, String) {
    let output = command(args, env).output().expect("run gardien-backend");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// A start (`serve`) on port 0 with a ready file in a fresh directory, SQLite inside it
/// (allowed, for tests that are not about the database).
struct Start {
    dir: tempfile::TempDir,
}

impl Start {
    fn new() -> Start {
        Start {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn ready(&self) -> PathBuf {
        self.dir.path().join("ready")
    }

    fn database(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join("b.db").display()
        )
    }

    /// The command, with `env` over port 0, the ready file and the SQLite database.
    fn command(&self, env: &[(&str, &str)]) -> Command {
        let ready = self.ready();
        let database = self.database();
        let mut base = vec![
            ("BACKEND_LISTEN", "127.0.0.1:0"),
            ("BACKEND_READY_FILE", ready.to_str().expect("path")),
            ("DATABASE_URL", database.as_str()),
            ("DATABASE_ALLOW_SQLITE", "true"),
        ];
        base.extend_from_slice(env);
        command(&[], &base)
    }

    /// A start that must be refused: its output, and that it never listened.
    fn refused(&self, env: &[(&str, &str)]) -> String {
        let output = self.command(env).output().expect("run gardien-backend");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
        assert!(!stdout.contains("listening"), "{stdout}");
        assert!(!self.ready().exists(), "it never listened");
        stderr
    }

    /// A start that must succeed: the running process and the address it bound.
    fn running(&self, env: &[(&str, &str)]) -> Running {
        let log = self.dir.path().join("stderr.log");
        let mut child = self
            .command(env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn gardien-backend");
        match ready::wait_for_address(&self.ready(), &mut child, Duration::from_secs(30)) {
            Ok(addr) => Running { child, addr, log },
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gardien-backend did not start: {why}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            }
        }
    }
}

struct Running {
    child: Child,
    addr: std::net::SocketAddr,
    log: PathBuf,
}

impl Running {
    /// Stops it (`SIGTERM`, so it logs its shutdown) and returns what it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// 1. A channel without a provider.

#[test]
fn production_refuses_a_channel_without_a_provider_naming_what_to_set() {
    let (output, stdout, stderr) = run(&["check"], &[("NOTIFY_MODE", "live"), POSTGRES]);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("error: NOTIFY_EMAIL_PROVIDERS: no email provider is configured, so every email would fail in production; set EMAIL_FROM + SENDGRID_API_KEY (sendgrid), or SMTP_HOST + EMAIL_FROM (smtp); or turn email off with NOTIFY_EMAIL_PROVIDERS=none"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: NOTIFY_SMS_PROVIDERS: no sms provider is configured")
            && stderr.contains("(TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID) + TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN (twilio)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("email: no provider (not configured)"),
        "{stdout}"
    );
    assert!(!stdout.contains("ok: "), "{stdout}");

    // The start is refused with the same problems.
    let start = Start::new();
    let stderr = start.refused(&[("NOTIFY_MODE", "live")]);
    assert!(
        stderr.contains("error: NOTIFY_EMAIL_PROVIDERS: no email provider is configured"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was started"), "{stderr}");
}

#[test]
fn a_channel_turned_off_is_reported_and_accepted() {
    let (output, stdout, stderr) = run(
        &["check"],
        &[
            ("NOTIFY_MODE", "live"),
            POSTGRES,
            ("NOTIFY_EMAIL_PROVIDERS", "none"),
            ("TWILIO_FROM", "+14155550100"),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "twilio-token-never-printed-0123456789"),
        ],
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("email: off (NOTIFY_EMAIL_PROVIDERS=none)"),
        "{stdout}"
    );
    assert!(stdout.contains("sms: twilio"), "{stdout}");
    assert!(
        stdout.contains(
            "notifications: live mode, email off (NOTIFY_EMAIL_PROVIDERS=none), sms via twilio"
        ),
        "{stdout}"
    );
    // `none` stands alone.
    let (output, _, stderr) = run(
        &["check"],
        &[
            ("GARDIEN_ENVIRONMENT", "dev"),
            ("NOTIFY_EMAIL_PROVIDERS", "none,smtp"),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("NOTIFY_EMAIL_PROVIDERS: `none` turns email off and stands alone"),
        "{stderr}"
    );
}

#[test]
fn staging_in_sandbox_refuses_email_without_a_provider() {
    let (output, stdout, stderr) = run(&["check"], &[("GARDIEN_ENVIRONMENT", "staging")]);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("error: NOTIFY_EMAIL_PROVIDERS: no email provider is configured, so every email would fail in staging"),
        "{stderr}"
    );
    // Twilio's sandbox needs no sender: sms has its provider.
    assert!(!stderr.contains("NOTIFY_SMS_PROVIDERS"), "{stderr}");
    assert!(stdout.contains("sms: twilio"), "{stdout}");
}

#[test]
fn dev_stays_permissive() {
    let (output, stdout, stderr) = run(
        &["check"],
        &[("GARDIEN_ENVIRONMENT", "dev"), ("NOTIFY_MODE", "live")],
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("email via nothing (not configured), sms via nothing (not configured)"),
        "{stdout}"
    );
}

// 2. The database.

#[test]
fn production_requires_a_database_url() {
    let off = [
        ("NOTIFY_EMAIL_PROVIDERS", "none"),
        ("NOTIFY_SMS_PROVIDERS", "none"),
    ];
    let (output, stdout, stderr) = run(&["check"], &off);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("error: secret DATABASE_URL: missing (required: the database"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 1 required secret(s) missing: DATABASE_URL"),
        "{stderr}"
    );
    assert!(
        stdout.contains("database: none (DATABASE_URL is required in production)"),
        "{stdout}"
    );

    // A start is refused, and no SQLite file appears.
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("ready");
    let mut env = off.to_vec();
    env.extend([
        ("BACKEND_LISTEN", "127.0.0.1:0"),
        ("BACKEND_READY_FILE", ready.to_str().expect("path")),
    ]);
    let output = command(&[], &env)
        .current_dir(dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 required secret(s) missing in production; nothing was started"),
        "{stderr}"
    );
    assert!(!ready.exists());
    assert!(
        !dir.path().join("gardien.db").exists(),
        "no throwaway SQLite file"
    );

    // Nor is a migration run on the default file.
    let output = command(&["migrate"], &off)
        .current_dir(dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL: required in production"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("gardien.db").exists(),
        "no throwaway SQLite file"
    );

    // `--database-url` gives it too.
    let (output, stdout, stderr) = run(
        &["--database-url", "postgres://db.internal/gardien", "check"],
        &off,
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "database: PostgreSQL, host db.internal:5432, database gardien (--database-url)"
        ),
        "{stdout}"
    );
}

#[test]
fn sqlite_in_production_only_when_asked_for() {
    let off = [
        ("NOTIFY_EMAIL_PROVIDERS", "none"),
        ("NOTIFY_SMS_PROVIDERS", "none"),
    ];
    let mut env = off.to_vec();
    env.push(("DATABASE_URL", "sqlite:///var/lib/gardien/b.db?mode=rwc"));
    let (output, stdout, stderr) = run(&["check"], &env);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("error: DATABASE_URL: `sqlite:///var/lib/gardien/b.db?mode=rwc` is SQLite, refused in production")
            && stderr.contains("DATABASE_ALLOW_SQLITE=true"),
        "{stderr}"
    );
    env.push(("DATABASE_ALLOW_SQLITE", "true"));
    let (output, stdout, stderr) = run(&["check"], &env);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("database: SQLite, file /var/lib/gardien/b.db (the DATABASE_URL secret)"),
        "{stdout}"
    );

    // A start without the permission is refused.
    let start = Start::new();
    let database = start.database();
    let stderr = start.refused(&[
        off[0],
        off[1],
        ("DATABASE_URL", &database),
        ("DATABASE_ALLOW_SQLITE", "false"),
    ]);
    assert!(
        stderr.contains("is SQLite, refused in production"),
        "{stderr}"
    );
}

#[test]
fn check_names_the_database_without_its_password() {
    let url = format!("postgres://app:{DB_PASSWORD}@db.internal:6432/gardien?sslmode=require");
    let (output, stdout, stderr) = run(
        &["check"],
        &[
            ("DATABASE_URL", &url),
            ("NOTIFY_EMAIL_PROVIDERS", "none"),
            ("NOTIFY_SMS_PROVIDERS", "none"),
        ],
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("database: PostgreSQL, host db.internal:6432, database gardien, user app (password masked) (the DATABASE_URL secret)"),
        "{stdout}"
    );
    assert!(
        !format!("{stdout}{stderr}").contains(DB_PASSWORD),
        "the password was printed"
    );
}

// 3. Port 0 and the ready file.

#[test]
fn port_0_is_bound_and_reported_in_the_ready_file_and_the_log() {
    let start = Start::new();
    let running = start.running(&[("GARDIEN_ENVIRONMENT", "dev")]);
    assert_ne!(running.addr.port(), 0);
    assert!(running.addr.ip().is_loopback());
    let written = std::fs::read_to_string(start.ready()).expect("ready file");
    assert_eq!(written, format!("{}\n", running.addr));
    let answer = std::net::TcpStream::connect_timeout(&running.addr, Duration::from_secs(5));
    assert!(answer.is_ok(), "it listens where it says");
    let log = running.stop();
    assert!(
        log.contains(&format!("address={}", written.trim())),
        "the log says where: {log}"
    );
}

#[test]
fn a_ready_file_that_cannot_be_written_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    let mut child = command(
        &[],
        &[
            ("GARDIEN_ENVIRONMENT", "dev"),
            ("BACKEND_LISTEN", "127.0.0.1:0"),
            ("BACKEND_READY_FILE", "/nonexistent/gardien-backend/ready"),
            ("DATABASE_URL", &database),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("it kept running without its ready file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: cannot write the ready file /nonexistent/gardien-backend/ready"),
        "{stderr}"
    );
}

// 4. The log variables.

/// The lines of `log` that are the start's own line (`gardien-backend started`).
fn started_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("gardien-backend started"))
        .collect()
}

fn is_json(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object())
}

#[test]
fn gardien_log_format_json_prints_json_lines_and_log_format_still_does() {
    for env in [
        vec![("GARDIEN_LOG_FORMAT", "json")],
        vec![("LOG_FORMAT", "json")],
    ] {
        let start = Start::new();
        let mut env = env;
        env.push(("GARDIEN_ENVIRONMENT", "dev"));
        let log = start.running(&env).stop();
        let lines = started_lines(&log);
        assert_eq!(lines.len(), 1, "{env:?}: {log}");
        assert!(is_json(lines[0]), "{env:?}: {log}");
        assert!(
            log.lines().all(is_json),
            "{env:?}: every line is JSON: {log}"
        );
    }
    // The new name wins.
    let start = Start::new();
    let log = start
        .running(&[
            ("GARDIEN_ENVIRONMENT", "dev"),
            ("GARDIEN_LOG_FORMAT", "text"),
            ("LOG_FORMAT", "json"),
        ])
        .stop();
    let lines = started_lines(&log);
    assert_eq!(lines.len(), 1, "{log}");
    assert!(!is_json(lines[0]), "{log}");
}

#[test]
fn gardien_log_filters_and_wins_over_rust_log() {
    let start = Start::new();
    let log = start
        .running(&[
            ("GARDIEN_ENVIRONMENT", "dev"),
            ("GARDIEN_LOG", "warn"),
            ("RUST_LOG", "info"),
        ])
        .stop();
    assert!(
        started_lines(&log).is_empty(),
        "info is filtered out: {log}"
    );
    let start = Start::new();
    let log = start
        .running(&[("GARDIEN_ENVIRONMENT", "dev"), ("RUST_LOG", "warn")])
        .stop();
    assert!(
        started_lines(&log).is_empty(),
        "RUST_LOG is still read: {log}"
    );
}

#[test]
fn a_stale_ready_file_is_replaced_and_check_leaves_it_alone() {
    let start = Start::new();
    std::fs::write(start.ready(), "127.0.0.1:9\n").expect("stale file");
    // `check` with the service's environment does not touch the running one's file.
    let ready = start.ready();
    let (output, stdout, stderr) = run(
        &["check"],
        &[
            ("GARDIEN_ENVIRONMENT", "dev"),
            ("BACKEND_READY_FILE", ready.to_str().expect("path")),
        ],
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert_eq!(
        std::fs::read_to_string(&ready).expect("still there"),
        "127.0.0.1:9\n"
    );
    // A start replaces it with its own address (a waiter should still remove a stale
    // file before starting the process, as the tests do with a fresh directory).
    let mut child = start
        .command(&[("GARDIEN_ENVIRONMENT", "dev")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let written = loop {
        let text = std::fs::read_to_string(&ready).unwrap_or_default();
        if !text.is_empty() && text != "127.0.0.1:9\n" {
            break text;
        }
        if std::time::Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            panic!("the stale ready file was never replaced: {text:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let addr: std::net::SocketAddr = written.trim().parse().expect("an address");
    assert_ne!(addr.port(), 9);
    assert!(written.ends_with('\n'));

    // A refused start leaves no stale address behind for a waiter to connect to.
    std::fs::write(&ready, "127.0.0.1:9\n").expect("stale file");
    let stderr = start.refused(&[("NOTIFY_MODE", "live")]);
    assert!(stderr.contains("nothing was started"), "{stderr}");
}
