//! Sending notifications through gardien: an admin sends the user an email and an sms, and
//! both are delivered. Locally the primary providers fail (the fake SendGrid and the
//! primary Twilio account), so the check also asks that the fallback delivered them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Context;
use crate::http;

/// Longest wait for a notification to leave `queued`/`sending`.
const SETTLE: Duration = Duration::from_secs(30);
/// How often its status is read meanwhile.
const POLL: Duration = Duration::from_millis(200);

/// Providers that must have delivered when `--expect-fallback` is given.
const EMAIL_FALLBACK: &str = "smtp";
const SMS_FALLBACK: &str = "twilio-secondary";

/// Email and sms sent to the signed-up user, each settled as `sent` (by the fallback
/// provider with `--expect-fallback`).
pub async fn email_and_sms(ctx: &Context) -> Result<String, String> {
    let Some(admin) = &ctx.admin else {
        return Err("no admin credentials".to_owned());
    };
    let admin = ctx.login(admin).await?;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let email_key = format!("staging-email-{suffix}");
    let sms_key = format!("staging-sms-{suffix}");
    create_template(ctx, &admin, json!({
        "key": email_key, "category": "account", "channel": "email", "default_locale": "en",
        "variables": ["name"],
        "locales": { "en": { "email": {
            "subject": "Hello {{ name }}", "html": "<p>Hello {{ name }}</p>", "text": "Hello {{ name }}"
        } } }
    }))
    .await?;
    create_template(
        ctx,
        &admin,
        json!({
            "key": sms_key, "category": "security", "channel": "sms", "default_locale": "en",
            "variables": ["code"],
            "locales": { "en": { "sms": { "text": "Your code: {{ code }}" } } }
        }),
    )
    .await?;
    // sms is off by default: the user turns it on for security messages.
    http::send(
        ctx.client
            .patch(ctx.url("/api/notifications/preferences"))
            .bearer_auth(&ctx.alice.token)
            .json(&json!({ "channels": { "sms": true }, "categories": { "security": { "sms": true } } })),
    )
    .await?
    .expect(200, "turning sms on")?;
    let email = send(
        ctx,
        &admin,
        &email_key,
        json!({ "name": "Ada" }),
        json!({ "email": ctx.alice.email }),
    )
    .await?;
    let sms = send(
        ctx,
        &admin,
        &sms_key,
        json!({ "code": "42" }),
        json!({ "phone": ctx.phone }),
    )
    .await?;
    let email = settled(ctx, &admin, &email, "email").await?;
    let sms = settled(ctx, &admin, &sms, "sms").await?;
    if ctx.expect_fallback && (email != EMAIL_FALLBACK || sms != SMS_FALLBACK) {
        return Err(format!(
            "delivered by {email} and {sms}, expected the fallbacks {EMAIL_FALLBACK} and {SMS_FALLBACK}"
        ));
    }
    Ok(format!("email via {email}, sms via {sms}"))
}

async fn create_template(ctx: &Context, admin: &str, template: Value) -> Result<(), String> {
    let answer = http::send(
        ctx.client
            .post(ctx.url("/api/notifications/templates"))
            .bearer_auth(admin)
            .json(&template),
    )
    .await?;
    answer.expect(201, "template create")?;
    Ok(())
}

/// Sends one notification and returns its id.
async fn send(
    ctx: &Context,
    admin: &str,
    key: &str,
    variables: Value,
    to: Value,
) -> Result<String, String> {
    let answer = http::send(
        ctx.client
            .post(ctx.url("/api/notifications"))
            .bearer_auth(admin)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({ "user_id": ctx.alice.id, "template_key": key, "variables": variables, "to": to })),
    )
    .await?;
    if !answer.status.is_success() {
        return Err(answer.unexpected(&format!("send {key}: expected 2xx")));
    }
    answer.field("/id")
}

/// Waits (bounded) until the notification's `channel` settles; `Ok(provider)` when sent.
async fn settled(ctx: &Context, admin: &str, id: &str, channel: &str) -> Result<String, String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let view = ctx.get(&format!("/api/notifications/{id}"), admin).await?;
        view.expect(200, "notification status")?;
        let state = view
            .json
            .pointer("/channels")
            .and_then(Value::as_array)
            .and_then(|channels| channels.iter().find(|c| c["channel"] == channel))
            .cloned()
            .ok_or_else(|| format!("no {channel} channel in {}", view.json))?;
        match state["status"].as_str().unwrap_or_default() {
            "queued" | "sending" if Instant::now() < deadline => tokio::time::sleep(POLL).await,
            "sent" => return Ok(state["provider"].as_str().unwrap_or("-").to_owned()),
            other => {
                return Err(format!(
                    "{channel} notification {id} is `{other}` (reason {}) after {:?}",
                    state["reason"], SETTLE
                ))
            }
        }
    }
}
