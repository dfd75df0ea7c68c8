//! What the gateway reports to Sentry, all in one place (docs/OBSERVABILITY.md, "Sentry"):
//! panics, every 5xx it writes itself, Redis fallback, JWKS fetch failures and refused policy
//! reloads. Each report has a fixed `kind` and the `subject` it is about (an upstream, an
//! issuer, `redis`, the policy file); `gardien-telemetry` groups and rate-limits them (one per
//! kind and subject a minute) and scrubs them. With no `SENTRY_DSN`, every function here is a
//! load of one flag.

use std::fmt::Display;
use std::sync::Arc;

use gardien_telemetry::error_reporting::{self, InvalidDsn, Report, ReportingGuard, RequestFields};
use gardien_telemetry::TraceContext;

use crate::admin::metrics::COMMIT;
use crate::gateway_error::GatewayError;
use crate::policy::Environment;
use crate::secrets::SecretStore;

/// The release every event carries: `gardien@<version>+<commit>`, as the backend's.
pub fn release() -> String {
    error_reporting::release(env!("CARGO_PKG_VERSION"), COMMIT)
}

/// Starts reporting when `SENTRY_DSN` resolved; `Ok(None)` when it is not set.
pub fn start(
    store: &Arc<SecretStore>,
    environment: Environment,
) -> Result<Option<ReportingGuard>, InvalidDsn> {
    error_reporting::start(store, environment, release())
}

/// Whether the resolved `SENTRY_DSN` (if any) is a DSN, for `gardien check`.
pub fn check(store: &SecretStore) -> Result<(), InvalidDsn> {
    error_reporting::check(store)
}

/// A 5xx the gateway wrote (upstream refused, timed out, answered badly; overloaded;
/// internal). `kind`: the `gardien_upstream_errors_total` kind when the upstream failed.
#[derive(Debug)]
pub struct GatewayFailure<'a> {
    pub answer: &'a GatewayError,
    pub route: &'a str,
    pub upstream: &'a str,
    pub kind: Option<&'static str>,
    pub request_id: &'a str,
    pub trace: Option<TraceContext>,
}

pub fn gateway_failure(failure: GatewayFailure<'_>) {
    let code = failure.answer.code.as_str();
    let subject = format!("{}/{}", failure.upstream, failure.kind.unwrap_or("-"));
    error_reporting::report(code, &subject, || {
        let status = failure.answer.status.as_u16();
        let detail = failure
            .kind
            .map_or_else(String::new, |kind| format!(" ({kind})"));
        let mut report = Report::error(format!(
            "gardien answered {status} {code}: upstream {}{detail} on route {}",
            failure.upstream, failure.route
        ))
        .tag("upstream", failure.upstream)
        .tag("status", status.to_string())
        .tag("error_code", code)
        .request(RequestFields {
            request_id: Some(failure.request_id.to_owned()),
            trace: failure.trace,
            route: Some(failure.route.to_owned()),
        });
        if let Some(kind) = failure.kind {
            report = report.tag("upstream_error", kind);
        }
        report
    });
}

/// Redis stopped answering: limits are kept locally at rate / replicas.
pub fn redis_fallback(error: &dyn Display) {
    error_reporting::report("rate_limit_fallback", "redis", || {
        Report::warning(format!(
            "rate limits fell back to local buckets: Redis failed: {error}"
        ))
        .tag("store", "fallback")
    });
}

/// An issuer's key set could not be fetched (at start, on schedule or for an unknown `kid`).
pub fn jwks_fetch_failed(issuer: &str, error: &dyn Display) {
    error_reporting::report("jwks_fetch_failed", issuer, || {
        Report::error(format!("JWKS of issuer {issuer} not fetched: {error}")).tag("issuer", issuer)
    });
}

/// A policy reload was refused; the last good policy keeps serving.
pub fn reload_refused(policy_file: &str, problems: &[String]) {
    error_reporting::report("policy_reload_refused", policy_file, || {
        let first = problems.first().map_or("", String::as_str);
        Report::error(format!(
            "policy reload refused ({} problem(s)); the last good policy keeps serving: {first}",
            problems.len()
        ))
        .tag("policy_file", policy_file)
    });
}
