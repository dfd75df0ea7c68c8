//! Rate limits and load: the login brute-force rule answers 429 with `Retry-After`, and a
//! short paced load run through gardien stays within its error budget.

use std::time::{Duration, Instant};

use super::Context;
use crate::http;

/// Most wrong logins sent before the limit must have answered.
const BRUTE_FORCE_ATTEMPTS: usize = 60;

/// Wrong passwords for one account from one address: within the policy's burst they are
/// refused 401, then the login rule answers 429 `rate_limited` with `Retry-After`.
/// Run it last: this address cannot log in again until the bucket refills.
pub async fn login_brute_force(ctx: &Context) -> Result<String, String> {
    let body = serde_json::json!({ "email": ctx.alice.email, "password": "wrong-password-0" });
    for attempt in 1..=BRUTE_FORCE_ATTEMPTS {
        let answer = http::send(
            ctx.client
                .post(ctx.url("/api/auth/login"))
                .header("Origin", &ctx.origin)
                .json(&body),
        )
        .await?;
        match answer.status.as_u16() {
            401 => continue,
            429 => {
                if attempt == 1 {
                    return Err("the first wrong login was already limited".to_owned());
                }
                if answer.error_code() != Some("rate_limited") {
                    return Err(answer.unexpected("429 without code rate_limited"));
                }
                let retry = answer
                    .header("retry-after")
                    .ok_or("429 without Retry-After")?;
                return Ok(format!(
                    "limited after {} wrong logins, Retry-After {retry}s",
                    attempt - 1
                ));
            }
            _ => return Err(answer.unexpected("a wrong login: expected 401 or 429")),
        }
    }
    Err(format!("{BRUTE_FORCE_ATTEMPTS} wrong logins and no 429"))
}

/// `load_requests` `GET /api/me` at `load_rate` per second (under the per-user limit, so a
/// 429 counts as an error), bounded in count and time; fails over the error budget.
pub async fn load(ctx: &Context) -> Result<String, String> {
    let count = ctx.load_requests.max(1);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(ctx.load_rate.max(1)),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        ticker.tick().await;
        let request = ctx
            .client
            .get(ctx.url("/api/me"))
            .bearer_auth(&ctx.alice.token);
        tasks.spawn(async move {
            let started = Instant::now();
            let ok = matches!(request.send().await, Ok(r) if r.status().as_u16() == 200);
            (ok, started.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(count);
    let mut errors = 0usize;
    while let Some(joined) = tasks.join_next().await {
        let (ok, latency) = joined.map_err(|e| format!("a load request task: {e}"))?;
        if !ok {
            errors += 1;
        }
        latencies.push(latency);
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize].as_millis();
    let ratio = errors as f64 / count as f64;
    let summary = format!(
        "{count} requests at {}/s, {errors} failed ({:.1}%), p50 {}ms p99 {}ms",
        ctx.load_rate,
        ratio * 100.0,
        at(0.5),
        at(0.99)
    );
    if ratio > ctx.load_error_budget {
        return Err(format!(
            "{summary}: over the error budget of {:.1}%",
            ctx.load_error_budget * 100.0
        ));
    }
    Ok(summary)
}
