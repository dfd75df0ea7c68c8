//! Headless Debian Chromium driven over WebDriver by `chromedriver` (fantoccini), for the
//! tests that need a real browser (`tests/browser.rs`, `tests/status_page.rs`).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`make test` installs them); a
//! missing browser fails the test rather than skipping it.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The Debian browser the tests drive; not a downloaded one, so it matches the driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver`, built from the same source as `CHROMIUM`.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long one `execute_async` may run: two fetches plus argon2 on a debug build.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long chromedriver and a session get to start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The browser window: what a screenshot shows.
pub const WINDOW: (u32, u32) = (1000, 900);

/// Fails (never skips) when the browser is missing: a skipped browser test looks green.
pub fn require_browser() {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: run `make test`, which installs Debian `{package}`"
        );
    }
}

/// Waits until something accepts TCP connections on `addr`, or `child` exits.
async fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening:\n{}",
                read(log)
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening on {addr} within {READY_TIMEOUT:?}:\n{}",
            read(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A log file's text, for failure messages.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
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

impl ChromeDriver {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a tempdir for chromedriver and Chromium");
        let (log, profile) = (
            dir.path().join("chromedriver.log"),
            dir.path().join("profile"),
        );
        // Port 0: chromedriver binds a free port and prints it on stdout.
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own group, so drop can end chromedriver and every Chromium process at once.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {CHROMEDRIVER}: {e}"));
        let stdout = child.stdout.take().expect("chromedriver's stdout");
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
        let port = match tokio::time::timeout(READY_TIMEOUT, port_rx).await {
            Ok(Ok(port)) => port,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromedriver did not report its port:\n{}", read(&log));
            }
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        wait_listening(addr, &mut child, "chromedriver", &log).await;
        ChromeDriver {
            child,
            port,
            log,
            profile,
            _dir: dir,
        }
    }

    /// Opens a WebDriver session, which launches headless Chromium.
    pub async fn session(&self) -> fantoccini::Client {
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
                    // No calls home: the test must work offline and stay quiet.
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
        // The build enables both of rustls' crypto providers (pingora brings `ring`, hyper-rustls
        // `aws-lc-rs`), so rustls cannot pick one itself: install pingora's choice, as the
        // gateway does. A no-op when already installed.
        pingora::tls::install_default_crypto_provider();
        let mut builder =
            fantoccini::ClientBuilder::rustls().expect("a rustls WebDriver connector");
        builder.capabilities(capabilities);
        match tokio::time::timeout(READY_TIMEOUT, builder.connect(&url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("WebDriver session on {url}: {e}\n{}", self.log_tail()),
            Err(_) => panic!(
                "no WebDriver session within {READY_TIMEOUT:?}\n{}",
                self.log_tail()
            ),
        }
    }

    /// The end of chromedriver's log, which says why Chromium did not start.
    pub fn log_tail(&self) -> String {
        let log = read(&self.log);
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
