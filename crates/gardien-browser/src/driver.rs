//! `chromedriver` in its own process group, and WebDriver sessions on headless Chromium.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The Debian browser; not a downloaded one, so it matches the driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver`, built from the same source as `CHROMIUM`.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long one `execute_async` may run: three fetches plus argon2 on a debug build.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long chromedriver and a session get to start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The browser window: what a screenshot shows.
pub const WINDOW: (u32, u32) = (1000, 900);

/// Which of the browser and its driver is missing, and the Debian package that has it
/// (`scripts/install-deps.sh test` installs both); `None` when both are there.
pub fn missing_browser() -> Option<String> {
    [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")]
        .into_iter()
        .find(|(path, _)| !Path::new(path).exists())
        .map(|(path, package)| format!("{path} is missing (Debian package `{package}`)"))
}

/// `chromedriver` in its own process group, killed with every browser process it started
/// on drop: closing the session is the normal way out, this is the backstop.
pub struct ChromeDriver {
    child: Child,
    port: u16,
    log: PathBuf,
    /// Chromium's profile, fresh per run so no state leaks between runs.
    profile: PathBuf,
    /// Holds the log and the profile; dropped after `Drop::drop` ended the processes.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for ChromeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChromeDriver")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl ChromeDriver {
    /// Starts chromedriver on a port it picks (`--port=0`) and reports on stdout.
    pub async fn start() -> Result<Self, String> {
        if let Some(missing) = missing_browser() {
            return Err(missing);
        }
        let dir = tempfile::tempdir().map_err(|e| format!("a tempdir for chromedriver: {e}"))?;
        let (log, profile) = (
            dir.path().join("chromedriver.log"),
            dir.path().join("profile"),
        );
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own group, so drop can end chromedriver and every Chromium process at once.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn {CHROMEDRIVER}: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err("chromedriver's stdout was not piped".to_owned());
        };
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        // Reads the port line, then drains stdout so chromedriver never blocks on it.
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut port_tx = Some(port_tx);
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let port = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok());
                if let Some(port) = port {
                    if let Some(tx) = port_tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let mut driver = ChromeDriver {
            child,
            port: 0,
            log,
            profile,
            _dir: dir,
        };
        // From here on, an early return drops `driver`, which kills chromedriver.
        driver.port = match tokio::time::timeout(READY_TIMEOUT, port_rx).await {
            Ok(Ok(port)) => port,
            Ok(Err(_)) => {
                return Err(format!(
                    "chromedriver closed its stdout without reporting its port:\n{}",
                    driver.log_tail()
                ))
            }
            Err(_) => {
                return Err(format!(
                    "chromedriver did not report its port within {READY_TIMEOUT:?}:\n{}",
                    driver.log_tail()
                ))
            }
        };
        driver.wait_listening().await?;
        Ok(driver)
    }

    /// Waits until chromedriver accepts TCP connections, or exits.
    async fn wait_listening(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "chromedriver exited with {status} before listening:\n{}",
                    self.log_tail()
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "chromedriver not listening on {addr} within {READY_TIMEOUT:?}:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens a WebDriver session, which launches headless Chromium.
    pub async fn session(&self) -> Result<fantoccini::Client, String> {
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    // Containers run as root without user namespaces: no sandbox possible.
                    "--no-sandbox",
                    "--disable-gpu",
                    // The Debian wrapper's /dev/shm size check misparses `findmnt` output
                    // on some hosts; a small /dev/shm would crash tabs. Use /tmp instead.
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    // No calls home: the check must work offline and stay quiet.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                    // An HTTP(S)_PROXY in the environment must not carry loopback traffic.
                    "--no-proxy-server",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    "--hide-scrollbars",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            }),
        );
        // Keeps the page's console (CSP violations land there) for [`browser_log`].
        capabilities.insert("goog:loggingPrefs".to_owned(), json!({"browser": "ALL"}));
        capabilities.insert(
            "timeouts".to_owned(),
            json!({
                "script": SCRIPT_TIMEOUT.as_millis() as u64,
                "pageLoad": 15_000,
                "implicit": 0,
            }),
        );
        let url = format!("http://127.0.0.1:{}", self.port);
        // The workspace enables both of rustls' crypto providers (pingora brings `ring`,
        // hyper-rustls `aws-lc-rs`), so rustls cannot pick one itself: install pingora's
        // choice, as the gateway does. An `Err` means one is installed already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = fantoccini::ClientBuilder::rustls()
            .map_err(|e| format!("a rustls WebDriver connector: {e}"))?;
        builder.capabilities(capabilities);
        match tokio::time::timeout(READY_TIMEOUT, builder.connect(&url)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(format!(
                "WebDriver session on {url}: {e}\n{}",
                self.log_tail()
            )),
            Err(_) => Err(format!(
                "no WebDriver session within {READY_TIMEOUT:?}\n{}",
                self.log_tail()
            )),
        }
    }

    /// The end of chromedriver's log, which says why Chromium did not start.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        log[start..].to_owned()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // Negative pid = the whole process group that `process_group(0)` created.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser console's entries since the last call (chromedriver's log endpoint; needs
/// the `goog:loggingPrefs` the session asks for): `{level, message, source, timestamp}`.
pub async fn browser_log(browser: &fantoccini::Client) -> Result<Vec<Value>, String> {
    let entries = browser
        .issue_cmd(BrowserLog)
        .await
        .map_err(|e| format!("reading the browser log: {e}"))?;
    match entries {
        Value::Array(entries) => Ok(entries),
        other => Err(format!("the browser log is not a list: {other}")),
    }
}

/// chromedriver's `POST /session/{id}/se/log` with `{"type": "browser"}`.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}
