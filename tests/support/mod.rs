//! Test support: a recording upstream, the real `gardien` binary started on ephemeral
//! loopback ports, and small HTTP helpers. Every integration test starts real processes.
//!
//! No port is picked by binding and releasing it (another test could take it in between):
//! processes bind port 0 and report the port (`gardien run --ready-file`), and in-process
//! servers hold their listener.

#![allow(dead_code)] // each test file uses a different part of this module

pub mod browser;
pub mod jwt;
pub mod processes;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// A loopback address where nothing listens (connections are refused) for as long as the
/// value lives: a socket bound to port 0 that never listens holds the port.
pub struct RefusingAddress {
    pub addr: SocketAddr,
    _socket: socket2::Socket,
}

impl RefusingAddress {
    pub fn new() -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        socket.bind(&any.into()).expect("bind port 0");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("the bound address");
        RefusingAddress {
            addr,
            _socket: socket,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Waits up to `timeout` for the ready file a child writes once it listens, while `child`
/// runs; `None` if it exited or the time ran out.
pub async fn wait_ready_file(path: &Path, child: &mut Child, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        // Written with a rename: present means complete.
        if let Ok(text) = std::fs::read_to_string(path) {
            return Some(text);
        }
        if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The request target as received: path and query, byte for byte.
    pub target: String,
    /// The gateway's end of the connection: distinct values = distinct connections.
    pub peer: SocketAddr,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: HashMap<String, String>,
}

/// An HTTP upstream on loopback that records every request and answers like the existing
/// Express API (`Access-Control-Allow-Origin: *`, `X-Powered-By: Express`).
///
/// Paths: `…/slow/<ms>` answers after that delay; `…/status/<code>` answers that status;
/// anything else answers 200 with `{"method","path"}`.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RecordingUpstream {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(record).with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        RecordingUpstream {
            addr,
            seen,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Seen {
        self.requests().pop().expect("the upstream saw a request")
    }

    /// Stops listening; connections already open are closed when their requests end.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

async fn record(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let mut headers: HashMap<String, String> = HashMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let path = request.uri().path().to_owned();
    let target = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    seen.lock().expect("lock").push(Seen {
        method: method.clone(),
        path: path.clone(),
        target,
        peer,
        headers,
    });
    let mut status = StatusCode::OK;
    if let Some(ms) = path
        .split_once("/slow/")
        .and_then(|(_, ms)| ms.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path
        .split_once("/status/")
        .and_then(|(_, c)| c.parse().ok())
    {
        status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    }
    let mut response = (
        status,
        axum::Json(serde_json::json!({"method": method, "path": path})),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("*"),
    );
    h.insert("x-powered-by", HeaderValue::from_static("Express"));
    h.insert("server", HeaderValue::from_static("Express/4.19"));
    h.insert("vary", HeaderValue::from_static("Accept-Encoding"));
    response
}

/// A policy for tests of the foundation (every route public; the JWT tests have their own):
/// the upstreams come from `API_UPSTREAM_URL` / `BACKEND_UPSTREAM_URL`,
/// listeners from `GARDIEN_LISTEN` / `GARDIEN_ADMIN_LISTEN`.
pub const TEST_POLICY: &str = r#"
environment: dev
listen: "${GARDIEN_LISTEN}"
admin_listen: "${GARDIEN_ADMIN_LISTEN}"
upstreams:
  api: { url: "${API_UPSTREAM_URL}", connect_timeout: 1s, read_timeout: 1s }
  backend: { url: "${BACKEND_UPSTREAM_URL}", connect_timeout: 1s, read_timeout: 1s }
routes:
  - { name: auth, prefix: /api/auth/, upstream: api, auth: public }
  - { name: reports, prefix: /api/reports, upstream: backend, auth: public }
  - { name: api, prefix: /api/, upstream: api, auth: public }
  - { name: readonly, prefix: /readonly, upstream: api, methods: [GET, HEAD], auth: public }
cors:
  origins:
    - "http://localhost:5173"
    - "https://app.example.com"
    - "https://*.example.com"
    - "https://*.partner.test:8443"
  origins_from_env: [FRONTEND_URL]
  credentials: true
  methods: [GET, HEAD, POST, PUT, PATCH, DELETE]
  headers: [Authorization, Content-Type, X-Request-Id, If-Match]
  expose: [X-Request-Id, ETag]
  max_age: 600s
server: { threads: 1, graceful_shutdown_timeout: 1s }
"#;

/// The real `gardien run` in a child process, killed on drop.
pub struct GatewayProcess {
    child: Child,
    policy: PathBuf,
    pub base: String,
    pub admin: String,
    log: PathBuf,
    ready: PathBuf,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts `gardien run` with `policy` (YAML text) and `env`, and waits for `/healthz`.
    pub async fn start(policy: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, policy).expect("write policy");
        Self::start_file(&path, env, dir).await
    }

    /// Starts `policy` with both `api` and `backend` sent to `upstream`.
    pub async fn with_upstream(policy: &str, upstream: &RecordingUpstream) -> Self {
        let url = upstream.url();
        Self::start(
            policy,
            &[("API_UPSTREAM_URL", &url), ("BACKEND_UPSTREAM_URL", &url)],
        )
        .await
    }

    /// Starts `gardien run --policy <path>` (a shipped policy, for instance) on port 0 for
    /// both listeners (`GARDIEN_LISTEN`, `GARDIEN_ADMIN_LISTEN`, unless `env` sets them), and
    /// waits for its ready file and `/healthz`.
    pub async fn start_file(path: &Path, env: &[(&str, &str)], dir: tempfile::TempDir) -> Self {
        Self::start_binary(Path::new(env!("CARGO_BIN_EXE_gardien")), path, env, dir).await
    }

    /// [`Self::start_file`] with another build of `gardien` (the release build of
    /// [`release_binary`]).
    pub async fn start_binary(
        binary: &Path,
        path: &Path,
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
    ) -> Self {
        let mut gateway = Self::spawn(binary, path, env, &[], dir);
        gateway.wait_started().await;
        gateway
    }

    /// Spawns `gardien run --policy <path> --ready-file … <args>` and returns at once (its
    /// addresses are unknown until [`Self::wait_started`]): for a start that needs something
    /// else to happen first (`--upgrade` waits for the old process's sockets).
    pub fn spawn(
        binary: &Path,
        path: &Path,
        env: &[(&str, &str)],
        args: &[&std::ffi::OsStr],
        dir: tempfile::TempDir,
    ) -> Self {
        let log = dir.path().join("gardien.log");
        let ready = dir.path().join("gardien.ready");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(binary);
        command
            .args(["run", "--policy"])
            .arg(path)
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            .env_remove("FRONTEND_URL")
            // Secrets come from `env` only, never from this machine's Google project or
            // /run/secrets (tests that want files or Secret Manager set these).
            .env_remove("GOOGLE_CLOUD_PROJECT")
            .env_remove("SECRET_MANAGER_PROJECT")
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env("SECRETS_DIR", dir.path().join("secrets"))
            .env("GARDIEN_LISTEN", "127.0.0.1:0")
            .env("GARDIEN_ADMIN_LISTEN", "127.0.0.1:0")
            .env("GARDIEN_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log_file);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("spawn gardien");
        GatewayProcess {
            child,
            policy: path.to_path_buf(),
            base: String::new(),
            admin: String::new(),
            log,
            ready,
            _dir: dir,
        }
    }

    /// Waits (30 s at most) for the ready file of a [`Self::spawn`]ed gateway, takes its
    /// addresses, and waits for `/healthz`.
    pub async fn wait_started(&mut self) {
        let ready = self.ready.clone();
        let Some(text) = wait_ready_file(&ready, &mut self.child, Duration::from_secs(30)).await
        else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "gardien did not write its ready file in 30s:\n{}",
                self.log()
            );
        };
        let address = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .unwrap_or_else(|| panic!("`{key}` in the ready file: {text:?}"))
                .to_owned()
        };
        self.base = format!("http://{}", address("listen="));
        self.admin = format!("http://{}", address("admin_listen="));
        self.wait_healthy().await;
    }

    /// Sends a signal (`"QUIT"`, `"TERM"`, `"HUP"`…) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.child.id());
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = client();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "gardien exited with {status} before it was healthy:\n{}",
                    self.log()
                );
            }
            let healthy = client
                .get(format!("{}/healthz", self.admin))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            let proxy_up = TcpStream::connect(self.base.trim_start_matches("http://")).is_ok();
            if healthy && proxy_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gardien not healthy in 30s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The policy file the gateway serves (tests rewrite it to exercise reloads).
    pub fn policy_path(&self) -> &Path {
        &self.policy
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin)
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics text")
    }

    /// One sample of `/metrics`, named exactly as exposed (`name{label="v",…}`); 0 when
    /// the series is absent.
    pub async fn metric(&self, series: &str) -> f64 {
        series_value(&self.metrics().await, series)
    }

    /// `GET` an admin path: the status and the JSON body.
    pub async fn admin_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = client()
            .get(self.admin_url(path))
            .send()
            .await
            .expect("admin request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// `host:port` of the proxy listener.
    pub fn proxy_addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `.rs` folders the `gardien` binary is built from (its crate and the workspace crates
/// it links): what [`release_binary`] compares the build's age with.
pub const GATEWAY_SOURCES: &[&str] = &[
    "src",
    "crates/gardien-errors/src",
    "crates/gardien-identity/src",
    "crates/gardien-secrets/src",
    "crates/gardien-telemetry/src",
];

/// The `.rs` folders the `gardien-backend` binary is built from.
pub const BACKEND_SOURCES: &[&str] = &[
    "backend/src",
    "crates/gardien-errors/src",
    "crates/gardien-identity/src",
    "crates/gardien-secrets/src",
    "crates/gardien-telemetry/src",
];

/// The `.rs` folders the `gardien-staging-check` binary is built from.
pub const STAGING_CHECK_SOURCES: &[&str] = &[
    "crates/gardien-staging-check/src",
    "crates/gardien-browser/src",
];

/// The release build of the workspace binary `name` (`target/release/<name>`, next to the
/// debug build this test was built with). Panics, saying what to run, when it is missing or
/// older than a `.rs` file under `sources` (folders of the workspace): a test of the
/// release build must not pass on an old one. `make test` builds it first (`cargo build
/// --release --bins`).
pub fn release_binary(name: &str, sources: &[&str]) -> PathBuf {
    let debug = Path::new(env!("CARGO_BIN_EXE_gardien"));
    let target = debug
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let binary = target.join("release").join(name);
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: this test runs the release build; run `cargo build --release --workspace --bins` (make test does)",
                binary.display()
            )
        });
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some((at, source)) = newest_source(workspace, sources) {
        assert!(
            at <= built,
            "{} is older than {}: run `cargo build --release --workspace --bins` (make test does)",
            binary.display(),
            source.display()
        );
    }
    binary
}

/// The most recently modified `.rs` file under `sources`.
fn newest_source(workspace: &Path, sources: &[&str]) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut folders: Vec<PathBuf> = sources.iter().map(|s| workspace.join(s)).collect();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let at = entry.metadata().and_then(|m| m.modified());
                if let Ok(at) = at {
                    if newest.as_ref().is_none_or(|(t, _)| at > *t) {
                        newest = Some((at, path));
                    }
                }
            }
        }
    }
    newest
}

/// One sample of a Prometheus text exposition, 0 when the series is absent.
pub fn series_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .map_or(0.0, |value| {
            value.trim().parse().expect("a numeric metric value")
        })
}

/// A client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A header's value as text, or `None`.
pub fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Every value of a header.
pub fn header_all(headers: &reqwest::header::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Sends raw bytes and reads the raw answer (for requests `reqwest` refuses to build).
/// Returns the status line's code, or `None` if the gateway closed without answering.
/// Async, so an upstream running on the test's own runtime keeps answering meanwhile.
pub async fn raw_request(addr: &str, request: &[u8]) -> (Option<u16>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The gateway may close before reading all of a huge request; that is an answer too.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, text)
}

/// Parses a JSON error body and checks its documented shape; returns `(code, request_id)`.
pub fn error_shape(body: &str) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
    let error = json.get("error").expect("an `error` object");
    let code = error["code"].as_str().expect("code").to_owned();
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let id = error["request_id"].as_str().expect("request_id").to_owned();
    assert!(!id.is_empty());
    (code, id)
}

/// Header names (lower-case) present in a response.
pub fn header_names(headers: &HeaderMap) -> Vec<String> {
    headers.keys().map(|k| k.as_str().to_owned()).collect()
}
