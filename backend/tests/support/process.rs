//! The real `gardien-backend` binary in a child process on loopback, for the tests that
//! kill it, restart it, or run two replicas; and requests to it signed as gardien signs them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::ready::wait_for_address;
use super::SECRET;

/// A running backend; killed (`SIGKILL`) on drop.
pub struct BackendProcess {
    child: Child,
    pub addr: String,
    /// Every line it wrote to stdout and stderr.
    pub output: Arc<Mutex<Vec<String>>>,
    /// Holds the ready file.
    _dir: tempfile::TempDir,
}

impl BackendProcess {
    /// Starts the binary with `env` (on top of port 0 with a ready file, the tests'
    /// internal secret and `GARDIEN_ENVIRONMENT=dev`), and waits until it listens: the
    /// address it bound is read from its ready file.
    pub async fn start(env: &[(String, String)]) -> BackendProcess {
        Self::start_binary(Path::new(env!("CARGO_BIN_EXE_gardien-backend")), env).await
    }

    /// [`Self::start`] with another build of the binary (the release build of
    /// [`release_binary`]).
    pub async fn start_binary(binary: &Path, env: &[(String, String)]) -> BackendProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let ready = dir.path().join("ready");
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BACKEND_LISTEN", "127.0.0.1:0")
            .env("BACKEND_READY_FILE", &ready)
            .env("GARDIEN_INTERNAL_SECRET", SECRET)
            .env("GARDIEN_ENVIRONMENT", "dev")
            .env("GARDIEN_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start gardien-backend");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    output.lock().push(line);
                }
            });
        }
        let (waited, mut child) = tokio::task::spawn_blocking(move || {
            let waited = wait_for_address(&ready, &mut child, Duration::from_secs(30));
            (waited, child)
        })
        .await
        .expect("join");
        let addr = match waited {
            Ok(addr) => addr.to_string(),
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gardien-backend did not start: {why}\n{}",
                    output.lock().join("\n")
                );
            }
        };
        BackendProcess {
            child,
            addr,
            output,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `SIGKILL`: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `SIGTERM`, then waits for it to exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        self.output.lock().join("\n")
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `target/release/gardien-backend`, next to the debug build this test was built with.
/// Panics, saying what to run, when it is missing or older than a `.rs` file it is built
/// from: a test of the release build must not pass on an old one. `make test` builds it
/// first (`cargo build --release --workspace --bins`).
pub fn release_binary() -> PathBuf {
    let debug = Path::new(env!("CARGO_BIN_EXE_gardien-backend"));
    let binary = debug
        .parent()
        .and_then(Path::parent)
        .expect("the target directory")
        .join("release/gardien-backend");
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: this test runs the release build; run `cargo build --release --workspace --bins` (make test does)",
                binary.display()
            )
        });
    let backend = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut folders = vec![backend.join("src")];
    for crate_name in [
        "gardien-errors",
        "gardien-identity",
        "gardien-secrets",
        "gardien-telemetry",
    ] {
        folders.push(backend.join("../crates").join(crate_name).join("src"));
    }
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let changed = entry.metadata().and_then(|m| m.modified()).ok();
                assert!(
                    changed.is_none_or(|at| at <= built),
                    "{} is older than {}: run `cargo build --release --workspace --bins` (make test does)",
                    binary.display(),
                    path.display()
                );
            }
        }
    }
    binary
}

/// A request to a backend process as gardien would forward it for `user` with `roles`.
pub fn signed(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    user: &str,
    roles: &str,
) -> reqwest::RequestBuilder {
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/");
    let email = format!("{user}@example.com");
    let now = u64::try_from(jiff::Timestamp::now().as_second()).expect("now");
    let signature = gardien_identity::sign(
        SECRET.as_bytes(),
        method.as_str(),
        path,
        now,
        &[
            ("x-user-email", email.as_bytes()),
            ("x-user-id", user.as_bytes()),
            ("x-user-roles", roles.as_bytes()),
        ],
    );
    client
        .request(method, url)
        .header("x-user-id", user)
        .header("x-user-email", email)
        .header("x-user-roles", roles)
        .header(gardien_identity::HEADER, signature)
}
