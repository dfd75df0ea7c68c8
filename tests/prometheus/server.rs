//! A real Prometheus (Debian's `/usr/bin/prometheus`) in a child process on loopback, with
//! its HTTP API. It binds port 0 and logs the port it got (`msg="Listening on"
//! address=127.0.0.1:PORT`); the address is taken from that line, and the API used only after
//! `Server is ready to receive web requests.`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

/// Where Debian's `prometheus` package installs the server (`scripts/install-deps.sh test`).
pub const BINARY: &str = "/usr/bin/prometheus";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Panics, saying how to install it, when the Prometheus server is missing: the test must
/// not pass without having run.
pub fn require_binary() {
    assert!(
        Path::new(BINARY).exists(),
        "{BINARY} is missing: this test needs a real Prometheus; install Debian's \
         `prometheus` package (`scripts/install-deps.sh test`, which `make test` runs)"
    );
}

/// A running Prometheus; killed on drop.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes `config` (`prometheus.yml`) and `rules` (`alerts.yaml`, which `config` names
    /// in `rule_files` relative to itself) to a fresh directory, starts Prometheus on them
    /// with its storage there, and waits until it is ready.
    pub async fn start(config: &str, rules: &str) -> Prometheus {
        require_binary();
        let dir = tempfile::tempdir().expect("a tempdir for Prometheus");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        std::fs::write(dir.path().join("alerts.yaml"), rules).expect("write alerts.yaml");
        let mut child = Command::new(BINARY)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BINARY}: {e}"));
        let stderr = child.stderr.take().expect("Prometheus' stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();
        let lines = Arc::clone(&log);
        // Reads the address, then the readiness line, then drains stderr (kept for failure
        // messages) so Prometheus never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            let mut address = None;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if address.is_none() {
                    address = listening_address(&line);
                }
                if line.contains("Server is ready to receive web requests.") {
                    if let (Some(tx), Some(addr)) = (ready_tx.take(), address.clone()) {
                        let _ = tx.send(addr);
                    }
                }
                lines.lock().push(line);
            }
        });
        let mut prometheus = Prometheus {
            child,
            base: String::new(),
            log,
            _dir: dir,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(addr)) => prometheus.base = format!("http://{addr}"),
            Ok(Err(_)) => panic!(
                "Prometheus exited before it was ready:\n{}",
                prometheus.log()
            ),
            Err(_) => panic!(
                "Prometheus not ready in {READY_TIMEOUT:?}:\n{}",
                prometheus.log()
            ),
        }
        prometheus
    }

    /// Everything Prometheus logged so far.
    pub fn log(&self) -> String {
        self.log.lock().join("\n")
    }

    /// `GET` an API path with query parameters; the `data` of a `success` answer, or the
    /// error Prometheus gave (its `errorType: error`, or the transport's).
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.base), params)
            .map_err(|e| format!("url: {e}"))?;
        let response = crate::support::client()
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("GET {path}: {status}, not JSON: {e}"))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!(
                "{status}: {}: {}",
                body["errorType"].as_str().unwrap_or("?"),
                body["error"].as_str().unwrap_or("?")
            ))
        }
    }

    /// An instant query: its result vector (or scalar, as a one-element list).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await?;
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar" | "string") => Ok(vec![data["result"].clone()]),
            other => Err(format!("unexpected resultType {other:?}: {data}")),
        }
    }

    /// The alerts pending or firing now (`/api/v1/alerts`).
    pub async fn alerts(&self) -> Vec<Value> {
        match self.api("/api/v1/alerts", &[]).await {
            Ok(data) => data["alerts"].as_array().cloned().unwrap_or_default(),
            Err(e) => panic!("/api/v1/alerts: {e}\n{}", self.log()),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `address=` of Prometheus' `msg="Listening on"` line (the port it bound).
fn listening_address(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(r#"msg="Listening on""#)?;
    let (_, rest) = rest.split_once("address=")?;
    let addr = rest.split_whitespace().next()?;
    addr.starts_with("127.0.0.1:").then(|| addr.to_owned())
}

#[test]
fn the_listening_line_gives_the_bound_address() {
    let line = r#"ts=2026-01-01T10:46:23.449Z caller=tls_config.go:232 level=info component=web msg="Listening on" address=127.0.0.1:42733"#;
    assert_eq!(listening_address(line).as_deref(), Some("127.0.0.1:42733"));
    let before = r#"ts=… level=info component=web msg="Start listening for connections" address=127.0.0.1:0"#;
    assert_eq!(listening_address(before), None);
}
