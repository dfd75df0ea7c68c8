//! A real browser for gardien's checks: headless Debian Chromium driven over WebDriver by
//! Debian's `chromedriver` ([`ChromeDriver`]), and the frontend page it loads from another
//! origin ([`frontend`]). `tests/browser.rs`, `tests/status_page.rs` and the staging check's
//! `browser_signup_login` flow share it, so the browser is started one way everywhere.
//!
//! Every function returns its failure as text instead of panicking: a test turns it into a
//! panic, the staging check into a `FAIL` line.

mod driver;
pub mod frontend;

pub use driver::{browser_log, missing_browser, ChromeDriver};
pub use driver::{CHROMEDRIVER, CHROMIUM, READY_TIMEOUT, SCRIPT_TIMEOUT, WINDOW};
