//! The gateway's Prometheus metrics, in a registry of its own (not the process-global one)
//! so tests can build several gateways in one process.
//!
//! Label values are bounded: routes come from the policy (`unmatched` otherwise), methods
//! are the standard ones (`OTHER` otherwise), statuses are classes (`2xx`).
//!
//! The registry also carries the process's CPU, memory and open files (the `prometheus`
//! crate's process collector, Linux only) and `gardien_build_info`.

use http::Method;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use std::sync::Arc;

use super::request_window::RequestWindow;
use crate::edge::cors::CorsRefusal;

/// Latency buckets in seconds: from sub-millisecond gateway answers to slow upstreams.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The version and git commit of this build (`unknown` when built without git).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = match option_env!("GARDIEN_GIT_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_duration: HistogramVec,
    policy_info: IntGaugeVec,
    policy_loaded: Gauge,
    upstream_errors: IntCounterVec,
    cors_rejections: IntCounterVec,
    upstream_up: IntGaugeVec,
    policy_reloads: IntCounterVec,
    secret_refreshes: IntCounterVec,
    jwt_validations: IntCounterVec,
    jwt_cache_hit: prometheus::IntCounter,
    jwt_cache_miss: prometheus::IntCounter,
    jwks_refreshes: IntCounterVec,
    jwks_age: GaugeVec,
    rate_limit_decisions: IntCounterVec,
    rate_limit_store: IntGaugeVec,
    rate_limit_fallbacks: prometheus::IntCounter,
    adaptive_factor: GaugeVec,
    in_flight: IntGaugeVec,
    shed: IntCounterVec,
    connections_open: prometheus::IntGauge,
    connections_refused: prometheus::IntCounter,
    upstream_health_checks: IntCounterVec,
    upstream_health_check_seconds: HistogramVec,
    /// The last minutes of traffic, for `/status` (not exported: Prometheus has the rest).
    window: Arc<RequestWindow>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gardien_requests_total",
                "Requests answered, by route, method and status class",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gardien_request_duration_seconds",
                "Time from request to the end of the response, by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "gardien_upstream_duration_seconds",
                "Time from sending the request upstream to its response header, by upstream",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["upstream"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "gardien_build_info",
                "1, labelled with the version and git commit of the running gateway",
            ),
            &["version", "commit"],
        )?;
        build_info.with_label_values(&[VERSION, COMMIT]).set(1);
        let policy_info = IntGaugeVec::new(
            Opts::new(
                "gardien_policy_info",
                "1, labelled with the content hash of the policy file serving",
            ),
            &["hash"],
        )?;
        let policy_loaded = Gauge::new(
            "gardien_policy_loaded_timestamp_seconds",
            "Unix time the serving policy was loaded (start or last applied reload)",
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "gardien_upstream_errors_total",
                "Failed upstream exchanges, by upstream and kind",
            ),
            &["upstream", "kind"],
        )?;
        let cors_rejections = IntCounterVec::new(
            Opts::new(
                "gardien_cors_rejections_total",
                "CORS requests refused, by reason",
            ),
            &["reason"],
        )?;
        let upstream_up = IntGaugeVec::new(
            Opts::new(
                "gardien_upstream_up",
                "1 when the upstream passes its health check (without one: when the last readiness probe connected)",
            ),
            &["upstream"],
        )?;
        let policy_reloads = IntCounterVec::new(
            Opts::new("gardien_policy_reloads_total", "Policy reloads, by result"),
            &["result"],
        )?;
        let secret_refreshes = IntCounterVec::new(
            Opts::new(
                "gardien_secret_refreshes_total",
                "Secret lookups on refresh, by result (failed: the last good value was kept)",
            ),
            &["result"],
        )?;
        let jwt_validations = IntCounterVec::new(
            Opts::new(
                "gardien_jwt_validations_total",
                "JWT validations, by issuer, result and reason",
            ),
            &["issuer", "result", "reason"],
        )?;
        let jwt_cache = IntCounterVec::new(
            Opts::new(
                "gardien_jwt_cache_total",
                "Verified-token cache lookups, by result (hit, miss)",
            ),
            &["result"],
        )?;
        let jwks_refreshes = IntCounterVec::new(
            Opts::new(
                "gardien_jwks_refresh_total",
                "JWKS fetches, by issuer and result",
            ),
            &["issuer", "result"],
        )?;
        let jwks_age = GaugeVec::new(
            Opts::new(
                "gardien_jwks_age_seconds",
                "Seconds since the issuer's key set was last fetched",
            ),
            &["issuer"],
        )?;
        let rate_limit_decisions = IntCounterVec::new(
            Opts::new(
                "gardien_rate_limit_decisions_total",
                "Rate-limit decisions, by rule and result (allowed, limited)",
            ),
            &["rule", "result"],
        )?;
        let rate_limit_store = IntGaugeVec::new(
            Opts::new(
                "gardien_rate_limit_store",
                "1 for the state the rate-limit store is in (local, redis, fallback)",
            ),
            &["state"],
        )?;
        let rate_limit_fallbacks = prometheus::IntCounter::new(
            "gardien_rate_limit_fallbacks_total",
            "Switches from Redis to local rate limiting",
        )?;
        let adaptive_factor = GaugeVec::new(
            Opts::new(
                "gardien_adaptive_factor",
                "Factor applied to the rate limits of an upstream's routes (1 = as written)",
            ),
            &["upstream"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "gardien_upstream_in_flight",
                "Requests in flight to an upstream",
            ),
            &["upstream"],
        )?;
        let shed = IntCounterVec::new(
            Opts::new(
                "gardien_upstream_shed_total",
                "Requests answered 503 because an upstream had max_in_flight requests",
            ),
            &["upstream"],
        )?;
        let connections_open = prometheus::IntGauge::new(
            "gardien_connections_open",
            "Client connections open on the proxy listener",
        )?;
        let connections_refused = prometheus::IntCounter::new(
            "gardien_connections_refused_total",
            "Client connections closed at accept because server.max_connections were open",
        )?;
        let upstream_health_checks = IntCounterVec::new(
            Opts::new(
                "gardien_upstream_health_checks_total",
                "HTTP health-check probes of an upstream, by result (ok or why it failed)",
            ),
            &["upstream", "result"],
        )?;
        let upstream_health_check_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gardien_upstream_health_check_seconds",
                "Duration of an upstream's HTTP health-check probes, passing or not",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["upstream"],
        )?;
        registry.register(Box::new(upstream_health_checks.clone()))?;
        registry.register(Box::new(upstream_health_check_seconds.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(policy_info.clone()))?;
        registry.register(Box::new(policy_loaded.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(connections_open.clone()))?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(rate_limit_decisions.clone()))?;
        registry.register(Box::new(rate_limit_store.clone()))?;
        registry.register(Box::new(rate_limit_fallbacks.clone()))?;
        registry.register(Box::new(adaptive_factor.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(shed.clone()))?;
        registry.register(Box::new(jwt_validations.clone()))?;
        registry.register(Box::new(jwt_cache.clone()))?;
        registry.register(Box::new(jwks_refreshes.clone()))?;
        registry.register(Box::new(jwks_age.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(cors_rejections.clone()))?;
        registry.register(Box::new(upstream_up.clone()))?;
        registry.register(Box::new(policy_reloads.clone()))?;
        registry.register(Box::new(secret_refreshes.clone()))?;
        for result in ["ok", "failed"] {
            secret_refreshes.with_label_values(&[result]);
        }
        // Publish the zero of every reason so dashboards and alerts see the series at once.
        for reason in CorsRefusal::ALL {
            cors_rejections.with_label_values(&[reason.as_str()]);
        }
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_duration,
            policy_info,
            policy_loaded,
            upstream_errors,
            cors_rejections,
            upstream_up,
            policy_reloads,
            secret_refreshes,
            jwt_validations,
            jwt_cache_hit: jwt_cache.with_label_values(&["hit"]),
            jwt_cache_miss: jwt_cache.with_label_values(&["miss"]),
            jwks_refreshes,
            jwks_age,
            rate_limit_decisions,
            rate_limit_store,
            rate_limit_fallbacks,
            adaptive_factor,
            in_flight,
            shed,
            connections_open,
            connections_refused,
            upstream_health_checks,
            upstream_health_check_seconds,
            window: Arc::new(RequestWindow::new()),
        })
    }

    /// Counts one answered request and its latency.
    pub fn observe_request(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method_label(method), status_class(status)])
            .inc();
        self.duration.with_label_values(&[route]).observe(seconds);
        self.window.record(status);
    }

    /// Requests and 5xx answers of the last minutes, counted by [`Self::observe_request`].
    pub fn request_window(&self) -> &RequestWindow {
        &self.window
    }

    /// Seconds from sending the request to `upstream` to its response header.
    pub fn observe_upstream(&self, upstream: &str, seconds: f64) {
        self.upstream_duration
            .with_label_values(&[upstream])
            .observe(seconds);
    }

    /// The policy now serving: its content hash (the only `gardien_policy_info` series)
    /// and when it was loaded.
    pub fn set_policy(&self, hash: &str, loaded_unix_seconds: f64) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[hash]).set(1);
        self.policy_loaded.set(loaded_unix_seconds);
    }

    pub fn upstream_error(&self, upstream: &str, kind: &str) {
        self.upstream_errors
            .with_label_values(&[upstream, kind])
            .inc();
    }

    pub fn cors_rejection(&self, reason: CorsRefusal) {
        self.cors_rejections
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub fn set_upstream_up(&self, upstream: &str, up: bool) {
        self.upstream_up
            .with_label_values(&[upstream])
            .set(i64::from(up));
    }

    /// One health-check probe: `result` is `ok` or a kind of `upstream_health::RESULTS`.
    pub fn upstream_health_check(&self, upstream: &str, result: &str, seconds: f64) {
        self.upstream_health_checks
            .with_label_values(&[upstream, result])
            .inc();
        self.upstream_health_check_seconds
            .with_label_values(&[upstream])
            .observe(seconds);
    }

    pub fn policy_reload(&self, result: &str) {
        self.policy_reloads.with_label_values(&[result]).inc();
    }

    /// One refresh of the secrets: `ok` lookups, and `failed` ones that kept a last good
    /// value.
    pub fn secret_refresh(&self, ok: usize, failed: usize) {
        self.secret_refreshes
            .with_label_values(&["ok"])
            .inc_by(ok as u64);
        self.secret_refreshes
            .with_label_values(&["failed"])
            .inc_by(failed as u64);
    }

    /// One JWT validation; `rejection` is the code of the refusal, `None` when valid.
    pub fn jwt_validation(&self, issuer: &str, rejection: Option<&str>) {
        let (result, reason) = match rejection {
            None => ("valid", "ok"),
            Some(code) => ("invalid", code),
        };
        self.jwt_validations
            .with_label_values(&[issuer, result, reason])
            .inc();
    }

    /// The counter of an issuer's valid tokens, for it to keep.
    pub fn jwt_valid_counter(&self, issuer: &str) -> prometheus::IntCounter {
        self.jwt_validations
            .with_label_values(&[issuer, "valid", "ok"])
    }

    pub fn jwt_cache(&self, hit: bool) {
        if hit {
            self.jwt_cache_hit.inc();
        } else {
            self.jwt_cache_miss.inc();
        }
    }

    pub fn jwks_refresh(&self, issuer: &str, ok: bool) {
        self.jwks_refreshes
            .with_label_values(&[issuer, if ok { "ok" } else { "error" }])
            .inc();
    }

    pub fn set_jwks_age(&self, issuer: &str, seconds: f64) {
        self.jwks_age.with_label_values(&[issuer]).set(seconds);
    }

    /// The `(allowed, limited)` decision counters of a rule, for it to keep.
    pub fn rate_limit_counters(
        &self,
        rule: &str,
    ) -> (prometheus::IntCounter, prometheus::IntCounter) {
        (
            self.rate_limit_decisions
                .with_label_values(&[rule, "allowed"]),
            self.rate_limit_decisions
                .with_label_values(&[rule, "limited"]),
        )
    }

    /// Marks the store's current state (the others go to 0).
    pub fn set_rate_limit_store(&self, state: crate::edge::rate_limit::StoreState) {
        self.set_store_state(state.as_str());
    }

    pub fn set_store_state(&self, current: &str) {
        for state in ["local", "redis", "fallback"] {
            self.rate_limit_store
                .with_label_values(&[state])
                .set(i64::from(state == current));
        }
    }

    pub fn rate_limit_fallback(&self) {
        self.rate_limit_fallbacks.inc();
    }

    pub fn set_adaptive_factor(&self, upstream: &str, factor: f64) {
        self.adaptive_factor
            .with_label_values(&[upstream])
            .set(factor);
    }

    pub fn set_in_flight(&self, upstream: &str, in_flight: usize) {
        self.in_flight
            .with_label_values(&[upstream])
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    pub fn shed(&self, upstream: &str) {
        self.shed.with_label_values(&[upstream]).inc();
    }

    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut out).is_err() {
            out.clear();
        }
        out
    }
}

/// The content hash `gardien_policy_info` carries: the first 12 hex digits of the SHA-256
/// of the policy file as written (before `${VAR}` expansion, so no secret goes in).
pub fn policy_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Now, in Unix seconds (0 before 1970).
pub fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counted_requests_with_bounded_labels() {
        let metrics = Metrics::new().expect("metrics");
        metrics.observe_request(
            "api",
            &Method::from_bytes(b"BREW").expect("method"),
            503,
            0.01,
        );
        metrics.cors_rejection(CorsRefusal::OriginNotAllowed);
        let text = String::from_utf8(metrics.render()).expect("utf8");
        assert!(
            text.contains(r#"gardien_requests_total{method="OTHER",route="api",status="5xx"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"gardien_cors_rejections_total{reason="origin_not_allowed"} 1"#));
        assert!(text.contains(r#"gardien_cors_rejections_total{reason="malformed_origin"} 0"#));
        assert!(text.contains("gardien_request_duration_seconds_bucket"));
    }

    #[test]
    fn renders_upstream_time_build_policy_and_process() {
        let metrics = Metrics::new().expect("metrics");
        metrics.observe_upstream("api", 0.02);
        metrics.set_policy("aaaa", 1.0);
        metrics.set_policy("0123456789ab", 1_700_000_000.0);
        let text = String::from_utf8(metrics.render()).expect("utf8");
        assert!(
            text.contains(
                r#"gardien_upstream_duration_seconds_bucket{upstream="api",le="0.025"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"gardien_upstream_duration_seconds_count{upstream="api"} 1"#));
        assert!(text.contains(r#"gardien_policy_info{hash="0123456789ab"} 1"#));
        assert!(!text.contains(r#"hash="aaaa""#), "{text}");
        assert!(text.contains("gardien_policy_loaded_timestamp_seconds 1700000000"));
        assert!(text.contains(&format!(
            r#"gardien_build_info{{commit="{COMMIT}",version="{VERSION}"}} 1"#
        )));
        for series in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(text.contains(series), "{series} missing: {text}");
        }
    }
}
