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
use super::readiness::{key_sets, probe_upstreams};
use crate::policy::Policy;

/// `/healthz`, `/readyz`, `/metrics` and `/status`.
#[derive(Debug)]
pub struct AdminApp {
    policy: Arc<ArcSwap<Policy>>,
    metrics: Arc<Metrics>,
    started: Instant,
}

impl AdminApp {
    pub fn new(policy: Arc<ArcSwap<Policy>>, metrics: Arc<Metrics>) -> Self {
        AdminApp {
            policy,
            metrics,
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

    /// What this process runs: version, environment, uptime, routes and upstreams.
    fn status(&self) -> Response<Vec<u8>> {
        let policy = self.policy.load_full();
        let routes: Vec<_> = policy
            .router
            .routes()
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "prefix": r.prefix,
                    "upstream": policy.upstream(r.upstream).map(|u| u.name.as_str()),
                    "methods": r.methods.as_ref().map(|ms| ms.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
                })
            })
            .collect();
        let upstreams: Vec<_> = policy
            .upstreams
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "url": u.url,
                    "addresses": u.addresses().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "check": if u.health.is_some() { "http" } else { "tcp" },
                    "health": u.health.as_ref().map(|h| h.report()),
                })
            })
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "environment": policy.environment.as_str(),
                "uptime_seconds": self.started.elapsed().as_secs(),
                "summary": policy.summary(),
                "routes": routes,
                "upstreams": upstreams,
            }),
        )
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
            "/status" => self.status(),
            _ => error_response(
                ErrorCode::NotFound,
                "admin paths: /healthz /readyz /metrics /status",
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

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}
