//! Getting a policy ready to serve before it does: upstream addresses resolved, HTTP
//! health checks run once, and JWKS key sets fetched — taken over from the running policy where they are unchanged, fetched
//! otherwise. Used at start and on every reload, so neither serves with empty state.
//!
//! Nothing here is fatal: an upstream that does not resolve or an identity provider that
//! does not answer is logged, retried by the background refreshers, and shown by
//! `/readyz`.

use std::time::Duration;

use crate::admin::metrics::Metrics;
use crate::policy::Policy;

/// Longest wait for one resolution or one JWKS fetch while warming up.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn warm_up(policy: &Policy, previous: Option<&Policy>, metrics: &Metrics) {
    if let Some(previous) = previous {
        for upstream in &policy.upstreams {
            if let Some(old) = previous.upstreams.iter().find(|u| u.name == upstream.name) {
                upstream.adopt(old);
            }
        }
        if let (Some(jwt), Some(old)) = (&policy.jwt, &previous.jwt) {
            jwt.adopt_keys(old);
        }
        if let (Some(redis), Some(old)) = (policy.rate_limits.redis(), previous.rate_limits.redis())
        {
            redis.adopt(old);
        }
        for (load, name) in policy
            .loads
            .iter()
            .zip(policy.upstreams.iter().map(|u| &u.name))
        {
            if let Some(old) = previous.loads.iter().find(|l| l.name == *name) {
                load.adopt(old);
            }
        }
    }
    match policy.rate_limits.redis() {
        Some(redis) => {
            redis.probe(metrics).await;
            if redis.state() != crate::edge::rate_limit::StoreState::Redis {
                tracing::warn!(redis = redis.display_url(), "Redis not reachable at start: rate limiting locally at rate / replicas until it is");
            }
        }
        None => metrics.set_store_state("local"),
    }
    for upstream in policy
        .upstreams
        .iter()
        .filter(|u| u.needs_dns && u.addresses().is_empty())
    {
        match tokio::time::timeout(WARM_UP_TIMEOUT, upstream.resolve()).await {
            Ok(Ok(count)) => tracing::info!(
                upstream = upstream.name.as_str(),
                count,
                "upstream resolved"
            ),
            Ok(Err(e)) => {
                tracing::warn!(upstream = upstream.name.as_str(), error = %e, "upstream does not resolve yet")
            }
            Err(_) => tracing::warn!(
                upstream = upstream.name.as_str(),
                "upstream resolution timed out"
            ),
        }
    }
    crate::upstream_health::first_checks(policy, metrics).await;
    for issuer in policy.jwt.iter().flat_map(|j| j.issuers()) {
        let Some(jwks) = issuer.jwks() else { continue };
        if jwks.has_keys() {
            continue;
        }
        match tokio::time::timeout(WARM_UP_TIMEOUT, jwks.fetch()).await {
            Ok(Ok(fetched)) => {
                metrics.jwks_refresh(&issuer.name, true);
                tracing::info!(
                    issuer = issuer.name.as_str(),
                    keys = fetched.keys,
                    "JWKS fetched"
                );
            }
            Ok(Err(e)) => {
                metrics.jwks_refresh(&issuer.name, false);
                tracing::warn!(issuer = issuer.name.as_str(), error = %e, "JWKS not fetched; tokens of this issuer are refused until it is");
                crate::error_reports::jwks_fetch_failed(&issuer.name, &e);
            }
            Err(_) => {
                metrics.jwks_refresh(&issuer.name, false);
                tracing::warn!(issuer = issuer.name.as_str(), "JWKS fetch timed out");
                crate::error_reports::jwks_fetch_failed(&issuer.name, &"timed out");
            }
        }
    }
}
