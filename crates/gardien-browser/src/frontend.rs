//! The test frontend: one page ([`PAGE`]) served on loopback origins, whose
//! `window.signUpAndLogIn` signs up, logs in and reads `/api/me` through the gateway with
//! credentialed `fetch`, as the real frontend does; and what a run of it must show.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

/// The page; it exposes `window.signUpAndLogIn(gateway, email, password)`.
pub const PAGE: &str = include_str!("frontend.html");

/// Calls the page's function and hands its summary to WebDriver's callback. A missing
/// function or a thrown error becomes `{fatal}`, so the caller reports it instead of timing out.
const RUN_PAGE_SCRIPT: &str = r#"
const [gateway, email, password, done] = arguments;
if (typeof window.signUpAndLogIn !== "function") {
  done({ fatal: "window.signUpAndLogIn is missing: the page did not load" });
} else {
  window.signUpAndLogIn(gateway, email, password).then(done, (e) => done({ fatal: String(e) }));
}
"#;

/// Binds `port` on both loopback addresses, or `None` if either is taken. Chromium may
/// resolve `localhost` to `::1` first: a dev server holding only `[::1]:5173` must not
/// answer in place of the test page. No IPv6 at all is fine.
pub fn bind_localhost(port: u16) -> Option<Vec<TcpListener>> {
    let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).ok()?;
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
        Ok(v6) => Some(vec![v4, v6]),
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => Some(vec![v4]),
        Err(_) => None,
    }
}

/// An ephemeral port bound on both loopback addresses (see [`bind_localhost`]): the system
/// picks it on 127.0.0.1 and that listener is kept while `::1` is tried on the same port.
pub fn bind_ephemeral_localhost() -> Result<(u16, Vec<TcpListener>), String> {
    for _ in 0..20 {
        let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .map_err(|e| format!("an ephemeral port on 127.0.0.1: {e}"))?;
        let port = v4
            .local_addr()
            .map_err(|e| format!("the bound address: {e}"))?
            .port();
        match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
            Ok(v6) => return Ok((port, vec![v4, v6])),
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                return Ok((port, vec![v4]))
            }
            Err(_) => continue,
        }
    }
    Err("no ephemeral port was free on both 127.0.0.1 and ::1 in 20 tries".to_owned())
}

/// Serves [`PAGE`] at `/` on `listeners` from tasks of the current runtime, for as long as
/// the runtime lives.
pub fn serve(listeners: Vec<TcpListener>) -> Result<(), String> {
    let app = Router::new().route("/", get(|| async { Html(PAGE) }));
    for listener in listeners {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("a non-blocking page listener: {e}"))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("a tokio page listener: {e}"))?;
        let app = app.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    Ok(())
}

/// Loads `origin`'s page in the browser and runs sign-up, login and `/api/me` through
/// `gateway`; returns the page's summary (which never holds the token).
pub async fn sign_up_and_log_in(
    browser: &fantoccini::Client,
    origin: &str,
    gateway: &str,
    email: &str,
    password: &str,
) -> Result<Value, String> {
    browser
        .goto(&format!("{origin}/"))
        .await
        .map_err(|e| format!("loading {origin}/: {e}"))?;
    let summary = browser
        .execute_async(
            RUN_PAGE_SCRIPT,
            vec![json!(gateway), json!(email), json!(password)],
        )
        .await
        .map_err(|e| format!("running the page script on {origin}: {e}"))?;
    match summary.get("fatal") {
        Some(fatal) => Err(format!("the page script on {origin} failed: {fatal}")),
        None => Ok(summary),
    }
}

/// From an allowed origin: sign-up 201, login 200, the page read the token, and `/api/me`
/// with it answered 200 with the new account's id and email, signed by the gateway.
pub fn expect_signed_in(summary: &Value, origin: &str, email: &str) -> Result<(), String> {
    if summary["registeredId"].as_str().is_none_or(str::is_empty) {
        return Err(format!(
            "sign-up returned no account id; the page saw {summary}"
        ));
    }
    let checks = [
        ("the page's origin", &summary["origin"], json!(origin)),
        ("sign-up status", &summary["register"]["status"], json!(201)),
        ("login status", &summary["login"]["status"], json!(200)),
        ("token read by the page", &summary["tokenRead"], json!(true)),
        ("/api/me status", &summary["me"]["status"], json!(200)),
        (
            "/api/me user id",
            &summary["me"]["userId"],
            summary["registeredId"].clone(),
        ),
        ("/api/me email", &summary["me"]["email"], json!(email)),
        (
            "/api/me identity signed",
            &summary["me"]["signed"],
            json!(true),
        ),
    ];
    expect_all(&checks, summary)
}

/// From a refused origin: the browser itself blocked sign-up and login (a `TypeError`,
/// "Failed to fetch": no status reached the page), so the page never saw a token.
pub fn expect_blocked(summary: &Value, origin: &str) -> Result<(), String> {
    let mut checks = vec![("the page's origin", &summary["origin"], json!(origin))];
    for (step, value) in [
        ("sign-up", &summary["register"]),
        ("login", &summary["login"]),
    ] {
        checks.push((step, &value["status"], Value::Null));
        checks.push((step, &value["error"]["name"], json!("TypeError")));
        checks.push((step, &value["error"]["message"], json!("Failed to fetch")));
    }
    checks.push((
        "token read by the page",
        &summary["tokenRead"],
        json!(false),
    ));
    expect_all(&checks, summary)
}

/// `Ok` when every `(what, seen, wanted)` matches; otherwise every mismatch, and the summary.
fn expect_all(checks: &[(&str, &Value, Value)], summary: &Value) -> Result<(), String> {
    let wrong: Vec<String> = checks
        .iter()
        .filter(|(_, seen, wanted)| *seen != wanted)
        .map(|(what, seen, wanted)| format!("{what}: {seen}, expected {wanted}"))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; the page saw {summary}", wrong.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_in() -> Value {
        json!({
            "origin": "http://localhost:5173",
            "register": {"status": 201, "error": null},
            "login": {"status": 200, "error": null},
            "tokenRead": true,
            "registeredId": "u1",
            "me": {"status": 200, "error": null, "userId": "u1", "email": "a@example.com", "signed": true},
        })
    }

    #[test]
    fn a_full_sign_in_passes_and_each_missing_part_is_named() {
        let good = signed_in();
        assert_eq!(
            expect_signed_in(&good, "http://localhost:5173", "a@example.com"),
            Ok(())
        );
        let mut other_user = good.clone();
        other_user["me"]["userId"] = json!("u2");
        let reason = expect_signed_in(&other_user, "http://localhost:5173", "a@example.com")
            .expect_err("another user's id fails");
        assert!(reason.starts_with("/api/me user id: \"u2\""), "{reason}");
        let mut unsigned = good;
        unsigned["me"]["signed"] = json!(false);
        let reason = expect_signed_in(&unsigned, "http://localhost:5173", "a@example.com")
            .expect_err("an unsigned identity fails");
        assert!(reason.contains("identity signed: false"), "{reason}");
    }

    #[test]
    fn a_blocked_origin_must_see_no_status_at_all() {
        let error = json!({"name": "TypeError", "message": "Failed to fetch"});
        let blocked = json!({
            "origin": "http://localhost:4000",
            "register": {"status": null, "error": error},
            "login": {"status": null, "error": error},
            "tokenRead": false,
        });
        assert_eq!(expect_blocked(&blocked, "http://localhost:4000"), Ok(()));
        let reached = signed_in();
        let reason = expect_blocked(&reached, "http://localhost:5173").expect_err("reached");
        assert!(reason.contains("sign-up: 201, expected null"), "{reason}");
    }
}
