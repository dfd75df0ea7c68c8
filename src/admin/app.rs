//! The admin HTTP app, served by Pingora on `admin_listen`.

use gardien_errors::ErrorCode;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{header, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use super::metrics::Metrics;
use super::policy_record::PolicyRecord;
use super::readiness::{key_sets, probe_upstreams};
use super::status::{self, Status};
use super::status_page;
use crate::policy::Policy;

/// `/healthz`, `/readyz`, `/metrics`, `/status` (a page for browsers, JSON otherwise) and
/// `/status.json`.
#[derive(Debug)]
pub struct AdminApp {
    policy: Arc<ArcSwap<Policy>>,
    metrics: Arc<Metrics>,
    record: Arc<PolicyRecord>,
    started: Instant,
}

impl AdminApp {
    pub fn new(
        policy: Arc<ArcSwap<Policy>>,
        metrics: Arc<Metrics>,
        record: Arc<PolicyRecord>,
    ) -> Self {
        AdminApp {
            policy,
            metrics,
            record,
            started: Instant::now(),
        }
    }

    /// Every upstream reachable and every issuer's keys loaded: `200` (`"degraded"` when a
    /// key set is stale: tokens still validate with the last good keys, but the identity
    /// provider has not answered for a while). Otherwise `503` listing what is not ready.
    async fn readyz(&self) -> Response<Vec<u8>> {
        let policy = self.policy.load_full();
        let upstreams = probe_upstreams(&policy).await;
        for u in &upstreams {
            self.metrics.set_upstream_up(&u.upstream, u.ready);
        }
        let key_sets = key_sets(&policy);
        let failing: Vec<_> = upstreams.iter().filter(|u| !u.ready).cloned().collect();
        let without_keys: Vec<_> = key_sets.iter().filter(|k| !k.has_keys).cloned().collect();
        let stale = key_sets.iter().any(|k| k.stale);
        if failing.is_empty() && without_keys.is_empty() {
            let status = if stale { "degraded" } else { "ready" };
            json_response(
                StatusCode::OK,
                &json!({"status": status, "upstreams": upstreams, "jwks": key_sets}),
            )
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({
                    "status": "not_ready",
                    "failing": failing,
                    "jwks_without_keys": without_keys,
                    "upstreams": upstreams,
                    "jwks": key_sets,
                }),
            )
        }
    }

    /// What this process runs and how it is doing (see `super::status`).
    async fn status(&self) -> Status {
        let policy = self.policy.load_full();
        status::snapshot(
            &policy,
            &self.metrics,
            &self.record,
            self.started.elapsed().as_secs(),
        )
        .await
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let request = session.req_header();
        if request.method != http::Method::GET && request.method != http::Method::HEAD {
            return error_response(
                ErrorCode::MethodNotAllowed,
                "the admin listener answers GET only",
            );
        }
        match request.uri.path() {
            "/healthz" => json_response(StatusCode::OK, &json!({"status": "ok"})),
            "/readyz" => self.readyz().await,
            "/metrics" => response(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
            "/status" if wants_html(request.headers.get(header::ACCEPT)) => {
                status_page_response(&self.status().await)
            }
            "/status" | "/status.json" => {
                let mut answer = serialized_response(&self.status().await);
                if request.uri.path() == "/status" {
                    answer
                        .headers_mut()
                        .insert(header::VARY, http::HeaderValue::from_static("Accept"));
                }
                answer
            }
            _ => error_response(
                ErrorCode::NotFound,
                "admin paths: /healthz /readyz /metrics /status /status.json",
            ),
        }
    }
}

/// An error in the envelope of every gardien answer, with a request id of its own.
fn error_response(code: ErrorCode, message: &str) -> Response<Vec<u8>> {
    let id = crate::edge::request_id::RequestId::generate();
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response(
        status,
        "application/json",
        gardien_errors::render(code, message, id.as_str(), &[]),
    )
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    response(
        status,
        "application/json",
        serde_json::to_vec(body).unwrap_or_default(),
    )
}

fn serialized_response(status: &Status) -> Response<Vec<u8>> {
    response(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec(status).unwrap_or_default(),
    )
}

/// Whether the client asked for HTML: an `Accept` naming `text/html` (every browser's
/// does) not refused with `q=0`. Anything else (curl, scripts) gets the JSON.
fn wants_html(accept: Option<&http::HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let media_type = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media_type.eq_ignore_ascii_case("text/html") && !refused
    })
}

/// The page for people, allowed nothing but its own style.
fn status_page_response(status: &Status) -> Response<Vec<u8>> {
    let mut answer = response(
        StatusCode::OK,
        "text/html; charset=utf-8",
        status_page::render(status).into_bytes(),
    );
    let headers = answer.headers_mut();
    let csp = http::HeaderValue::from_str(&status_page::CONTENT_SECURITY_POLICY);
    if let Ok(csp) = csp {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::VARY, http::HeaderValue::from_static("Accept"));
    answer
}

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> bool {
        wants_html(Some(&http::HeaderValue::from_static(value)))
    }

    #[test]
    fn browsers_get_the_page_and_everyone_else_json() {
        // Chromium's and Firefox's navigation Accept headers.
        assert!(accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        ));
        assert!(accept("TEXT/HTML"));
        assert!(!wants_html(None));
        assert!(!accept("*/*"));
        assert!(!accept("application/json"));
        assert!(!accept("text/html;q=0, application/json"));
        assert!(!accept("text/htmlx"));
    }
}
