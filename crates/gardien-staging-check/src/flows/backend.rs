//! gardien-backend through gardien: preferences with their ETag, reports kept to their
//! owner, templates for admins, and the backend refusing anyone who bypasses gardien.

use serde_json::json;

use super::Context;
use crate::http;

/// Preferences read (with an ETag), updated with `If-Match`, and a stale `If-Match` refused
/// `412` without changing anything.
pub async fn preferences_etag(ctx: &Context) -> Result<(), String> {
    let path = "/api/notifications/preferences";
    let token = &ctx.alice.token;
    let read = ctx.get(path, token).await?;
    read.expect(200, "preferences read")?;
    let first = read
        .header("etag")
        .ok_or("preferences read: no ETag header")?
        .to_owned();
    let update = |etag: &str, digest: &str| {
        ctx.client
            .patch(ctx.url(path))
            .bearer_auth(token)
            .header("If-Match", etag)
            .json(&json!({ "digest": digest }))
    };
    let updated = http::send(update(&first, "weekly")).await?;
    updated.expect(200, "preferences update with the current ETag")?;
    let second = updated
        .header("etag")
        .ok_or("preferences update: no ETag header")?
        .to_owned();
    if second == first {
        return Err(format!("the ETag did not change on update ({first})"));
    }
    if updated.json.pointer("/digest").and_then(|v| v.as_str()) != Some("weekly") {
        return Err(format!("update answered {}", updated.json));
    }
    let stale = http::send(update(&first, "daily")).await?;
    stale.expect(412, "preferences update with a stale ETag")?;
    let after = ctx.get(path, token).await?;
    if after.header("etag") != Some(second.as_str()) {
        return Err("a refused update changed the preferences".to_owned());
    }
    Ok(())
}

/// A report created, listed and read by its owner; another user cannot read it.
pub async fn reports(ctx: &Context) -> Result<(), String> {
    let created = http::send(
        ctx.client
            .post(ctx.url("/api/reports"))
            .bearer_auth(&ctx.alice.token)
            .json(
                &json!({ "title": "staging-check", "type": "summary", "payload": { "rows": 3 } }),
            ),
    )
    .await?;
    created.expect(201, "report create")?;
    let id = created.field("/id")?;
    let list = ctx.get("/api/reports", &ctx.alice.token).await?;
    list.expect(200, "report list")?;
    if !list.json.to_string().contains(&id) {
        return Err(format!("report {id} is not in its owner's list"));
    }
    let path = format!("/api/reports/{id}");
    ctx.get(&path, &ctx.alice.token)
        .await?
        .expect(200, "report read by its owner")?;
    let other = ctx.get(&path, &ctx.bob.token).await?;
    if other.status.as_u16() != 404 && other.status.as_u16() != 403 {
        return Err(other.unexpected("report read by another user: expected 404 or 403"));
    }
    let others_list = ctx.get("/api/reports", &ctx.bob.token).await?;
    if others_list.json.to_string().contains(&id) {
        return Err(format!("report {id} is in another user's list"));
    }
    Ok(())
}

/// An admin creates an email template and previews it; a user who is not an admin is refused.
pub async fn template_preview(ctx: &Context) -> Result<(), String> {
    let Some(admin) = &ctx.admin else {
        return Err("no admin credentials".to_owned());
    };
    let token = ctx.login(admin).await?;
    let key = format!(
        "staging-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let template = json!({
        "key": key, "category": "account", "channel": "email", "default_locale": "en",
        "variables": ["name"],
        "locales": { "en": { "email": {
            "subject": "Welcome {{ name }}", "html": "<p>Hello {{ name }}</p>", "text": "Hello {{ name }}"
        } } }
    });
    let created = http::send(
        ctx.client
            .post(ctx.url("/api/notifications/templates"))
            .bearer_auth(&token)
            .json(&template),
    )
    .await?;
    created.expect(201, "template create by an admin")?;
    let preview_path = format!("/api/notifications/templates/{key}/preview");
    let body = json!({ "locale": "en", "variables": { "name": "Ada" } });
    let preview = http::send(
        ctx.client
            .post(ctx.url(&preview_path))
            .bearer_auth(&token)
            .json(&body),
    )
    .await?;
    preview.expect(200, "template preview")?;
    let subject = preview.field("/subject")?;
    if subject != "Welcome Ada" {
        return Err(format!(
            "preview subject is {subject:?}, expected \"Welcome Ada\""
        ));
    }
    let refused = http::send(
        ctx.client
            .post(ctx.url(&preview_path))
            .bearer_auth(&ctx.alice.token)
            .json(&body),
    )
    .await?;
    refused.expect(403, "template preview by a user who is not an admin")?;
    Ok(())
}

/// Straight to gardien-backend, around gardien, with a made-up `X-User-Id`: refused 401.
/// Needs the backend's own address (local control; deployed, it is not reachable at all).
pub async fn backend_bypass_refused(ctx: &Context) -> Result<(), String> {
    let Some(backend) = &ctx.backend_url else {
        return Err("no backend URL".to_owned());
    };
    let answer = http::send(
        ctx.client
            .get(format!("{}/api/reports", backend.trim_end_matches('/')))
            .header("X-User-Id", &ctx.alice.id)
            .header("X-User-Roles", "admin"),
    )
    .await?;
    answer.expect(401, "the backend called around gardien with X-User-Id")?;
    Ok(())
}
