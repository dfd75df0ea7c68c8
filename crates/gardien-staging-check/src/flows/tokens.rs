//! JWT validation at the edge: a real token reaches the API with the identity gardien took
//! from it; no token, a forged one or an expired one is refused; an identity header the
//! client sends is stripped.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::Context;
use crate::http;

/// Fails unless `answer` is gardien's 401 with an error code (`code` when given).
fn expect_refused(answer: &http::Answer, what: &str, code: Option<&str>) -> Result<(), String> {
    answer.expect(401, what)?;
    let got = answer.error_code().unwrap_or_default();
    let matches = match code {
        Some(code) => got == code,
        None => !got.is_empty(),
    };
    if matches {
        Ok(())
    } else {
        Err(answer.unexpected(&format!("{what}: expected code {}", code.unwrap_or("any"))))
    }
}

/// `/api/me` with the token answers the user's own identity; without one, 401 `token_missing`.
pub async fn me(ctx: &Context) -> Result<(), String> {
    let answer = ctx.get("/api/me", &ctx.alice.token).await?;
    answer.expect(200, "/api/me with a token")?;
    let id = answer.field("/user_id")?;
    if id != ctx.alice.id || id.is_empty() {
        return Err(format!("/api/me says user {id}, expected {}", ctx.alice.id));
    }
    let anonymous = http::send(ctx.client.get(ctx.url("/api/me"))).await?;
    expect_refused(&anonymous, "/api/me without a token", Some("token_missing"))
}

/// The client's `X-User-Id` and `X-User-Roles` never reach the API: it sees the token's.
pub async fn spoofed_identity(ctx: &Context) -> Result<(), String> {
    let answer = http::send(
        ctx.client
            .get(ctx.url("/api/me"))
            .bearer_auth(&ctx.alice.token)
            .header("X-User-Id", "admin")
            .header("X-User-Roles", "admin"),
    )
    .await?;
    answer.expect(200, "/api/me with a spoofed X-User-Id")?;
    let id = answer.field("/user_id")?;
    if id != ctx.alice.id {
        return Err(format!(
            "the API saw X-User-Id {id}, expected the token's {}",
            ctx.alice.id
        ));
    }
    if answer.json.pointer("/roles").and_then(Value::as_str) == Some("admin") {
        return Err("the API saw the spoofed X-User-Roles: admin".to_owned());
    }
    Ok(())
}

/// A token whose claims were changed after signing (sub → admin) and one with a broken
/// signature are both refused.
pub async fn forged_token(ctx: &Context) -> Result<(), String> {
    let parts: Vec<&str> = ctx.alice.token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err("the login token is not a JWS compact token".to_owned());
    };
    let mut claims = decode_part(payload)?;
    claims["sub"] = Value::String("admin".to_owned());
    claims["roles"] = serde_json::json!(["admin"]);
    let tampered = format!("{header}.{}.{signature}", encode_part(&claims));
    let answer = ctx.get("/api/me", &tampered).await?;
    expect_refused(&answer, "a token with changed claims", None)?;
    let mut bad_signature = signature.to_owned();
    let flipped = if bad_signature.starts_with('A') {
        "B"
    } else {
        "A"
    };
    bad_signature.replace_range(0..1, flipped);
    let answer = ctx
        .get("/api/me", &format!("{header}.{payload}.{bad_signature}"))
        .await?;
    expect_refused(&answer, "a token with a broken signature", None)
}

/// A correctly signed token whose `exp` is an hour ago is refused `token_expired`. Needs the
/// identity provider's signing key (local control).
pub async fn expired_token(ctx: &Context) -> Result<(), String> {
    let Some(key_file) = &ctx.signing_key else {
        return Err("no signing key".to_owned());
    };
    let pem = std::fs::read(key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem)
        .map_err(|e| format!("{}: not an RSA PEM key: {e}", key_file.display()))?;
    let real = jsonwebtoken::decode_header(&ctx.alice.token)
        .map_err(|e| format!("the login token's header: {e}"))?;
    let payload = ctx.alice.token.split('.').nth(1).unwrap_or_default();
    let mut claims = decode_part(payload)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    claims["iat"] = (now - 7200).into();
    claims["exp"] = (now - 3600).into();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = real.kid;
    let expired = jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())?;
    let answer = ctx.get("/api/me", &expired).await?;
    expect_refused(&answer, "an expired token", Some("token_expired"))
}

fn decode_part(part: &str) -> Result<Value, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| format!("token part is not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("token part is not JSON: {e}"))
}

fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}
