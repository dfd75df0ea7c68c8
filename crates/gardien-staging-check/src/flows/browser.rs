//! The frontend's own view: headless Chromium loads the test frontend page from the allowed
//! origin and signs up, logs in and reads `/api/me` through gardien with credentialed
//! `fetch`; from the refused origin the browser itself blocks both calls. Local control:
//! both origins must serve `gardien-test-frontend`'s page (the local stack does), and
//! Debian's `chromium` and `chromium-driver` must be installed.

use std::time::Duration;

use gardien_browser::{frontend, ChromeDriver};

use super::{Context, User};
use crate::http;

/// How long closing the WebDriver session may take before the driver is killed anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Logins tried for the refused user while the login rule answers 429.
const LOGIN_ATTEMPTS: usize = 4;
/// The longest `Retry-After` waited for (staging's login rule asks for a few seconds).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Signs a fresh user up and in from the allowed origin in the browser, then has the
/// browser try the same from the refused origin, and proves that sign-up never reached the
/// API (its login is refused with 401).
pub async fn sign_up_and_login(ctx: &Context) -> Result<(), String> {
    let driver = ChromeDriver::start().await?;
    let browser = driver.session().await?;
    let allowed_user = User::fresh("browser");
    let refused_user = User::fresh("browser-refused");
    // Both runs first, then close the session, then judge: a failure never leaves a
    // browser behind (dropping the driver kills it in any case).
    let allowed = frontend::sign_up_and_log_in(
        &browser,
        &ctx.origin,
        &ctx.base,
        &allowed_user.email,
        &allowed_user.password,
    )
    .await;
    let refused = frontend::sign_up_and_log_in(
        &browser,
        &ctx.refused_origin,
        &ctx.base,
        &refused_user.email,
        &refused_user.password,
    )
    .await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, browser.close()).await;
    drop(driver);
    frontend::expect_signed_in(&allowed?, &ctx.origin, &allowed_user.email)
        .map_err(|e| format!("from {}: {e}", ctx.origin))?;
    frontend::expect_blocked(&refused?, &ctx.refused_origin)
        .map_err(|e| format!("from {}: {e}", ctx.refused_origin))?;
    // The run has logged in several times by now from this one address: the login rule
    // may answer 429 first. Its `Retry-After` is honoured (bounded), so the answer that
    // counts is the API's own.
    for _ in 0..LOGIN_ATTEMPTS {
        let login = http::send(
            ctx.client
                .post(ctx.url("/api/auth/login"))
                .header("Origin", &ctx.origin)
                .json(&serde_json::json!({
                    "email": refused_user.email,
                    "password": refused_user.password,
                })),
        )
        .await?;
        if login.status.as_u16() == 429 {
            let wait = login
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, MAX_RETRY_AFTER.as_secs());
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        return login
            .expect(401, "the blocked sign-up must not exist: its login")
            .map(|_| ());
    }
    Err(format!(
        "the login rule still answered 429 after {LOGIN_ATTEMPTS} attempts"
    ))
}
