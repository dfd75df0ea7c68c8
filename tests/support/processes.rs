//! Child processes of the workspace's other binaries: the demo API (a stand-in for the
//! existing API) and gardien-backend.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_ready_file;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The `demo_api` example (sign-up, login, JWKS) in a child process, killed on drop.
pub struct DemoApi {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl DemoApi {
    /// Starts the example binary that `cargo test` built next to this test on port 0, and
    /// waits for the readiness line with the bound address it prints on stdout; its tokens'
    /// issuer is that address.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts it with extra environment (`DEMO_ADMINS`, …).
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let binary = target_binary(&["examples", "demo_api"]);
        let dir = tempfile::tempdir().expect("a tempdir for the demo API");
        let log = dir.path().join("demo_api.log");
        let mut command = Command::new(&binary);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .env("DEMO_API_LISTEN", "127.0.0.1:0")
            .env_remove("DEMO_API_ISSUER")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("the demo API log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("the demo API's stdout");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        // Reads the readiness line, then drains stdout so the child never blocks on it.
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("demo_api listening on http://") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let mut demo = DemoApi {
            child,
            addr: String::new(),
            _dir: dir,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(addr)) => demo.addr = addr,
            Ok(Err(_)) => panic!("demo_api exited before listening:\n{}", read(&log)),
            Err(_) => panic!("demo_api not ready in {READY_TIMEOUT:?}:\n{}", read(&log)),
        }
        assert!(
            demo.addr.starts_with("127.0.0.1:"),
            "demo_api listens on loopback: {}",
            demo.addr
        );
        demo
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DemoApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary of the workspace (`["gardien-backend"]`, `["examples", "demo_api"]`), found
/// from this test binary in `target/<profile>/deps/`: `cargo test --workspace` builds them
/// (`make test` does), but only the package's own appear in `CARGO_BIN_EXE_*`.
pub fn target_binary(parts: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = parts
        .iter()
        .fold(profile.to_path_buf(), |path, part| path.join(part));
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins --examples` first (make test does)",
        binary.display()
    );
    binary
}

/// `gardien-backend` in a child process on a fresh SQLite file (or `DATABASE_URL` from
/// `env`), as `GARDIEN_ENVIRONMENT=dev` unless `env` says otherwise, with secrets from
/// `env` only (never this machine's Google project or /run/secrets); killed on drop. It
/// binds port 0 and writes the bound `127.0.0.1:PORT` to its ready file
/// (`BACKEND_READY_FILE`).
pub struct BackendProcess {
    child: Child,
    pub addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl BackendProcess {
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let binary = target_binary(&["gardien-backend"]);
        let dir = tempfile::tempdir().expect("a tempdir for the backend");
        let log = dir.path().join("backend.log");
        let ready = dir.path().join("backend.ready");
        let database = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("backend.db").display()
        );
        let mut command = Command::new(&binary);
        command
            .env("BACKEND_LISTEN", "127.0.0.1:0")
            .env("BACKEND_READY_FILE", &ready)
            .env("DATABASE_URL", &database)
            .env("GARDIEN_ENVIRONMENT", "dev")
            .env("SECRETS_DIR", dir.path().join("secrets"))
            .env_remove("GARDIEN_INTERNAL_SECRET")
            .env_remove("GOOGLE_CLOUD_PROJECT")
            .env_remove("SECRET_MANAGER_PROJECT")
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env("GARDIEN_LOG", "info");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("the backend log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("the backend's stdout");
        // Drained so the child never blocks on a full pipe.
        std::thread::spawn(
            move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {},
        );
        let addr = wait_ready_file(&ready, &mut child, READY_TIMEOUT).await;
        let mut backend = BackendProcess {
            child,
            addr: String::new(),
            log,
            _dir: dir,
        };
        match addr {
            Some(addr) => backend.addr = addr.trim().to_owned(),
            None => panic!(
                "gardien-backend did not write its ready file in {READY_TIMEOUT:?}:\n{}",
                read(&backend.log)
            ),
        }
        backend
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        read(&self.log)
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
