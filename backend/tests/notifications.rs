//! `POST /api/notifications` and `GET /api/notifications/{id}` on SQLite and PostgreSQL,
//! in-process (no worker runs here; delivery is tested in `delivery.rs`): outbox rows per
//! channel, preferences (off → skipped), missing addresses, quiet hours (held until they
//! end, except `security`; skipped when they outlast `expires_at`), rendering in the user's
//! locale, idempotency (replay, conflict, concurrent requests), roles, validation.

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::*;

const TEMPLATES: &str = "/api/notifications/templates";
const SEND: &str = "/api/notifications";

fn email_template(key: &str, category: &str) -> Value {
    json!({
        "key": key,
        "category": category,
        "channel": "email",
        "default_locale": "en",
        "variables": ["name"],
        "locales": {
            "en": {"email": {"subject": "Hello {{ name }}", "html": "<p>Hello {{ name }}</p>", "text": "Hello {{ name }}"}},
            "fr": {"email": {"subject": "Bonjour {{ name }}", "html": "<p>Bonjour {{ name }}</p>", "text": "Bonjour {{ name }}"}}
        }
    })
}

fn sms_template(key: &str, category: &str) -> Value {
    json!({
        "key": key,
        "category": category,
        "channel": "sms",
        "default_locale": "en",
        "variables": ["name"],
        "locales": {"en": {"sms": {"text": "Hi {{ name }}"}}}
    })
}

async fn create_template(app: &TestApp, body: Value) {
    let answer = app.post(TEMPLATES).admin("root").json(&body).send().await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
}

/// `welcome` (email, account) and `welcome.sms` (sms, account).
async fn welcome_pair(app: &TestApp) {
    create_template(app, email_template("welcome", "account")).await;
    create_template(app, sms_template("welcome.sms", "account")).await;
}

async fn set_preferences(app: &TestApp, user: &str, patch: Value) {
    let answer = app
        .patch("/api/notifications/preferences")
        .user(user)
        .json(&patch)
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
}

fn channel<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["channels"]
        .as_array()
        .and_then(|channels| channels.iter().find(|c| c["channel"] == name))
        .unwrap_or_else(|| panic!("no {name} channel in {answer}"))
}

async fn view(app: &TestApp, id: &str) -> Value {
    let answer = app.get(&format!("{SEND}/{id}")).admin("root").send().await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    answer.json
}

both_databases!(writes_one_outbox_row_per_channel, |app| async move {
    welcome_pair(&app).await;
    set_preferences(&app, "ada", json!({"channels": {"sms": true}, "locale": "fr-CA", "contacts": {"phone": "+33612345678"}})).await;
    let answer = app
        .post(SEND)
        .admin("root")
        .json(&json!({"user_id": "ada", "template_key": "welcome", "variables": {"name": "Ada <3"}, "to": {"email": "ada@example.com"}}))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    let id = answer.json["id"].as_str().expect("id").to_owned();
    assert_eq!(answer.header("location"), Some(format!("{SEND}/{id}")));
    assert_eq!(answer.header("idempotency-replay"), None);
    assert_eq!(channel(&answer.json, "email")["status"], "queued");
    assert_eq!(channel(&answer.json, "sms")["status"], "queued");

    let stored = view(&app, &id).await;
    assert_eq!(stored["user_id"], "ada");
    assert_eq!(stored["requested_by"], "root");
    assert_eq!(stored["locale"], "fr-CA");
    let email = channel(&stored, "email");
    assert_eq!(email["status"], "queued");
    assert_eq!(email["recipient"], "ada@example.com");
    // Rendered in the user's locale (fr-CA falls back to fr), html escaped, text not.
    assert_eq!(email["locale"], "fr");
    assert_eq!(email["message"]["subject"], "Bonjour Ada <3");
    assert_eq!(email["message"]["html"], "<p>Bonjour Ada &lt;3</p>");
    assert_eq!(email["message"]["category"], "account");
    assert_eq!(email["template_key"], "welcome");
    assert_eq!(email["attempts"], json!([]));
    let sms = channel(&stored, "sms");
    assert_eq!(sms["recipient"], "+33612345678");
    assert_eq!(sms["template_key"], "welcome.sms");
    assert_eq!(sms["message"]["text"], "Hi Ada <3");
    app.finish().await;
});

both_databases!(preferences_and_addresses_skip_channels, |app| async move {
    welcome_pair(&app).await;
    // By default sms is off: skipped, preference_off. No email anywhere: no_address.
    let answer = app
        .post(SEND)
        .admin("root")
        .json(&json!({"user_id": "bob", "template_key": "welcome", "variables": {"name": "Bob"}}))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    assert_eq!(channel(&answer.json, "sms")["status"], "skipped");
    assert_eq!(channel(&answer.json, "sms")["reason"], "preference_off");
    assert_eq!(channel(&answer.json, "email")["status"], "skipped");
    assert_eq!(channel(&answer.json, "email")["reason"], "no_address");
    let stored = view(&app, answer.json["id"].as_str().expect("id")).await;
    assert_eq!(channel(&stored, "email")["reason"], "no_address");

    // The user turns the category off for email: skipped even with an address.
    set_preferences(
        &app,
        "bob",
        json!({"categories": {"account": {"email": false}}, "channels": {"sms": true}}),
    )
    .await;
    let answer = app
        .post(SEND)
        .admin("root")
        .json(
            &json!({"user_id": "bob", "template_key": "welcome", "variables": {"name": "Bob"},
                      "to": {"email": "bob@example.com", "phone": "+14155550100"}}),
        )
        .send()
        .await;
    assert_eq!(channel(&answer.json, "email")["reason"], "preference_off");
    // sms now on, and the request gives the number the user has not set.
    assert_eq!(channel(&answer.json, "sms")["status"], "queued");
    let stored = view(&app, answer.json["id"].as_str().expect("id")).await;
    assert_eq!(channel(&stored, "sms")["recipient"], "+14155550100");
    app.finish().await;
});

/// Quiet hours around now, in UTC.
fn quiet_hours_now() -> (Value, jiff::Timestamp) {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let start = now.checked_sub(jiff::Span::new().hours(1)).expect("start");
    let end = now.checked_add(jiff::Span::new().hours(2)).expect("end");
    let hhmm = |z: &jiff::Zoned| format!("{:02}:{:02}", z.hour(), z.minute());
    let end_at = end
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .expect("end time")
        .timestamp();
    (
        json!({"quiet_hours": {"start": hhmm(&start), "end": hhmm(&end), "time_zone": "UTC"}}),
        end_at,
    )
}

both_databases!(quiet_hours_hold_all_but_security, |app| async move {
    create_template(&app, email_template("digest", "reports")).await;
    create_template(&app, email_template("new-login", "security")).await;
    let (window, ends) = quiet_hours_now();
    set_preferences(&app, "eve", window).await;
    let send = |key: &'static str, extra: Value| {
        let mut body = json!({"user_id": "eve", "template_key": key, "variables": {"name": "Eve"}, "to": {"email": "eve@example.com"}});
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        body
    };
    let held = app
        .post(SEND)
        .admin("root")
        .json(&send("digest", json!({})))
        .send()
        .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.json);
    let email = channel(&held.json, "email");
    assert_eq!(email["status"], "queued");
    assert_eq!(email["scheduled_for"], ends.to_string(), "{}", held.json);
    let stored = view(&app, held.json["id"].as_str().expect("id")).await;
    assert_eq!(channel(&stored, "email")["scheduled_for"], ends.to_string());

    // Security notifications are not held.
    let security = app
        .post(SEND)
        .admin("root")
        .json(&send("new-login", json!({})))
        .send()
        .await;
    let email = channel(&security.json, "email");
    assert_eq!(email["status"], "queued");
    assert_eq!(email.get("scheduled_for"), None, "{}", security.json);

    // Held past its expiry: skipped, quiet_hours.
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_mins(30))
        .expect("soon");
    let expired = app
        .post(SEND)
        .admin("root")
        .json(&send("digest", json!({"expires_at": soon.to_string()})))
        .send()
        .await;
    let email = channel(&expired.json, "email");
    assert_eq!(email["status"], "skipped");
    assert_eq!(email["reason"], "quiet_hours");
    app.finish().await;
});

both_databases!(idempotency_replays_and_refuses_reuse, |app| async move {
    welcome_pair(&app).await;
    let body = json!({"user_id": "ann", "template_key": "welcome", "variables": {"name": "Ann"}, "to": {"email": "ann@example.com"}});
    let first = app
        .post(SEND)
        .admin("root")
        .header("Idempotency-Key", "order-42")
        .json(&body)
        .send()
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.json);
    // The same key in the body, keys reordered: the same request.
    let mut same = json!({"to": {"email": "ann@example.com"}, "variables": {"name": "Ann"}, "template_key": "welcome", "user_id": "ann"});
    same["idempotency_key"] = json!("order-42");
    let replay = app.post(SEND).admin("root").json(&same).send().await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.json);
    assert_eq!(replay.header("idempotency-replay").as_deref(), Some("true"));
    assert_eq!(replay.json, first.json);
    // Another request with the key: refused, nothing written.
    let mut other = body.clone();
    other["variables"]["name"] = json!("Someone else");
    let reused = app
        .post(SEND)
        .admin("root")
        .header("Idempotency-Key", "order-42")
        .json(&other)
        .send()
        .await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reused.json
    );
    assert_eq!(reused.error_code(), "idempotency_key_reused");
    // Keys are per caller: another admin may use the same key.
    let elsewhere = app
        .post(SEND)
        .admin("other-admin")
        .header("Idempotency-Key", "order-42")
        .json(&other)
        .send()
        .await;
    assert_eq!(elsewhere.status, StatusCode::ACCEPTED);
    assert_ne!(elsewhere.json["id"], first.json["id"]);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications")
        .fetch_one(&app.db.db.pool)
        .await
        .expect("count");
    assert_eq!(count, 2);
    // A key used more than 24 hours ago is free again.
    sqlx::query("UPDATE notification_idempotency SET created_at = created_at - 86400000001")
        .execute(&app.db.db.pool)
        .await
        .expect("age the keys");
    let later = app
        .post(SEND)
        .admin("root")
        .header("Idempotency-Key", "order-42")
        .json(&other)
        .send()
        .await;
    assert_eq!(later.status, StatusCode::ACCEPTED, "{}", later.json);
    assert_eq!(later.header("idempotency-replay"), None);
    app.finish().await;
});

both_databases!(
    concurrent_requests_with_one_key_make_one_notification,
    |app| async move {
        welcome_pair(&app).await;
        let body = json!({"user_id": "cy", "template_key": "welcome", "variables": {"name": "Cy"}, "to": {"email": "cy@example.com"}});
        let answers = futures::future::join_all((0..8).map(|_| {
            app.post(SEND)
                .admin("root")
                .header("Idempotency-Key", "burst")
                .json(&body)
                .send()
        }))
        .await;
        let ids: std::collections::BTreeSet<String> = answers
            .iter()
            .map(|a| {
                assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.json);
                a.json["id"].as_str().expect("id").to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1, "every answer names the same notification");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notification_deliveries")
            .fetch_one(&app.db.db.pool)
            .await
            .expect("count");
        assert_eq!(rows, 2, "one row per channel, once");
        app.finish().await;
    }
);

both_databases!(only_admins_and_internal_callers_send, |app| async move {
    welcome_pair(&app).await;
    let body = json!({"user_id": "dan", "template_key": "welcome", "variables": {"name": "Dan"}, "to": {"email": "dan@example.com"}});
    let user = app.post(SEND).user("dan").json(&body).send().await;
    assert_eq!(user.status, StatusCode::FORBIDDEN);
    assert_eq!(user.error_code(), "forbidden");
    let unsigned = app
        .post(SEND)
        .admin("root")
        .unsigned()
        .json(&body)
        .send()
        .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    let internal = app
        .post(SEND)
        .identity("svc-api", None, "internal")
        .json(&body)
        .send()
        .await;
    assert_eq!(internal.status, StatusCode::ACCEPTED, "{}", internal.json);
    let id = internal.json["id"].as_str().expect("id");
    // The notified user may read it; someone else gets 404, as for an unknown id.
    let own = app.get(&format!("{SEND}/{id}")).user("dan").send().await;
    assert_eq!(own.status, StatusCode::OK);
    let other = app
        .get(&format!("{SEND}/{id}"))
        .user("mallory")
        .send()
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.error_code(), "not_found");
    let unknown = app
        .get(&format!("{SEND}/{}", uuid::Uuid::new_v4()))
        .admin("root")
        .send()
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = app
        .get(&format!("{SEND}/not-a-uuid"))
        .admin("root")
        .send()
        .await;
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
    app.finish().await;
});

both_databases!(
    bad_requests_are_refused_with_nothing_written,
    |app| async move {
        welcome_pair(&app).await;
        let send = |body: Value| app.post(SEND).admin("root").json(&body).send();
        let missing = send(
            json!({"user_id": "u", "template_key": "welcome", "to": {"email": "u@example.com"}}),
        )
        .await;
        assert_eq!(
            missing.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            missing.json
        );
        assert_eq!(missing.error_code(), "missing_variables");
        assert_eq!(missing.field_paths(), ["variables.name"]);
        let unknown = send(json!({"user_id": "u", "template_key": "nothing-here"})).await;
        assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(unknown.error_code(), "unknown_template");
        create_template(&app, email_template("email-only", "account")).await;
        let no_sms = send(json!({"user_id": "u", "template_key": "email-only", "channels": ["email", "sms"], "variables": {"name": "U"}})).await;
        assert_eq!(no_sms.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(no_sms.error_code(), "template_missing");
        assert_eq!(no_sms.field_paths(), ["channels[1]"]);
        let shapes = send(json!({"user_id": "", "template_key": "welcome", "to": {"phone": "12"}, "expires_at": "tomorrow"})).await;
        assert_eq!(shapes.status, StatusCode::BAD_REQUEST);
        assert_eq!(shapes.field_paths(), ["user_id", "to.phone", "expires_at"]);
        let unknown_field =
            send(json!({"user_id": "u", "template_key": "welcome", "priority": "high"})).await;
        assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
        let body = json!({"user_id": "u", "template_key": "welcome", "variables": {"name": "U"},
                          "to": {"email": "u@example.com"}});
        for key in ["clé-1".to_owned(), "k".repeat(256), "two words".to_owned()] {
            let bad_key = app
                .post(SEND)
                .admin("root")
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            assert_eq!(
                bad_key.status,
                StatusCode::BAD_REQUEST,
                "{key}: {}",
                bad_key.json
            );
            assert_eq!(bad_key.field_paths(), ["Idempotency-Key"], "{key}");
        }
        let push =
            send(json!({"user_id": "u", "template_key": "welcome", "channels": ["push"]})).await;
        assert_eq!(push.status, StatusCode::BAD_REQUEST, "{}", push.json);
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notification_deliveries")
            .fetch_one(&app.db.db.pool)
            .await
            .expect("count");
        assert_eq!(count, 0);
        app.finish().await;
    }
);

both_databases!(channels_can_be_chosen, |app| async move {
    welcome_pair(&app).await;
    let answer = app
        .post(SEND)
        .admin("root")
        .json(&json!({"user_id": "fay", "template_key": "welcome", "channels": ["email"], "variables": {"name": "Fay"}, "to": {"email": "fay@example.com"}}))
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    assert_eq!(answer.json["channels"].as_array().map(Vec::len), Some(1));
    // The sms template alone, by its own key.
    let answer = app
        .post(SEND)
        .admin("root")
        .json(
            &json!({"user_id": "fay", "template_key": "welcome.sms", "variables": {"name": "Fay"}}),
        )
        .send()
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    assert_eq!(channel(&answer.json, "sms")["status"], "skipped");
    app.finish().await;
});
