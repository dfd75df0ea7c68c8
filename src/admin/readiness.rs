//! Readiness: can every upstream be reached right now?
//!
//! An upstream with an HTTP health check (`upstreams.<name>.health`) is ready when its last
//! background probe says so: nothing is probed on the request to `/readyz`. Without one, a
//! probe opens a TCP connection to the upstream (all at once, each bounded by a short
//! timeout) and closes it. An upstream whose host name has not resolved is not ready.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::policy::Policy;
use crate::upstream_health::HealthReport;

/// Longest a readiness probe waits for one upstream.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The result for one upstream.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamReadiness {
    pub upstream: String,
    pub ready: bool,
    /// `http` (the health check's last result) or `tcp` (a connect, now).
    pub check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `http`: the last probe's status code, error kind and latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthReport>,
}

/// Probes every upstream of `policy` concurrently, in the policy's order.
pub async fn probe_upstreams(policy: &Policy) -> Vec<UpstreamReadiness> {
    let mut probes = JoinSet::new();
    for (index, upstream) in policy.upstreams.iter().enumerate() {
        if let Some(health) = &upstream.health {
            let report = health.report();
            let ready = report.up == Some(true);
            let error = match (&report.up, &report.error) {
                (Some(true), _) => None,
                (None, _) => Some("no health check has ended yet".to_owned()),
                (Some(false), Some(error)) => Some(error.clone()),
                (Some(false), None) => Some("health check failing".to_owned()),
            };
            probes.spawn(std::future::ready((
                index,
                UpstreamReadiness {
                    upstream: upstream.name.clone(),
                    ready,
                    check: "http",
                    error,
                    health: Some(report),
                },
            )));
            continue;
        }
        let addresses = upstream.addresses();
        let name = upstream.name.clone();
        probes.spawn(async move {
            let outcome = match addresses.first() {
                None => Err("host name not resolved".to_owned()),
                Some(&address) => connect(address).await,
            };
            (
                index,
                UpstreamReadiness {
                    upstream: name,
                    ready: outcome.is_ok(),
                    check: "tcp",
                    error: outcome.err(),
                    health: None,
                },
            )
        });
    }
    let mut results: Vec<(usize, UpstreamReadiness)> = probes.join_all().await;
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, r)| r).collect()
}

async fn connect(address: SocketAddr) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}ms", PROBE_TIMEOUT.as_millis())),
    }
}

/// The state of one issuer's key set.
#[derive(Debug, Clone, Serialize)]
pub struct KeySetReadiness {
    pub issuer: String,
    /// Whether any key is loaded: without one, no token of this issuer can be validated.
    pub has_keys: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
    /// Older than the issuer's `jwks_stale_after`: the provider has not answered for long.
    pub stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The key sets of every JWKS issuer of `policy`.
pub fn key_sets(policy: &Policy) -> Vec<KeySetReadiness> {
    policy
        .jwt
        .iter()
        .flat_map(|jwt| jwt.issuers())
        .filter_map(|issuer| {
            let jwks = issuer.jwks()?;
            Some(KeySetReadiness {
                issuer: issuer.name.clone(),
                has_keys: jwks.has_keys(),
                age_seconds: jwks.age().map(|a| a.as_secs()),
                stale: jwks.is_stale(),
                last_error: jwks.last_error(),
            })
        })
        .collect()
}
