//! The shared browser (`crates/gardien-browser`: headless Debian Chromium through
//! chromedriver) for the tests that need one (`tests/browser.rs`, `tests/status_page.rs`),
//! with its failures turned into panics.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`make test` installs them); a
//! missing browser fails the test rather than skipping it.

// Each test file uses a different part (see `support`'s `allow(dead_code)`).
#[allow(unused_imports)]
pub use gardien_browser::{browser_log, frontend};

/// Fails (never skips) when the browser is missing: a skipped browser test looks green.
pub fn require_browser() {
    if let Some(missing) = gardien_browser::missing_browser() {
        panic!("{missing}: run `make test`, which installs it");
    }
}

/// chromedriver and one headless Chromium session on it, or a panic saying why not.
/// Keep the driver alive while the session is used: dropping it kills the browser.
pub async fn browser_session() -> (gardien_browser::ChromeDriver, fantoccini::Client) {
    let driver = gardien_browser::ChromeDriver::start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let session = driver.session().await.unwrap_or_else(|e| panic!("{e}"));
    (driver, session)
}
