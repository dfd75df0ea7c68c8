//! CORS as the browser sees it: the frontend origin is allowed (preflight answered by
//! gardien, credentials allowed), another origin is refused.

use super::Context;
use crate::flows::User;
use crate::http::{self, Answer};

/// Fails unless `answer` allows `origin` with credentials.
pub fn expect_allowed(answer: &Answer, origin: &str, what: &str) -> Result<(), String> {
    match answer.header("access-control-allow-origin") {
        Some(allowed) if allowed == origin => {}
        other => {
            return Err(format!(
                "{what}: Access-Control-Allow-Origin is {other:?}, expected {origin}"
            ))
        }
    }
    if answer.header("access-control-allow-credentials") != Some("true") {
        return Err(format!("{what}: no Access-Control-Allow-Credentials: true"));
    }
    Ok(())
}

/// A preflight from `origin` for the sign-up call.
async fn preflight(ctx: &Context, origin: &str) -> Result<Answer, String> {
    http::send(
        ctx.client
            .request(reqwest::Method::OPTIONS, ctx.url("/api/auth/register"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type"),
    )
    .await
}

/// The preflight from the frontend origin is answered 204 and allows it; then two users
/// sign up and log in from that origin.
pub async fn sign_up_and_login(ctx: &mut Context) -> Result<(), String> {
    let answer = preflight(ctx, &ctx.origin).await?;
    answer.expect(204, "preflight from the frontend origin")?;
    expect_allowed(&answer, &ctx.origin, "preflight")?;
    let mut alice = User::fresh("alice");
    let mut bob = User::fresh("bob");
    ctx.sign_up(&mut alice).await?;
    ctx.sign_up(&mut bob).await?;
    ctx.alice = alice;
    ctx.bob = bob;
    Ok(())
}

/// A preflight from an origin the policy does not list is refused with gardien's JSON error
/// and allows nothing.
pub async fn refused_origin(ctx: &Context) -> Result<(), String> {
    let answer = preflight(ctx, &ctx.refused_origin).await?;
    answer.expect(403, "preflight from the refused origin")?;
    if answer.error_code() != Some("cors_origin_not_allowed") {
        return Err(answer.unexpected("expected code cors_origin_not_allowed"));
    }
    if let Some(allowed) = answer.header("access-control-allow-origin") {
        return Err(format!(
            "refused origin still got Access-Control-Allow-Origin: {allowed}"
        ));
    }
    Ok(())
}
