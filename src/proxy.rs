//! The gateway's [`ProxyHttp`] implementation: it composes the edge filters in the order of
//! docs/ARCHITECTURE.md ("The request path") and picks the upstream. Each phase does one job:
//!
//! - `request_filter`: identity headers stripped → request id → client address → path
//!   check → route match → CORS (preflights answered here, never upstream) → 404/405 for
//!   requests no route takes → rate limits, JWT, rate limits by user, in-flight cap.
//! - `upstream_peer`: the route's upstream.
//! - `upstream_request_filter`: request id, `traceparent`, `Host`, `X-Forwarded-*`.
//! - `response_filter`: CORS, security headers and the request id on the upstream's answer.
//! - `fail_to_proxy`: upstream failures become `502`/`504` with the JSON error body.
//! - `logging`: metrics and the access log.
//!
//! Every line logged while a request is served is inside its span
//! ([`gardien_telemetry::request_span`]), so it carries the request's trace.
//!
//! Every response the gateway writes itself goes through [`Gateway::respond`], which adds
//! the same CORS, security and request-id headers as `response_filter`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};
use tracing::Instrument;

use crate::admin::metrics::Metrics;
use crate::edge::adaptive::InFlight;
use crate::edge::client_address::ClientAddress;
use crate::edge::cors::{CorsOutcome, CorsPolicy, CorsRefusal, OriginHeader};
use crate::edge::forwarded;
use crate::edge::jwt::{unix_now, AuthorizationHeader, TokenRejection};
use crate::edge::rate_limit::{header_values, HeaderItem as RateLimitItem, Phase, RequestFacts};
use crate::edge::request_id::{self, RequestId};
use crate::edge::token_cache::VerifiedToken;
use crate::edge::trace_context::RequestTrace;
use crate::error_reports::{self, GatewayFailure};
use crate::gateway_error::GatewayError;
use crate::policy::Policy;
use crate::routing::{is_safe_path, RouteAuth, RouteMatch};
use gardien_telemetry::error_reporting;
use gardien_telemetry::throttle::Throttle;

/// Route label for requests no route took.
const UNMATCHED: &str = "unmatched";
/// Longest piece of a client-sent origin written to a log line.
const MAX_LOGGED_ORIGIN: usize = 200;

/// The proxy. Holds the current policy (swapped whole on reload) and the metrics.
#[derive(Debug)]
pub struct Gateway {
    policy: Arc<ArcSwap<Policy>>,
    metrics: Arc<Metrics>,
    cors_log: Throttle,
}

/// Per-request state, carried from the request phases to the response phases.
#[derive(Debug)]
pub struct RequestCtx {
    started: Instant,
    /// The policy this request started with; a reload mid-request does not change it.
    policy: Arc<Policy>,
    request_id: Option<RequestId>,
    route: Option<usize>,
    cors: CorsOutcome,
    /// The verified token, on a protected route.
    identity: Option<Arc<VerifiedToken>>,
    /// `RateLimit-Policy` and `RateLimit` items of the rules that ran.
    rate_headers: Vec<RateLimitItem>,
    /// Held while the request is with its upstream (the `max_in_flight` cap).
    in_flight: Option<InFlight>,
    /// Whether the exchange with the upstream failed (for the adaptive controller), and how
    /// (the `kind` of `gardien_upstream_errors_total`, for the error report).
    upstream_failed: bool,
    upstream_error: Option<&'static str>,
    /// When the request was sent upstream (`gardien_upstream_duration_seconds`).
    upstream_sent: Option<Instant>,
    /// The client's address, found once by the policy's `client_ip` rule: the one every
    /// rate limit, log line and forwarded header uses.
    client: ClientAddress,
    /// The request's trace (continued from a trusted hop, else new), and its span.
    trace: Option<RequestTrace>,
    span: tracing::Span,
}

impl RequestCtx {
    fn request_id(&mut self) -> &RequestId {
        self.request_id.get_or_insert_with(RequestId::generate)
    }

    fn route_name(&self) -> &str {
        self.route
            .and_then(|i| self.policy.router.get(i))
            .map_or(UNMATCHED, |r| r.name.as_str())
    }

    fn upstream_name(&self) -> &str {
        self.route
            .and_then(|i| self.policy.router.get(i))
            .and_then(|r| self.policy.upstream(r.upstream))
            .map_or("-", |u| u.name.as_str())
    }
}

impl Gateway {
    pub fn new(policy: Arc<ArcSwap<Policy>>, metrics: Arc<Metrics>) -> Self {
        Gateway {
            policy,
            metrics,
            cors_log: Throttle::per_minute(),
        }
    }

    /// Adds the headers every response carries: CORS (and removal of the upstream's),
    /// security headers, rate-limit state and the request id.
    fn add_edge_headers(&self, headers: &mut HeaderMap, ctx: &mut RequestCtx) {
        ctx.policy.cors.write_response_headers(&ctx.cors, headers);
        ctx.policy.security_headers.apply(headers);
        headers.insert(X_REQUEST_ID, ctx.request_id().header_value().clone());
        if !ctx.rate_headers.is_empty() {
            let (policy, state) = header_values(&ctx.rate_headers);
            for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
                if let Ok(value) = HeaderValue::try_from(value) {
                    headers.insert(name, value);
                }
            }
        }
    }

    /// Rebuilds an upstream response's headers with the edge headers added. The map is
    /// built once at its final size and handed to Pingora whole: inserting a dozen headers
    /// one by one through `ResponseHeader` re-parses each name, keeps a second map of their
    /// letter case and regrows both — about a fifth of the gateway's CPU under load
    /// (docs/BENCHMARKS.md). Header names go out in lower case, as HTTP/2 requires anyway.
    fn decorate(&self, response: &mut ResponseHeader, ctx: &mut RequestCtx) {
        let mut headers = HeaderMap::with_capacity(response.headers.len() + EDGE_HEADERS);
        for (name, value) in response.headers.iter() {
            headers.append(name.clone(), value.clone());
        }
        self.add_edge_headers(&mut headers, ctx);
        *response = response_header(response.status, response.version, headers);
    }

    /// Writes a gateway-generated error with the JSON body.
    async fn respond(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        error: &GatewayError,
    ) -> Result<()> {
        let body = error.body(ctx.request_id().as_str());
        if error.status.is_server_error() && error_reporting::enabled() {
            error_reports::gateway_failure(GatewayFailure {
                answer: error,
                route: ctx.route_name(),
                upstream: ctx.upstream_name(),
                kind: ctx.upstream_error,
                request_id: ctx.request_id.as_ref().map_or("-", RequestId::as_str),
                trace: ctx.trace.as_ref().map(|t| t.span),
            });
        }
        let mut headers = HeaderMap::with_capacity(error.headers.len() + 3 + EDGE_HEADERS);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in &error.headers {
            headers.insert(name.clone(), value.clone());
        }
        self.add_edge_headers(&mut headers, ctx);
        let response = response_header(error.status, http::Version::HTTP_11, headers);
        session
            .write_response_header(Box::new(response), false)
            .await?;
        session.write_response_body(Some(body), true).await?;
        Ok(())
    }

    /// Answers an allowed preflight with `204` and the preflight headers.
    async fn respond_preflight(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        origin: &HeaderValue,
    ) -> Result<()> {
        let mut headers = HeaderMap::with_capacity(EDGE_HEADERS + 8);
        ctx.policy
            .cors
            .write_preflight_headers(origin, &mut headers);
        ctx.policy.security_headers.apply(&mut headers);
        headers.insert(X_REQUEST_ID, ctx.request_id().header_value().clone());
        // No `Content-Length`: a 204 must not carry one (RFC 9110 §8.6; HTTP/2 drops it),
        // and Pingora's HTTP/1.1 writer knows a 204 has no body, so keep-alive holds.
        let response = response_header(StatusCode::NO_CONTENT, http::Version::HTTP_11, headers);
        session
            .write_response_header(Box::new(response), true)
            .await?;
        Ok(())
    }

    /// Counts a CORS refusal and logs it, at most once per origin per minute.
    fn record_cors_refusal(
        &self,
        ctx: &RequestCtx,
        origin: Option<&HeaderValue>,
        reason: CorsRefusal,
    ) {
        self.metrics.cors_rejection(reason);
        let origin = origin.map_or_else(String::new, |o| {
            let text = String::from_utf8_lossy(o.as_bytes());
            text.chars().take(MAX_LOGGED_ORIGIN).collect()
        });
        if let Some(permit) = self.cors_log.permit(&origin) {
            tracing::warn!(
                origin = ?origin,
                route = ctx.route_name(),
                reason = reason.as_str(),
                suppressed_since_last = permit.suppressed,
                "CORS request refused"
            );
        }
    }

    /// Decides a preflight and writes its answer. Always answers: preflights never reach
    /// an upstream.
    async fn handle_preflight(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let headers = &session.req_header().headers;
        let origin = OriginHeader::of(headers).value().cloned();
        let method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD).cloned();
        let requested = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
        let (Some(origin), Some(method)) = (origin, method) else {
            // Several `Origin` headers: not a browser's preflight.
            let reason = CorsRefusal::MalformedOrigin;
            self.record_cors_refusal(ctx, None, reason);
            ctx.cors = CorsOutcome::Refused(reason);
            let error = GatewayError::new(reason.error_code(), reason.message());
            return self.respond(session, ctx, &error).await;
        };
        match ctx
            .policy
            .cors
            .check_preflight(&origin, &method, requested.as_ref())
        {
            Ok(()) => {
                ctx.cors = CorsOutcome::Allowed(origin.clone());
                self.respond_preflight(session, ctx, &origin).await
            }
            Err(reason) => {
                self.record_cors_refusal(ctx, Some(&origin), reason);
                ctx.cors = CorsOutcome::Refused(reason);
                let error = GatewayError::new(reason.error_code(), reason.message());
                self.respond(session, ctx, &error).await
            }
        }
    }
}

impl Gateway {
    /// The request filter past its start (inside the request's span): limits on the head,
    /// path check, route, CORS, then [`Gateway::admit`].
    async fn filter_request(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let request = session.req_header();
        if header_bytes(&request.headers) > ctx.policy.server.max_header_bytes {
            self.respond(session, ctx, &GatewayError::headers_too_large())
                .await?;
            return Ok(true);
        }
        if !is_safe_path(request.uri.path()) {
            self.respond(session, ctx, &GatewayError::bad_path())
                .await?;
            return Ok(true);
        }
        let found = ctx.policy.router.find(request.uri.path(), &request.method);
        if let RouteMatch::Found(index) = found {
            ctx.route = Some(index);
        }

        if CorsPolicy::is_preflight(&request.method, &request.headers) {
            self.handle_preflight(session, ctx).await?;
            return Ok(true);
        }
        let origin = OriginHeader::of(&request.headers);
        ctx.cors = ctx.policy.cors.check_actual(origin);
        if let CorsOutcome::Refused(reason) = ctx.cors {
            let origin = origin.value().cloned();
            self.record_cors_refusal(ctx, origin.as_ref(), reason);
        }

        match found {
            RouteMatch::Found(_) => self.admit(session, ctx).await,
            RouteMatch::MethodNotAllowed(allow) => {
                self.respond(session, ctx, &GatewayError::method_not_allowed(allow))
                    .await?;
                Ok(true)
            }
            RouteMatch::NotFound => {
                self.respond(session, ctx, &GatewayError::route_not_found())
                    .await?;
                Ok(true)
            }
        }
    }

    /// What a routed request passes before it may go upstream, in order: the rate limits
    /// keyed without the user, the token, the rate limits keyed by user, and the upstream's
    /// cap on requests in flight. Returns `true` when the gateway answered.
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.limit(session, ctx, Phase::PreAuth).await? {
            return Ok(true);
        }
        if self.authenticate(session, ctx).await? {
            return Ok(true);
        }
        if self.limit(session, ctx, Phase::PostAuth).await? {
            return Ok(true);
        }
        self.reserve_upstream(session, ctx).await
    }

    /// Runs the rate-limit rules of `phase`; answers `429` when one refuses.
    async fn limit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        phase: Phase,
    ) -> Result<bool> {
        let policy = Arc::clone(&ctx.policy);
        if policy.rate_limits.rules().is_empty() {
            return Ok(false);
        }
        let Some(route_index) = ctx.route else {
            return Ok(false);
        };
        let Some(route) = policy.router.get(route_index) else {
            return Ok(false);
        };
        let request = session.req_header();
        let facts = RequestFacts {
            route: route_index,
            route_name: &route.name,
            client_ip: ctx.client.ip,
            user: ctx.identity.as_ref().and_then(|v| v.subject.as_deref()),
            headers: &request.headers,
            factor: policy.loads.get(route.upstream).map_or(1.0, |l| l.factor()),
        };
        let verdict = policy.rate_limits.check(phase, &facts, &self.metrics).await;
        ctx.rate_headers.extend(verdict.header_items);
        let Some(refusal) = verdict.refused else {
            return Ok(false);
        };
        let error = GatewayError::rate_limited(&refusal.rule, refusal.retry_after_secs);
        self.respond(session, ctx, &error).await?;
        Ok(true)
    }

    /// Takes a place among the upstream's requests in flight, or answers `503` when they
    /// are all taken: shedding at once beats queueing for an upstream already overloaded.
    async fn reserve_upstream(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let policy = Arc::clone(&ctx.policy);
        let (Some(settings), Some(route)) = (
            &policy.adaptive,
            ctx.route.and_then(|i| policy.router.get(i)),
        ) else {
            return Ok(false);
        };
        let Some(load) = policy.loads.get(route.upstream) else {
            return Ok(false);
        };
        match load.try_acquire(settings.max_in_flight) {
            Some(in_flight) => {
                ctx.in_flight = Some(in_flight);
                Ok(false)
            }
            None => {
                self.metrics.shed(&load.name);
                self.respond(session, ctx, &GatewayError::overloaded(&load.name))
                    .await?;
                Ok(true)
            }
        }
    }

    /// Checks the token a protected route needs, and its roles. Returns `true` when the
    /// request was refused (and answered): it never reaches the upstream.
    async fn authenticate(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let policy = Arc::clone(&ctx.policy);
        let Some(route) = ctx.route.and_then(|i| policy.router.get(i)) else {
            return Ok(false);
        };
        let RouteAuth::Required { roles } = &route.auth else {
            return Ok(false);
        };
        let Some(jwt) = policy.jwt.as_ref() else {
            // Validation refuses protected routes without issuers; never fail open.
            let error = GatewayError::internal();
            self.respond(session, ctx, &error).await?;
            return Ok(true);
        };
        // The header is cloned (a reference count on the request's buffer) so the session
        // stays free for the answer while the token is checked.
        let (first, repeated) = {
            let mut values = session
                .req_header()
                .headers
                .get_all(header::AUTHORIZATION)
                .iter();
            (values.next().cloned(), values.next().is_some())
        };
        let authorization = match (&first, repeated) {
            (None, _) => AuthorizationHeader::Absent,
            (Some(one), false) => AuthorizationHeader::One(one),
            (Some(_), true) => AuthorizationHeader::Repeated,
        };
        match jwt
            .validate(authorization, &policy.identity, &self.metrics)
            .await
        {
            Ok(verified) => {
                if !roles.is_empty()
                    && !verified
                        .roles
                        .iter()
                        .any(|r| roles.iter().any(|need| **r == **need))
                {
                    ctx.identity = Some(verified);
                    self.respond(session, ctx, &GatewayError::insufficient_role())
                        .await?;
                    return Ok(true);
                }
                ctx.identity = Some(verified);
                Ok(false)
            }
            Err(rejection) => {
                let error = GatewayError::unauthorized(
                    rejection.code(),
                    rejection.description(),
                    rejection != TokenRejection::Missing,
                );
                self.respond(session, ctx, &error).await?;
                Ok(true)
            }
        }
    }
}

/// Headers the edge may add to a response (CORS, security, rate limits, request id).
const EDGE_HEADERS: usize = 16;
const X_REQUEST_ID: HeaderName = HeaderName::from_static(request_id::HEADER);
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
// Names the upstream request gets, parsed once (a `&str` name is parsed on every insert).
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_GARDIEN_IDENTITY: HeaderName =
    HeaderName::from_static(crate::edge::identity::SIGNATURE_HEADER);
/// Headers the gateway may add to an upstream request: request id, host, forwarded
/// host, for and proto, the identity headers and their signature.
const UPSTREAM_HEADERS: usize = 12;

/// A Pingora response header from a ready map (no per-header parsing or case map).
fn response_header(
    status: StatusCode,
    version: http::Version,
    headers: HeaderMap,
) -> ResponseHeader {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    ResponseHeader::from(parts)
}

/// The access-log line of a request: Cloud Logging's `httpRequest` (the path, never the
/// query; the client address of the rate limits).
fn access_log(session: &Session, ctx: &RequestCtx, status: u16, elapsed: Duration) {
    let request = session.req_header();
    let user_agent = request
        .headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    tracing::info!(
        target: "gardien::access",
        route = ctx.route_name(),
        "httpRequest.requestMethod" = request.method.as_str(),
        "httpRequest.requestUrl" = request.uri.path(),
        "httpRequest.status" = status,
        "httpRequest.latency" = format!("{:.6}s", elapsed.as_secs_f64()).as_str(),
        "httpRequest.remoteIp" = %ctx.client.ip,
        "httpRequest.userAgent" = user_agent.as_deref().unwrap_or(""),
        "httpRequest.responseSize" = session.body_bytes_sent() as u64,
        "httpRequest.protocol" = ?request.version,
        "request served"
    );
}

/// Total size of header names and values, as counted against `server.max_header_bytes`.
fn header_bytes(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// Maps a proxying failure to the answer and the `kind` label of
/// `gardien_upstream_errors_total`. `None`: the client is gone, nothing can be written.
fn classify(error: &Error, upstream: &str) -> Option<(GatewayError, Option<&'static str>)> {
    use ErrorType::*;
    let etype = error.etype();
    if let HTTPStatus(code) = etype {
        let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut answer = GatewayError::bad_request();
        answer.status = status;
        if status.is_server_error() {
            answer = GatewayError::internal();
        }
        return Some((answer, None));
    }
    match error.esource() {
        ErrorSource::Upstream => Some(match etype {
            ConnectTimedout | TLSHandshakeTimedout => (
                GatewayError::upstream_timeout(upstream),
                Some("connect_timeout"),
            ),
            ReadTimedout => (
                GatewayError::upstream_timeout(upstream),
                Some("read_timeout"),
            ),
            WriteTimedout => (
                GatewayError::upstream_timeout(upstream),
                Some("write_timeout"),
            ),
            ConnectRefused => (
                GatewayError::upstream_unreachable(upstream),
                Some("connect_refused"),
            ),
            TLSHandshakeFailure | InvalidCert | HandshakeError | TLSWantX509Lookup => {
                (GatewayError::upstream_unreachable(upstream), Some("tls"))
            }
            ConnectNoRoute | ConnectError | ConnectProxyFailure | SocketError | BindError => (
                GatewayError::upstream_unreachable(upstream),
                Some("connect_error"),
            ),
            _ => (GatewayError::upstream_error(upstream), Some("bad_response")),
        }),
        ErrorSource::Downstream => match etype {
            ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout => None,
            _ => Some((GatewayError::bad_request(), None)),
        },
        ErrorSource::Internal | ErrorSource::Unset => Some((GatewayError::internal(), None)),
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            policy: self.policy.load_full(),
            request_id: None,
            route: None,
            cors: CorsOutcome::NotCors,
            identity: None,
            rate_headers: Vec::new(),
            in_flight: None,
            upstream_failed: false,
            upstream_error: None,
            upstream_sent: None,
            client: ClientAddress {
                ip: std::net::IpAddr::from([0, 0, 0, 0]),
                forwarded: false,
            },
            trace: None,
            span: tracing::Span::none(),
        }
    }

    /// Identity headers stripped, request id, path check, route, CORS, token. Returns `true`
    /// when the gateway answered.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Only gardien sets identity headers, on every route: strip the client's first.
        ctx.policy.identity.strip_spoofed(session.req_header_mut());
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let request = session.req_header();
        ctx.client = ctx
            .policy
            .client_ip
            .resolve(peer, request.headers.get_all(X_FORWARDED_FOR).iter());
        ctx.request_id = Some(RequestId::from_client(
            request.headers.get(request_id::HEADER),
        ));
        let trace = RequestTrace::start(&request.headers, &ctx.client);
        ctx.span = gardien_telemetry::request_span(&trace.span);
        let id = ctx.request_id.as_ref().map_or("-", RequestId::as_str);
        ctx.span.record("request_id", id);
        ctx.trace = Some(trace);
        let span = ctx.span.clone();
        self.filter_request(session, ctx).instrument(span).await
    }

    /// The matched route's upstream, at its next resolved address.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let upstream = ctx
            .route
            .and_then(|i| ctx.policy.router.get(i))
            .and_then(|route| ctx.policy.upstream(route.upstream))
            .ok_or_else(|| {
                Error::explain(
                    ErrorType::InternalError,
                    "request reached upstream_peer without a route",
                )
            })?;
        match upstream.peer() {
            Some(peer) => Ok(Box::new(peer)),
            None => Err(Error::create(
                ErrorType::ConnectNoRoute,
                ErrorSource::Upstream,
                Some(format!("upstream `{}`: host name not resolved yet", upstream.name).into()),
                None,
            )),
        }
    }

    /// Sends the request id, the upstream's `Host`, the identity with its signature, and
    /// `X-Forwarded-*` upstream. The headers are set on the request's parts and the request
    /// rebuilt once, as `decorate` does for responses: `RequestHeader::insert_header`
    /// re-parses every name and keeps a second map of letter case, a sizeable share of the
    /// policy's per-request cost (callgrind, docs/BENCHMARKS.md). Names go upstream in lower
    /// case; the request target is kept byte for byte.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let policy = Arc::clone(&ctx.policy);
        let id = ctx.request_id().header_value().clone();
        // A target that does not round-trip through the URI (absolute form, non-UTF-8)
        // is restored after the rebuild.
        let uri_target = upstream_request
            .uri
            .path_and_query()
            .map(|p| p.as_str().as_bytes());
        let raw_target = (uri_target != Some(upstream_request.raw_path()))
            .then(|| upstream_request.raw_path().to_vec());
        let end_stream = upstream_request.send_end_stream();
        let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
        let mut parts =
            http::request::Parts::from(std::mem::replace(upstream_request, placeholder));
        let headers = &mut parts.headers;
        headers.reserve(UPSTREAM_HEADERS);
        headers.insert(X_REQUEST_ID, id);
        if let Some(trace) = &ctx.trace {
            trace.write_upstream(headers);
        }
        let upstream = ctx
            .route
            .and_then(|i| policy.router.get(i))
            .and_then(|route| policy.upstream(route.upstream));
        if let Some(upstream) = upstream {
            let incoming = &session.req_header().headers;
            if !upstream.preserve_host {
                // HTTP/2 carries the host in `:authority`, usually without a `Host` header.
                let host = incoming.get(header::HOST).cloned().or_else(|| {
                    let authority = session.req_header().uri.authority()?;
                    HeaderValue::from_str(authority.as_str()).ok()
                });
                if let Some(host) = host {
                    headers.insert(X_FORWARDED_HOST, host);
                }
                headers.insert(header::HOST, upstream.host_header.clone());
            }
            let identity: &[(http::HeaderName, HeaderValue)] =
                ctx.identity.as_ref().map_or(&[], |v| v.headers.as_slice());
            for (name, value) in identity {
                headers.insert(name.clone(), value.clone());
            }
            let signature = policy.identity.signature(
                parts.method.as_str(),
                parts.uri.path(),
                unix_now(),
                identity,
            );
            let headers = &mut parts.headers;
            if let Some(signature) = signature {
                headers.insert(X_GARDIEN_IDENTITY, signature);
            }
            headers.insert(X_FORWARDED_FOR, forwarded::forwarded_for(&ctx.client));
            headers.insert(
                X_FORWARDED_PROTO,
                forwarded::forwarded_proto(&ctx.client, incoming.get(X_FORWARDED_PROTO)),
            );
        }
        let mut rebuilt = RequestHeader::from(parts);
        if let Some(target) = raw_target {
            rebuilt.set_raw_path(&target)?;
        }
        if let Some(end_stream) = end_stream {
            rebuilt.set_send_end_stream(end_stream);
        }
        *upstream_request = rebuilt;
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    /// Upstream time: from sending the request to its response header.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            self.metrics
                .observe_upstream(ctx.upstream_name(), sent.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// CORS, security headers and the request id on the upstream's response.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.decorate(upstream_response, ctx);
        Ok(())
    }

    /// Upstream unreachable → `502`, too slow → `504`, both with the JSON error body.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let upstream = ctx.upstream_name().to_owned();
        let Some((answer, kind)) = classify(error, &upstream) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let request_id = ctx.request_id().as_str().to_owned();
        if let Some(kind) = kind {
            ctx.upstream_failed = true;
            ctx.upstream_error = Some(kind);
            self.metrics.upstream_error(&upstream, kind);
            ctx.span.in_scope(|| {
                tracing::warn!(
                    upstream = upstream.as_str(),
                    kind,
                    request_id = request_id.as_str(),
                    error = %error,
                    "upstream request failed"
                );
            });
        } else if answer.status.is_server_error() {
            ctx.span.in_scope(|| {
                tracing::error!(request_id = request_id.as_str(), error = %error, "request failed");
            });
        }
        let status = answer.status.as_u16();
        if session.response_written().is_none() {
            // The connection is not reused (`can_reuse_downstream: false` below): say so in
            // the answer, as Pingora's own error responses do, so a keep-alive client does
            // not send its next request on a socket being closed.
            session.set_keepalive(None);
            if let Err(e) = self.respond(session, ctx, &answer).await {
                tracing::debug!(error = %e, "could not write the error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// Metrics for every request, answered by the upstream or by the gateway.
    async fn logging(&self, session: &mut Session, _error: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let seconds = elapsed.as_secs_f64();
        // Only exchanges that reached (or tried) the upstream say anything about its health.
        if ctx.in_flight.take().is_some() {
            if let (Some(settings), Some(load)) = (
                &ctx.policy.adaptive,
                ctx.route
                    .and_then(|i| ctx.policy.router.get(i))
                    .and_then(|r| ctx.policy.loads.get(r.upstream)),
            ) {
                let failed = ctx.upstream_failed || status >= 500;
                load.record(elapsed, failed, Instant::now(), settings.interval);
            }
        }
        let method = &session.req_header().method;
        self.metrics
            .observe_request(ctx.route_name(), method, status, seconds);
        // Sampled first: an unsampled request formats nothing.
        if gardien_telemetry::sample(ctx.policy.server.access_log_sample) {
            ctx.span
                .in_scope(|| access_log(session, ctx, status, elapsed));
            return;
        }
        tracing::debug!(
            target: "gardien::access",
            method = %method,
            path = session.req_header().uri.path(),
            status,
            route = ctx.route_name(),
            remote_ip = %ctx.client.ip,
            request_id = ctx.request_id.as_ref().map_or("-", RequestId::as_str),
            seconds,
        );
    }

    /// Upstream failures are logged (once, at warn, with the request id) by `fail_to_proxy`;
    /// Pingora's own error line for them would only repeat it.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        error.esource() == &ErrorSource::Upstream
    }

    /// Pingora's own error log line, with our request id.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        format!(
            "{} {} route={} request_id={}",
            session.req_header().method,
            session.req_header().uri.path(),
            ctx.route_name(),
            ctx.request_id.as_ref().map_or("-", RequestId::as_str)
        )
    }
}
