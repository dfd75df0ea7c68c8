//! What `/status` reports: one snapshot of the running process, the same data for the
//! JSON (`/status.json`) and the page for people (`super::status_page`).
//!
//! Nothing here calls a service the policy does not name: upstreams with a health check
//! are read from their last background probe (whose JSON body carries gardien-backend's
//! database, circuits and outbox), those without one get the TCP connect of `/readyz`.

use serde::Serialize;

use super::metrics::{unix_seconds, Metrics, COMMIT, VERSION};
use super::policy_record::{PolicyRecord, PolicyReport};
use super::readiness::{key_sets, probe_upstreams, KeySetReadiness};
use super::request_window::WindowTotals;
use crate::edge::rate_limit::Store;
use crate::policy::Policy;
use crate::upstream_health::HealthReport;

/// The snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub commit: &'static str,
    pub environment: &'static str,
    pub uptime_seconds: u64,
    /// When the snapshot was taken, Unix seconds.
    pub generated_unix_seconds: f64,
    pub summary: String,
    pub routes: Vec<RouteStatus>,
    pub upstreams: Vec<UpstreamStatus>,
    pub jwks: Vec<KeySetReadiness>,
    pub rate_limits: RateLimitStatus,
    /// `None` without `rate_limits.adaptive`.
    pub adaptive: Option<AdaptiveStatus>,
    pub policy: PolicyReport,
    pub traffic: Traffic,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub name: String,
    pub prefix: String,
    pub upstream: Option<String>,
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub url: String,
    pub addresses: Vec<String>,
    /// `http` (the health check's last result) or `tcp` (a connect, now).
    pub check: &'static str,
    /// Whether it can serve; `None` while its health check has no result yet.
    pub up: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `http`: the last probe, as `/readyz` shows it (`null` without a check).
    pub health: Option<HealthReport>,
    /// Factor applied to the rates of its routes (1 = as written).
    pub adaptive_factor: f64,
    pub in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RateLimitStatus {
    /// `local` or `redis`, as the policy says.
    pub store: &'static str,
    /// Where decisions are made now: `local`, `redis`, or `fallback` (Redis unreachable).
    pub state: &'static str,
    /// The Redis URL with its password masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    pub rules: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdaptiveStatus {
    pub latency_target_ms: u64,
    pub error_ratio_target: f64,
    pub min_factor: f64,
    pub window_seconds: u64,
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    pub last_minute: WindowTotals,
    pub last_15_minutes: WindowTotals,
}

/// Takes the snapshot; TCP probes (upstreams without a health check) run concurrently,
/// each bounded by `readiness::PROBE_TIMEOUT`.
pub async fn snapshot(
    policy: &Policy,
    metrics: &Metrics,
    record: &PolicyRecord,
    uptime_seconds: u64,
) -> Status {
    let readiness = probe_upstreams(policy).await;
    let upstreams = policy
        .upstreams
        .iter()
        .zip(readiness)
        .enumerate()
        .map(|(index, (upstream, ready))| {
            if ready.check == "tcp" {
                metrics.set_upstream_up(&upstream.name, ready.ready);
            }
            let load = policy.loads.get(index);
            UpstreamStatus {
                name: upstream.name.clone(),
                url: upstream.url.clone(),
                addresses: upstream
                    .addresses()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                check: ready.check,
                up: match &ready.health {
                    Some(health) => health.up,
                    None => Some(ready.ready),
                },
                error: ready.error,
                health: ready.health,
                adaptive_factor: load.map_or(1.0, |l| l.factor()),
                in_flight: load.map_or(0, |l| l.in_flight()),
            }
        })
        .collect();
    let routes = policy
        .router
        .routes()
        .iter()
        .map(|r| RouteStatus {
            name: r.name.clone(),
            prefix: r.prefix.clone(),
            upstream: policy.upstream(r.upstream).map(|u| u.name.clone()),
            methods: r
                .methods
                .as_ref()
                .map(|ms| ms.iter().map(|m| m.as_str().to_owned()).collect()),
        })
        .collect();
    let rate_limits = match policy.rate_limits.store() {
        Store::Local => RateLimitStatus {
            store: "local",
            state: "local",
            redis_url: None,
            rules: policy.rate_limits.rules().len(),
        },
        Store::Redis(redis) => RateLimitStatus {
            store: "redis",
            state: redis.state().as_str(),
            redis_url: Some(redis.display_url().to_owned()),
            rules: policy.rate_limits.rules().len(),
        },
    };
    let adaptive = policy.adaptive.as_ref().map(|a| AdaptiveStatus {
        latency_target_ms: u64::try_from(a.latency_target.as_millis()).unwrap_or(u64::MAX),
        error_ratio_target: a.error_ratio_target,
        min_factor: a.min_factor,
        window_seconds: a.window.as_secs(),
        max_in_flight: a.max_in_flight,
    });
    let window = metrics.request_window();
    Status {
        version: VERSION,
        commit: COMMIT,
        environment: policy.environment.as_str(),
        uptime_seconds,
        generated_unix_seconds: unix_seconds(),
        summary: policy.summary(),
        routes,
        upstreams,
        jwks: key_sets(policy),
        rate_limits,
        adaptive,
        policy: record.report(),
        traffic: Traffic {
            last_minute: window.totals(60),
            last_15_minutes: window.totals(900),
        },
    }
}
