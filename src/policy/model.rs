//! The validated policy the gateway runs on. Built only by [`super::load`], so holding a
//! `Policy` means every field has been checked.

use std::net::SocketAddr;
use std::time::Duration;

use crate::edge::cors::CorsPolicy;
use std::sync::Arc;

use crate::edge::adaptive::{AdaptiveSettings, UpstreamLoad};
use crate::edge::client_address::ClientAddressPolicy;
use crate::edge::identity::IdentityPolicy;
use crate::edge::jwt::JwtPolicy;
use crate::edge::rate_limit::RateLimits;
use crate::edge::security_headers::SecurityHeaders;
use crate::routing::Router;
use crate::upstream::Upstream;

use super::Environment;

#[derive(Debug)]
pub struct Policy {
    pub environment: Environment,
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz`, `/metrics` and `/status` listen.
    pub admin_listen: SocketAddr,
    /// How the client address is found (`client_ip:`).
    pub client_ip: ClientAddressPolicy,
    /// In the order of the file; routes refer to them by index.
    pub upstreams: Vec<Upstream>,
    pub router: Router,
    pub cors: CorsPolicy,
    pub security_headers: SecurityHeaders,
    /// `None` when the policy has no `jwt:` section (every route is then public).
    pub jwt: Option<JwtPolicy>,
    /// Identity headers: stripped from every request, set from verified tokens, signed.
    pub identity: IdentityPolicy,
    pub rate_limits: RateLimits,
    /// `None`: rates stay as written and requests in flight are not capped.
    pub adaptive: Option<AdaptiveSettings>,
    /// One per upstream, same order: adaptive factor, requests in flight, recent outcomes.
    pub loads: Vec<Arc<UpstreamLoad>>,
    pub server: ServerSettings,
}

/// `server:` after defaults.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    /// Work-stealing runtime across the threads, or one runtime per thread.
    pub work_stealing: bool,
    pub graceful_shutdown_timeout: Duration,
    pub max_header_bytes: usize,
    pub watch_policy: bool,
    /// Deadline for a whole request head (`408` past it).
    pub request_header_timeout: Duration,
    /// Idle keep-alive; `None`: keep-alive off.
    pub keepalive_timeout: Option<Duration>,
    /// Open client connections at most; `None`: no limit.
    pub max_connections: Option<usize>,
    /// Share of requests written to the access log (`server.access_log.sample`), 0 to 1.
    pub access_log_sample: f64,
    /// `listen` also serves prior-knowledge HTTP/2 (h2c), decided per new connection.
    pub h2c: bool,
}

impl Policy {
    /// One line for `gardien check` and the start-up log.
    pub fn summary(&self) -> String {
        let (exact, patterns) = self.cors.origin_counts();
        format!(
            "environment {}, listen {}, admin {}, {} upstream(s), {} route(s) ({} public), CORS {} origin(s) + {} pattern(s), {} security header(s), {} JWT issuer(s), {} rate-limit rule(s), {}",
            self.environment.as_str(),
            self.listen,
            self.admin_listen,
            self.upstreams.len(),
            self.router.routes().len(),
            self.router
                .routes()
                .iter()
                .filter(|r| r.auth == crate::routing::RouteAuth::Public)
                .count(),
            exact,
            patterns,
            self.security_headers.names().count(),
            self.jwt.as_ref().map_or(0, |j| j.issuers().len()),
            self.rate_limits.rules().len(),
            self.client_ip.describe(),
        )
    }

    pub fn upstream(&self, index: usize) -> Option<&Upstream> {
        self.upstreams.get(index)
    }
}
