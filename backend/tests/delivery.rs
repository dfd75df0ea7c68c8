//! Delivery end to end, in-process, on SQLite and PostgreSQL: real workers and real
//! providers against the fake SendGrid, Twilio and SMTP servers. Email through SendGrid;
//! SendGrid 503 then SMTP; SendGrid 429 with its reset honoured; Twilio 21211 failing
//! without fallback; Twilio primary down then secondary; refused credentials opening the
//! circuit; every provider down (retries, then failed, every attempt recorded); preferences
//! (skipped, nothing sent); quiet hours (held, then sent; security not held); sandbox and
//! log modes; a channel the operator turned off (skipped, `channel_off`).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gardien_backend::delivery::config::NotifyMode;
use serde_json::json;
use support::delivery::*;
use support::Engine;

const SETTLE: Duration = Duration::from_secs(20);

/// One async scenario as a SQLite test and a PostgreSQL test.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Engine::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(super::Engine::Postgres).await
            }
        }
    };
}

async fn live(engine: Engine, fakes: &Fakes, args: &[&str]) -> DeliveryApp {
    DeliveryApp::start(engine, NotifyMode::Live, fakes.env(), fakes.secrets(), args).await
}

fn ada(extra: serde_json::Value) -> serde_json::Value {
    let mut body = json!({"user_id": "ada", "template_key": "welcome", "variables": {"name": "Ada"},
                          "to": {"email": "ada@example.com"}});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn email_goes_through_sendgrid(engine: Engine) {
    let fakes = Fakes::start().await;
    let app = live(engine, &fakes, &[]).await;
    app.template(email_template("welcome", "account")).await;
    let id = app.send(ada(json!({}))).await;
    let view = app.settled(&id, SETTLE).await;
    let email = channel(&view, "email");
    assert_eq!(email["status"], "sent", "{view:#}");
    assert_eq!(email["provider"], "sendgrid");
    assert_eq!(email["sandbox"], false);
    assert_eq!(attempts(email), [("sendgrid".into(), "accepted".into())]);
    let deliveries = fakes.sendgrid.deliveries();
    assert_eq!(deliveries.len(), 1);
    let delivered = &deliveries[0];
    assert_eq!(email["provider_message_id"], delivered.message_id.as_str());
    assert_eq!(delivered.to, "ada@example.com");
    assert_eq!(delivered.subject, "Hello Ada");
    assert_eq!(delivered.html.as_deref(), Some("<p>Hello Ada</p>"));
    assert_eq!(delivered.custom_args["notification_id"], id.as_str());
    assert!(fakes.smtp.messages().is_empty());
    app.metrics_with(&[
        r#"gardien_backend_delivery_attempts_total{outcome="accepted",provider="sendgrid"} 1"#,
        r#"gardien_backend_deliveries_total{channel="email",reason="",status="sent"} 1"#,
    ])
    .await;
    app.finish().await;
}
on_both!(email_goes_through_sendgrid);

async fn sendgrid_503_falls_back_to_smtp(engine: Engine) {
    let fakes = Fakes::start().await;
    fakes.sendgrid.fail_next(100, 503);
    let app = live(engine, &fakes, &[]).await;
    app.template(email_template("welcome", "account")).await;
    let id = app.send(ada(json!({}))).await;
    let view = app.settled(&id, SETTLE).await;
    let email = channel(&view, "email");
    assert_eq!(email["status"], "sent", "{view:#}");
    assert_eq!(email["provider"], "smtp");
    let expected: Vec<(String, String)> = [
        ("sendgrid", "retryable"),
        ("sendgrid", "retryable"),
        ("sendgrid", "retryable"),
        ("smtp", "accepted"),
    ]
    .iter()
    .map(|(p, o)| (p.to_string(), o.to_string()))
    .collect();
    assert_eq!(attempts(email), expected);
    assert_eq!(email["attempts"][0]["status"], 503);
    assert!(fakes.sendgrid.deliveries().is_empty());
    let mails = fakes.smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_to, ["ada@example.com"]);
    assert_eq!(
        mails[0].header("X-Gardien-Notification-Id").as_deref(),
        Some(id.as_str())
    );
    app.metrics_with(&[
        r#"gardien_backend_provider_failovers_total{channel="email",from="sendgrid",to="smtp"} 1"#,
    ])
    .await;
    app.finish().await;
}
on_both!(sendgrid_503_falls_back_to_smtp);

async fn sendgrid_429_reset_is_honoured(engine: Engine) {
    let fakes = Fakes::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let reset = now + 2;
    fakes.sendgrid.rate_limit(1, reset);
    let app = live(engine, &fakes, &[]).await;
    app.template(email_template("welcome", "account")).await;
    let id = app.send(ada(json!({}))).await;
    let view = app.settled(&id, SETTLE).await;
    let email = channel(&view, "email");
    assert_eq!(email["status"], "sent", "{view:#}");
    assert_eq!(
        email["provider"], "sendgrid",
        "the reset is waited for, not fallen back from"
    );
    assert_eq!(
        attempts(email),
        [
            ("sendgrid".to_string(), "retryable".to_string()),
            ("sendgrid".to_string(), "accepted".to_string())
        ]
    );
    assert_eq!(email["attempts"][0]["status"], 429);
    let requests = fakes.sendgrid.requests();
    assert_eq!(requests.len(), 2);
    let retried_at = requests[1]
        .received_at_system
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        retried_at >= reset as f64,
        "retried at {retried_at}, before the reset {reset}"
    );
    app.finish().await;
}
on_both!(sendgrid_429_reset_is_honoured);

async fn twilio_invalid_number_fails_without_fallback(engine: Engine) {
    let fakes = Fakes::start_with(true).await;
    let app = DeliveryApp::start(
        engine,
        NotifyMode::Sandbox,
        fakes.env(),
        fakes.secrets(),
        &["--notify-sms-providers", "twilio,twilio-secondary"],
    )
    .await;
    app.template(sms_template("code", "security")).await;
    let patch = app
        .app
        .patch("/api/notifications/preferences")
        .user("ben")
        .json(&json!({"channels": {"sms": true}, "categories": {"security": {"sms": true}}}))
        .send()
        .await;
    assert_eq!(patch.status, 200, "{}", patch.json);
    let id = app
        .send(
            json!({"user_id": "ben", "template_key": "code", "variables": {"code": "123456"},
                     "to": {"phone": gardien_fakes::twilio::TEST_TO_INVALID}}),
        )
        .await;
    let view = app.settled(&id, SETTLE).await;
    let sms = channel(&view, "sms");
    assert_eq!(sms["status"], "failed", "{view:#}");
    assert_eq!(sms["reason"], "recipient_refused");
    assert_eq!(
        attempts(sms),
        [("twilio".to_string(), "recipient".to_string())]
    );
    assert_eq!(sms["attempts"][0]["code"], "21211");
    let requests = fakes.twilio.requests();
    assert_eq!(requests.len(), 1, "the secondary account is never tried");
    assert_eq!(
        requests[0].field("From"),
        Some(gardien_fakes::twilio::TEST_FROM_OK)
    );
    app.finish().await;
}
on_both!(twilio_invalid_number_fails_without_fallback);

async fn twilio_primary_down_secondary_used(engine: Engine) {
    let fakes = Fakes::start().await;
    fakes.twilio.fail_next(3, 503);
    let app = live(
        engine,
        &fakes,
        &["--notify-sms-providers", "twilio,twilio-secondary"],
    )
    .await;
    app.template(sms_template("code", "security")).await;
    let id = app
        .send(
            json!({"user_id": "cy", "template_key": "code", "variables": {"code": "42"},
                     "channels": ["sms"], "to": {"phone": "+33612345678"}}),
        )
        .await;
    // sms is off by default, even for security: turn it on first.
    let view = app.settled(&id, SETTLE).await;
    assert_eq!(channel(&view, "sms")["reason"], "preference_off");
    let patch = app
        .app
        .patch("/api/notifications/preferences")
        .user("cy")
        .json(&json!({"channels": {"sms": true}, "categories": {"security": {"sms": true}}}))
        .send()
        .await;
    assert_eq!(patch.status, 200);
    let id = app
        .send(
            json!({"user_id": "cy", "template_key": "code", "variables": {"code": "42"},
                     "to": {"phone": "+33612345678"}}),
        )
        .await;
    let view = app.settled(&id, SETTLE).await;
    let sms = channel(&view, "sms");
    assert_eq!(sms["status"], "sent", "{view:#}");
    assert_eq!(sms["provider"], "twilio-secondary");
    assert_eq!(attempts(sms).len(), 4);
    assert_eq!(
        attempts(sms)[3],
        ("twilio-secondary".to_string(), "accepted".to_string())
    );
    let messages = fakes.twilio.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].account_sid, fakes.secondary_sid);
    assert_eq!(sms["provider_message_id"], messages[0].sid.as_str());
    assert_eq!(messages[0].from.as_deref(), Some(TWILIO_SECONDARY_FROM));
    app.finish().await;
}
on_both!(twilio_primary_down_secondary_used);

async fn refused_credentials_open_the_circuit(engine: Engine) {
    let fakes = Fakes::start().await;
    fakes.sendgrid.revoke_key(SENDGRID_KEY);
    let app = live(engine, &fakes, &[]).await;
    app.template(email_template("welcome", "account")).await;
    let first = app.send(ada(json!({}))).await;
    let view = app.settled(&first, SETTLE).await;
    let email = channel(&view, "email");
    assert_eq!(email["provider"], "smtp", "{view:#}");
    assert_eq!(
        attempts(email),
        [
            ("sendgrid".to_string(), "auth".to_string()),
            ("smtp".to_string(), "accepted".to_string())
        ]
    );
    let ready = app.app.get("/readyz").send().await;
    assert_eq!(
        ready.json["providers"]["sendgrid"]["circuit"], "open",
        "{}",
        ready.json
    );
    assert_eq!(ready.json["providers"]["smtp"]["circuit"], "closed");
    app.metrics_with(&[r#"gardien_backend_provider_circuit{provider="sendgrid",state="open"} 1"#])
        .await;
    // While open, SendGrid is not called at all.
    let sendgrid_calls = fakes.sendgrid.requests().len();
    let second = app.send(ada(json!({}))).await;
    let view = app.settled(&second, SETTLE).await;
    let email = channel(&view, "email");
    assert_eq!(
        attempts(email),
        [
            ("sendgrid".to_string(), "circuit_open".to_string()),
            ("smtp".to_string(), "accepted".to_string())
        ]
    );
    assert_eq!(fakes.sendgrid.requests().len(), sendgrid_calls);
    app.finish().await;
}
on_both!(refused_credentials_open_the_circuit);

async fn every_provider_down_fails_with_every_attempt(engine: Engine) {
    let fakes = Fakes::start().await;
    fakes.sendgrid.go_down().await;
    fakes.smtp.go_down().await;
    let app = live(engine, &fakes, &[]).await;
    app.template(email_template("welcome", "account")).await;
    let id = app.send(ada(json!({}))).await;
    let view = app.settled(&id, SETTLE).await;
    let email = channel(&view, "email");
    assert_eq!(email["status"], "failed", "{view:#}");
    assert_eq!(email["reason"], "providers_exhausted");
    let made = attempts(email);
    assert_eq!(made.len(), 6, "{made:?}");
    assert!(made[..3]
        .iter()
        .all(|(p, o)| p == "sendgrid" && o == "retryable"));
    assert!(made[3..]
        .iter()
        .all(|(p, o)| p == "smtp" && o == "retryable"));
    for attempt in email["attempts"].as_array().expect("attempts") {
        assert!(
            attempt["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{attempt}"
        );
        assert!(attempt["finished_at"].is_string());
    }
    // Backoff: the retries on one provider are spaced out.
    let started: Vec<jiff::Timestamp> = email["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            a["started_at"]
                .as_str()
                .expect("time")
                .parse()
                .expect("timestamp")
        })
        .collect();
    assert!(started[1].duration_since(started[0]) >= jiff::SignedDuration::from_millis(50));
    app.metrics_with(&[
        r#"gardien_backend_deliveries_total{channel="email",reason="providers_exhausted",status="failed"} 1"#,
    ])
    .await;
    app.finish().await;
}
on_both!(every_provider_down_fails_with_every_attempt);

async fn preference_off_is_skipped_and_never_sent(engine: Engine) {
    let fakes = Fakes::start().await;
    let app = live(engine, &fakes, &[]).await;
    app.template(email_template("welcome", "account")).await;
    app.template(email_template("promo", "marketing")).await;
    // marketing is off by default.
    let skipped = app
        .send(json!({"user_id": "ada", "template_key": "promo", "variables": {"name": "Ada"}, "to": {"email": "ada@example.com"}}))
        .await;
    let sent = app.send(ada(json!({}))).await;
    app.settled(&sent, SETTLE).await;
    let view = app.view(&skipped).await;
    assert_eq!(channel(&view, "email")["status"], "skipped");
    assert_eq!(channel(&view, "email")["reason"], "preference_off");
    assert_eq!(channel(&view, "email")["attempts"], json!([]));
    let deliveries = fakes.sendgrid.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].custom_args["notification_id"], sent.as_str());
    app.finish().await;
}
on_both!(preference_off_is_skipped_and_never_sent);

async fn quiet_hours_hold_until_they_end(engine: Engine) {
    let fakes = Fakes::start().await;
    let app = live(engine, &fakes, &[]).await;
    app.template(email_template("welcome", "account")).await;
    app.template(email_template("new-login", "security")).await;
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let hhmm = |z: jiff::Zoned| format!("{:02}:{:02}", z.hour(), z.minute());
    let window = json!({"quiet_hours": {
        "start": hhmm(now.checked_sub(jiff::Span::new().hours(1)).expect("start")),
        "end": hhmm(now.checked_add(jiff::Span::new().hours(2)).expect("end")),
        "time_zone": "UTC"}});
    let patch = app
        .app
        .patch("/api/notifications/preferences")
        .user("ada")
        .json(&window)
        .send()
        .await;
    assert_eq!(patch.status, 200, "{}", patch.json);
    let held = app.send(ada(json!({}))).await;
    let security = app
        .send(json!({"user_id": "ada", "template_key": "new-login", "variables": {"name": "Ada"}, "to": {"email": "ada@example.com"}}))
        .await;
    let view = app.settled(&security, SETTLE).await;
    assert_eq!(
        channel(&view, "email")["status"],
        "sent",
        "security is not held"
    );
    // Several polls later the held one is still queued, and nothing of it went out.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let view = app.view(&held).await;
    assert_eq!(channel(&view, "email")["status"], "queued", "{view:#}");
    assert!(channel(&view, "email")["scheduled_for"].is_string());
    assert_eq!(fakes.sendgrid.deliveries().len(), 1);
    // The window ends (its end moved to now): the workers send it.
    sqlx::query("UPDATE notification_deliveries SET not_before = $1 WHERE notification_id = $2")
        .bind(jiff::Timestamp::now().as_microsecond())
        .bind(&held)
        .execute(&app.app.db.db.pool)
        .await
        .expect("end the window");
    let view = app.settled(&held, SETTLE).await;
    assert_eq!(channel(&view, "email")["status"], "sent", "{view:#}");
    assert_eq!(fakes.sendgrid.deliveries().len(), 2);
    app.finish().await;
}
on_both!(quiet_hours_hold_until_they_end);

async fn sandbox_mode_sends_sandbox_mode(engine: Engine) {
    let fakes = Fakes::start_with(true).await;
    let app = DeliveryApp::start(
        engine,
        NotifyMode::Sandbox,
        fakes.env(),
        fakes.secrets(),
        &[],
    )
    .await;
    app.template(email_template("welcome", "account")).await;
    let id = app.send(ada(json!({}))).await;
    let view = app.settled(&id, SETTLE).await;
    let email = channel(&view, "email");
    assert_eq!(email["status"], "sent", "{view:#}");
    assert_eq!(email["provider"], "sendgrid");
    assert_eq!(email["sandbox"], true);
    let requests = fakes.sendgrid.requests();
    assert_eq!(requests.len(), 1);
    let body = requests[0].json().expect("json body");
    assert_eq!(body["mail_settings"]["sandbox_mode"]["enable"], true);
    assert_eq!(requests[0].status, 200);
    assert!(
        fakes.sendgrid.deliveries().is_empty(),
        "sandbox delivers nothing"
    );
    app.finish().await;
}
on_both!(sandbox_mode_sends_sandbox_mode);

async fn log_mode_sends_nothing_and_records_the_message(engine: Engine) {
    let fakes = Fakes::start().await;
    let app = DeliveryApp::start(engine, NotifyMode::Log, fakes.env(), fakes.secrets(), &[]).await;
    app.template(email_template("welcome", "account")).await;
    let id = app.send(ada(json!({}))).await;
    let view = app.settled(&id, SETTLE).await;
    let email = channel(&view, "email");
    assert_eq!(email["status"], "sent", "{view:#}");
    assert_eq!(email["provider"], "log");
    assert_eq!(email["sandbox"], true);
    assert_eq!(email["message"]["subject"], "Hello Ada");
    assert!(email["provider_message_id"]
        .as_str()
        .is_some_and(|m| m.starts_with("log-")));
    assert!(fakes.sendgrid.requests().is_empty());
    assert!(fakes.smtp.messages().is_empty());
    assert!(fakes.twilio.requests().is_empty());
    app.finish().await;
}
on_both!(log_mode_sends_nothing_and_records_the_message);

async fn a_channel_turned_off_is_skipped_not_failed(engine: Engine) {
    let fakes = Fakes::start().await;
    let app = live(engine, &fakes, &["--notify-sms-providers", "none"]).await;
    app.template(email_template("welcome", "account")).await;
    app.template(sms_template("welcome.sms", "account")).await;
    // Ada wants sms: without the switch, it would fail for want of a provider.
    let patch = app
        .app
        .patch("/api/notifications/preferences")
        .user("ada")
        .json(&json!({"channels": {"sms": true}, "categories": {"account": {"sms": true}}}))
        .send()
        .await;
    assert_eq!(patch.status, 200, "{}", patch.json);
    let id = app
        .send(ada(
            json!({"to": {"email": "ada@example.com", "phone": "+33612345678"},
                         "variables": {"name": "Ada", "code": "1234"},
                         "channels": ["email", "sms"]}),
        ))
        .await;
    let view = app.settled(&id, SETTLE).await;
    let sms = channel(&view, "sms");
    assert_eq!(sms["status"], "skipped", "{view:#}");
    assert_eq!(sms["reason"], "channel_off", "{view:#}");
    assert_eq!(sms["attempts"], json!([]));
    assert_eq!(channel(&view, "email")["status"], "sent", "{view:#}");
    assert!(fakes.twilio.requests().is_empty());
    app.finish().await;
}
on_both!(a_channel_turned_off_is_skipped_not_failed);
