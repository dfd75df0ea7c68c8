//! HTTP health checks of upstreams (`upstreams.<name>.health`).
//!
//! A TCP connect proves little behind a load balancer (a Cloud Run URL on 443 always
//! accepts), so an upstream may name a path that must answer `2xx`. It is probed in the
//! background on its interval, never on the request path: one probe in flight per
//! upstream, through the upstream's own resolved addresses, TLS settings and `Host`. The
//! last result feeds `gardien_upstream_up`, `/readyz` and `/status`; upstreams without a
//! check keep the TCP probe of `crate::admin::readiness`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::header;
use http::uri::PathAndQuery;
use parking_lot::Mutex;
use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::ErrorType;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::admin::metrics::Metrics;
use crate::policy::schema::HealthSpec;
use crate::policy::{Diagnostics, Policy};
use crate::upstream::Upstream;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_HEALTHY_AFTER: u32 = 1;
const DEFAULT_UNHEALTHY_AFTER: u32 = 2;
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(600);
const MIN_TIMEOUT: Duration = Duration::from_millis(10);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_CONSECUTIVE: u32 = 10;
/// How often the checker looks for due probes: well under the shortest interval.
const TICK: Duration = Duration::from_millis(25);
/// Largest health-check body kept as details (a JSON body, such as gardien-backend's
/// `/readyz`); a longer one is not kept.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// Every value of the `result` label of `gardien_upstream_health_checks_total`: `ok`, or
/// why the probe failed.
pub const RESULTS: [&str; 8] = [
    "ok",
    "status",
    "timeout",
    "connect_refused",
    "connect_error",
    "tls",
    "bad_response",
    "unresolved",
];

/// The validated settings of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Path (and query) requested with `GET`.
    pub path: String,
    pub interval: Duration,
    /// The whole probe (connect, TLS, request, response head) must end within this.
    pub timeout: Duration,
    /// Consecutive passing probes that bring a down upstream up.
    pub healthy_after: u32,
    /// Consecutive failing probes that take an up upstream down.
    pub unhealthy_after: u32,
}

/// One upstream's health check: its settings and what its probes found.
#[derive(Debug)]
pub struct HealthCheck {
    pub settings: HealthSettings,
    in_flight: AtomicBool,
    state: Mutex<HealthState>,
}

#[derive(Debug, Clone, Default)]
struct HealthState {
    /// `None` until the first probe ends; the first result counts at once, later ones
    /// after `healthy_after` / `unhealthy_after` in a row.
    up: Option<bool>,
    passes: u32,
    failures: u32,
    last: Option<Probe>,
    started_at: Option<Instant>,
}

/// The outcome of one probe.
#[derive(Debug, Clone)]
pub struct Probe {
    pub status: Option<u16>,
    /// `None` when the upstream answered 2xx.
    pub failure: Option<Failure>,
    pub latency: Duration,
    pub ended_at: Instant,
    /// The response body when it was JSON of at most [`MAX_DETAILS_BYTES`].
    pub details: Option<serde_json::Value>,
}

/// Why a probe failed: a bounded kind (one of [`RESULTS`]) and a message for people.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
}

/// What `/readyz` and `/status` show of a health check.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub path: String,
    /// `None` while no probe has ended.
    pub up: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_seconds_ago: Option<f64>,
    /// The last probe's JSON body (gardien-backend's `/readyz`: database, circuits, outbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl HealthCheck {
    /// Validates `upstreams.<name>.health`, reporting every problem with its field path.
    pub fn compile(name: &str, spec: &HealthSpec, diag: &mut Diagnostics) -> Option<HealthCheck> {
        let field = |f: &str| format!("upstreams.{name}.health.{f}");
        let mut valid = true;
        let path = spec.path.trim();
        if !path.starts_with('/') {
            diag.error(field("path"), format!("`{path}` must start with `/`"));
            valid = false;
        } else if path.contains('#') || path.parse::<PathAndQuery>().is_err() {
            diag.error(
                field("path"),
                format!("`{path}` is not a request path (no spaces, no fragment)"),
            );
            valid = false;
        }
        let interval = spec.interval.unwrap_or(DEFAULT_INTERVAL);
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            diag.error(
                field("interval"),
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(MIN_INTERVAL),
                    humantime::format_duration(MAX_INTERVAL)
                ),
            );
            valid = false;
        }
        let timeout = spec.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
            diag.error(
                field("timeout"),
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(MIN_TIMEOUT),
                    humantime::format_duration(MAX_TIMEOUT)
                ),
            );
            valid = false;
        } else if timeout >= interval {
            diag.error(
                field("timeout"),
                format!(
                    "must be less than the interval ({}): one probe at a time",
                    humantime::format_duration(interval)
                ),
            );
            valid = false;
        }
        let mut consecutive = |f: &str, value: Option<u32>, default: u32| {
            let value = value.unwrap_or(default);
            if !(1..=MAX_CONSECUTIVE).contains(&value) {
                diag.error(field(f), format!("must be between 1 and {MAX_CONSECUTIVE}"));
                valid = false;
            }
            value
        };
        let healthy_after = consecutive("healthy_after", spec.healthy_after, DEFAULT_HEALTHY_AFTER);
        let unhealthy_after = consecutive(
            "unhealthy_after",
            spec.unhealthy_after,
            DEFAULT_UNHEALTHY_AFTER,
        );
        valid.then(|| {
            HealthCheck::new(HealthSettings {
                path: path.to_owned(),
                interval,
                timeout,
                healthy_after,
                unhealthy_after,
            })
        })
    }

    pub fn new(settings: HealthSettings) -> Self {
        HealthCheck {
            settings,
            in_flight: AtomicBool::new(false),
            state: Mutex::new(HealthState::default()),
        }
    }

    /// Takes over what the running policy's check of the same target found, so a reload
    /// neither forgets nor re-decides the upstream's health. A changed path is a new check.
    pub fn adopt(&self, previous: &HealthCheck) {
        if previous.settings.path == self.settings.path {
            *self.state.lock() = previous.state.lock().clone();
        }
    }

    /// Whether the upstream passed its check; `None` before any probe ended.
    pub fn up(&self) -> Option<bool> {
        self.state.lock().up
    }

    pub fn report(&self) -> HealthReport {
        let state = self.state.lock();
        let last = state.last.as_ref();
        HealthReport {
            path: self.settings.path.clone(),
            up: state.up,
            status_code: last.and_then(|p| p.status),
            error_kind: last.and_then(|p| p.failure.as_ref()).map(|f| f.kind),
            error: last
                .and_then(|p| p.failure.as_ref())
                .map(|f| f.message.clone()),
            latency_ms: last.map(|p| p.latency.as_secs_f64() * 1000.0),
            checked_seconds_ago: last.map(|p| p.ended_at.elapsed().as_secs_f64()),
            details: last.and_then(|p| p.details.clone()),
        }
    }

    /// Whether a probe should start now: none in flight and the interval passed.
    fn due(&self, now: Instant) -> bool {
        !self.in_flight.load(Ordering::Acquire)
            && self
                .state
                .lock()
                .started_at
                .is_none_or(|at| now.duration_since(at) >= self.settings.interval)
    }

    /// Claims the one probe slot; `None` when a probe is already in flight.
    fn begin(&self) -> Option<InFlight<'_>> {
        self.in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        self.state.lock().started_at = Some(Instant::now());
        Some(InFlight(&self.in_flight))
    }

    /// Counts one probe's result; returns whether the upstream is up now.
    fn record(&self, probe: Probe) -> bool {
        let mut state = self.state.lock();
        let passed = probe.failure.is_none();
        if passed {
            state.passes = state.passes.saturating_add(1);
            state.failures = 0;
        } else {
            state.failures = state.failures.saturating_add(1);
            state.passes = 0;
        }
        let up = match state.up {
            None => passed,
            Some(false) => state.passes >= self.settings.healthy_after,
            Some(true) => state.failures < self.settings.unhealthy_after,
        };
        state.up = Some(up);
        state.last = Some(probe);
        up
    }
}

/// Releases the probe slot when the probe ends, however it ends.
struct InFlight<'a>(&'a AtomicBool);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Probes `upstream` once (when no probe of it is in flight) and publishes the result.
pub async fn check(upstream: &Upstream, metrics: &Metrics) {
    let Some(health) = &upstream.health else {
        return;
    };
    let Some(_slot) = health.begin() else { return };
    let probe = probe(upstream, &health.settings).await;
    let result = probe.failure.as_ref().map_or("ok", |f| f.kind);
    metrics.upstream_health_check(&upstream.name, result, probe.latency.as_secs_f64());
    if let Some(failure) = &probe.failure {
        tracing::debug!(
            upstream = upstream.name.as_str(),
            kind = failure.kind,
            "{}",
            failure.message
        );
    }
    let was = health.up();
    let up = health.record(probe);
    metrics.set_upstream_up(&upstream.name, up);
    if was != Some(up) {
        let report = health.report();
        if up {
            tracing::info!(
                upstream = upstream.name.as_str(),
                path = report.path.as_str(),
                "upstream health check passes"
            );
        } else {
            tracing::warn!(
                upstream = upstream.name.as_str(),
                path = report.path.as_str(),
                error = report.error.as_deref().unwrap_or_default(),
                "upstream health check fails"
            );
        }
    }
}

/// Probes, concurrently, every health check of `policy` that has no result yet (a new
/// policy, or a changed path), so a policy serves with its upstreams' health known. Each
/// probe is bounded by its check's timeout.
pub async fn first_checks(policy: &Policy, metrics: &Metrics) {
    let unknown = policy
        .upstreams
        .iter()
        .filter(|u| u.health.as_ref().is_some_and(|h| h.up().is_none()))
        .map(|u| check(u, metrics));
    futures::future::join_all(unknown).await;
}

/// One `GET <path>` to the next address of `upstream`, bounded by the check's timeout.
pub async fn probe(upstream: &Upstream, settings: &HealthSettings) -> Probe {
    // Built once (TLS roots loaded) outside the probe's time.
    let connector = connector();
    let started = Instant::now();
    let outcome = match upstream.peer() {
        None => Err(Failure {
            kind: "unresolved",
            message: "host name not resolved".to_owned(),
        }),
        Some(mut peer) => {
            let options = &mut peer.options;
            options.connection_timeout = Some(upstream.connect_timeout.min(settings.timeout));
            options.read_timeout = Some(settings.timeout);
            options.write_timeout = Some(settings.timeout);
            match tokio::time::timeout(
                settings.timeout,
                exchange(connector, &peer, upstream, settings),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure {
                    kind: "timeout",
                    message: format!("no answer within {}ms", settings.timeout.as_millis()),
                }),
            }
        }
    };
    let latency = started.elapsed();
    let (status, failure, details) = match outcome {
        Ok((status, details)) if (200..300).contains(&status) => (Some(status), None, details),
        Ok((status, details)) => (
            Some(status),
            Some(Failure {
                kind: "status",
                message: format!("GET {} answered {status}", settings.path),
            }),
            details,
        ),
        Err(failure) => (None, Some(failure), None),
    };
    Probe {
        status,
        failure,
        latency,
        ended_at: Instant::now(),
        details,
    }
}

/// One connector for every probe; probes never return connections to its pool, so each
/// one proves a fresh connect (and TLS handshake) works.
fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| Connector::new(None))
}

async fn exchange(
    connector: &Connector,
    peer: &pingora::upstreams::peer::HttpPeer,
    upstream: &Upstream,
    settings: &HealthSettings,
) -> Result<(u16, Option<serde_json::Value>), Failure> {
    let (mut session, _reused) = connector
        .get_http_session(peer)
        .await
        .map_err(|e| classify(&e))?;
    let mut request =
        RequestHeader::build("GET", settings.path.as_bytes(), None).map_err(|e| classify(&e))?;
    let headers = [
        (header::HOST, upstream.host_header.clone()),
        (
            header::USER_AGENT,
            http::HeaderValue::from_static("gardien-health-check"),
        ),
        (header::CONNECTION, http::HeaderValue::from_static("close")),
    ];
    for (name, value) in headers {
        request
            .insert_header(name, value)
            .map_err(|e| classify(&e))?;
    }
    session
        .write_request_header(Box::new(request))
        .await
        .map_err(|e| classify(&e))?;
    session.read_response().await.map_err(|e| classify(&e))?;
    let status = session.get_status().map(|s| s.as_u16());
    let details = if is_json(session.get_header(header::CONTENT_TYPE)) {
        read_details(&mut session).await
    } else {
        None
    };
    session.shutdown().await;
    let status = status.ok_or_else(|| Failure {
        kind: "bad_response",
        message: "no status line".to_owned(),
    })?;
    Ok((status, details))
}

/// `application/json` or a `+json` type: a body worth keeping as details.
fn is_json(content_type: Option<&http::HeaderValue>) -> bool {
    let Some(media_type) = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
    else {
        return false;
    };
    let media_type = media_type.trim().to_ascii_lowercase();
    media_type == "application/json" || media_type.ends_with("+json")
}

/// The body as JSON, when it is whole, at most [`MAX_DETAILS_BYTES`] and parses. A body
/// that cannot be read says nothing about health here: the status line decided that.
async fn read_details(
    session: &mut pingora::protocols::http::v1::client::HttpSession,
) -> Option<serde_json::Value> {
    let mut body = Vec::new();
    while let Some(chunk) = session.read_body_ref().await.ok()? {
        if body.len() + chunk.len() > MAX_DETAILS_BYTES {
            return None;
        }
        body.extend_from_slice(chunk);
    }
    serde_json::from_slice(&body).ok()
}

/// The bounded kind of a connector or protocol error, as `gardien_upstream_errors_total`
/// names them.
fn classify(error: &pingora::Error) -> Failure {
    use ErrorType::*;
    let kind = match error.etype() {
        ConnectTimedout | TLSHandshakeTimedout | ReadTimedout | WriteTimedout => "timeout",
        ConnectRefused => "connect_refused",
        TLSHandshakeFailure | InvalidCert | HandshakeError | TLSWantX509Lookup => "tls",
        ConnectNoRoute | ConnectError | ConnectProxyFailure | SocketError | BindError => {
            "connect_error"
        }
        _ => "bad_response",
    };
    Failure {
        kind,
        message: error.to_string().trim().to_owned(),
    }
}

/// The background service: starts each due probe in its own task, so a slow upstream
/// never delays another's check.
#[derive(Debug)]
pub struct HealthChecker {
    pub policy: Arc<ArcSwap<Policy>>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut probes = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            while probes.try_join_next().is_some() {}
            let policy = self.policy.load_full();
            let now = Instant::now();
            for (index, upstream) in policy.upstreams.iter().enumerate() {
                if upstream.health.as_ref().is_some_and(|h| h.due(now)) {
                    let (policy, metrics) = (Arc::clone(&policy), Arc::clone(&self.metrics));
                    probes.spawn(async move {
                        if let Some(upstream) = policy.upstreams.get(index) {
                            check(upstream, &metrics).await;
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str) -> HealthSpec {
        HealthSpec {
            path: path.into(),
            interval: None,
            timeout: None,
            healthy_after: None,
            unhealthy_after: None,
        }
    }

    fn problems(spec: &HealthSpec) -> Vec<(String, String)> {
        let mut diag = Diagnostics::default();
        let check = HealthCheck::compile("api", spec, &mut diag);
        assert_eq!(check.is_none(), diag.has_errors());
        diag.errors()
            .iter()
            .map(|p| (p.path.clone(), p.message.clone()))
            .collect()
    }

    fn probe(passed: bool) -> Probe {
        Probe {
            status: Some(if passed { 200 } else { 503 }),
            failure: (!passed).then(|| Failure {
                kind: "status",
                message: "503".into(),
            }),
            latency: Duration::from_millis(1),
            ended_at: Instant::now(),
            details: None,
        }
    }

    #[test]
    fn only_json_bodies_are_kept_as_details() {
        let json = |v: &'static str| is_json(Some(&http::HeaderValue::from_static(v)));
        assert!(json("application/json"));
        assert!(json("Application/JSON; charset=utf-8"));
        assert!(json("application/health+json"));
        assert!(!json("text/plain"));
        assert!(!json("text/json-ish"));
        assert!(!is_json(None));
    }

    #[test]
    fn defaults_apply() {
        let mut diag = Diagnostics::default();
        let check = HealthCheck::compile("api", &spec("/api/health"), &mut diag).expect("valid");
        assert_eq!(
            check.settings,
            HealthSettings {
                path: "/api/health".into(),
                interval: DEFAULT_INTERVAL,
                timeout: DEFAULT_TIMEOUT,
                healthy_after: 1,
                unhealthy_after: 2,
            }
        );
    }

    #[test]
    fn bad_settings_are_reported_with_their_field_paths() {
        assert_eq!(
            problems(&spec("api/health"))[0].0,
            "upstreams.api.health.path"
        );
        assert_eq!(problems(&spec("/a b"))[0].0, "upstreams.api.health.path");
        let mut s = spec("/health");
        s.interval = Some(Duration::from_secs(1));
        s.timeout = Some(Duration::from_secs(1));
        let found = problems(&s);
        assert_eq!(found[0].0, "upstreams.api.health.timeout");
        assert!(found[0].1.contains("less than the interval"), "{found:?}");
        let mut s = spec("/health");
        s.interval = Some(Duration::from_millis(10));
        s.healthy_after = Some(0);
        s.unhealthy_after = Some(11);
        let paths: Vec<_> = problems(&s).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "upstreams.api.health.interval",
                "upstreams.api.health.timeout",
                "upstreams.api.health.healthy_after",
                "upstreams.api.health.unhealthy_after",
            ]
        );
    }

    /// Every problem of a policy whose `api` upstream has `health: <health>`.
    fn policy_problems(health: &str) -> Vec<String> {
        let text = format!(
            r#"
environment: dev
listen: "127.0.0.1:8080"
admin_listen: "127.0.0.1:9090"
upstreams:
  api: {{ url: "http://127.0.0.1:3000", health: {health} }}
routes:
  - {{ name: api, prefix: /api/, upstream: api, auth: public }}
cors:
  origins: ["http://localhost:5173"]
"#
        );
        let env = std::collections::HashMap::<String, String>::new();
        match crate::policy::parse(&text, &env) {
            Ok(loaded) => {
                assert!(loaded.policy.upstreams[0].health.is_some());
                Vec::new()
            }
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect(),
        }
    }

    #[test]
    fn a_policy_reports_health_problems_with_their_field_paths() {
        assert!(policy_problems("{ path: /api/health, interval: 5s, timeout: 1s }").is_empty());
        let found = policy_problems("{ path: /h, intervall: 5s }");
        assert!(
            found[0].starts_with("upstreams.api.health.intervall: unknown field"),
            "{found:?}"
        );
        let found = policy_problems("{ interval: 5s }");
        assert!(
            found[0].starts_with("upstreams.api.health: missing field `path`"),
            "{found:?}"
        );
        let found = policy_problems("{ path: health, interval: 1s, timeout: 2s }");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("upstreams.api.health.path: "),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("upstreams.api.health.timeout: "),
            "{found:?}"
        );
    }

    #[test]
    fn the_first_result_counts_then_thresholds_apply() {
        let check = HealthCheck::new(HealthSettings {
            path: "/h".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(100),
            healthy_after: 2,
            unhealthy_after: 2,
        });
        assert_eq!(check.up(), None);
        assert!(!check.record(probe(false)), "down at once from unknown");
        assert!(!check.record(probe(true)), "one pass of two");
        assert!(check.record(probe(true)));
        assert!(check.record(probe(false)), "one failure of two");
        assert!(check.record(probe(true)), "a pass resets the failures");
        assert!(check.record(probe(false)));
        assert!(!check.record(probe(false)));
    }

    #[test]
    fn one_probe_in_flight_and_the_interval_between_starts() {
        let check = HealthCheck::new(HealthSettings {
            path: "/h".into(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            healthy_after: 1,
            unhealthy_after: 1,
        });
        assert!(check.due(Instant::now()));
        let slot = check.begin().expect("free");
        assert!(check.begin().is_none(), "a second probe waits");
        assert!(!check.due(Instant::now()));
        drop(slot);
        assert!(!check.due(Instant::now()), "not before the interval");
        assert!(check.due(Instant::now() + Duration::from_secs(61)));
    }

    #[test]
    fn a_reload_keeps_the_result_unless_the_path_changes() {
        let settings = HealthSettings {
            path: "/h".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(100),
            healthy_after: 1,
            unhealthy_after: 1,
        };
        let old = HealthCheck::new(settings.clone());
        old.record(probe(false));
        let same = HealthCheck::new(HealthSettings {
            interval: Duration::from_secs(2),
            ..settings.clone()
        });
        same.adopt(&old);
        assert_eq!(same.up(), Some(false));
        let moved = HealthCheck::new(HealthSettings {
            path: "/other".into(),
            ..settings
        });
        moved.adopt(&old);
        assert_eq!(moved.up(), None);
    }
}
