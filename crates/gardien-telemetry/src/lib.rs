//! Traces and logs shared by gardien and gardien-backend, so both write the same lines:
//! W3C trace context ([`trace_context`]), the request span whose fields every line of a
//! request carries, and the Cloud Logging JSON layer ([`cloud_logging`]) chosen by
//! `GARDIEN_LOG_FORMAT=json` (docs/OBSERVABILITY.md, "Logs").

pub mod cloud_logging;
pub mod error_reporting;
pub mod throttle;
pub mod trace_context;

use gardien_secrets::catalog::EnvVar;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

pub use cloud_logging::CloudLoggingLayer;
pub use trace_context::TraceContext;

/// The filter variable both binaries read (a `tracing` filter, default `info`).
pub const GARDIEN_LOG: EnvVar = EnvVar::plain(
    "GARDIEN_LOG",
    "`info`",
    "log filter, `tracing` syntax: `warn`, `info,gardien::access=debug` (one line per request), `debug`; one that does not parse is `info`",
);
/// The format variable both binaries read: `json` for Cloud Logging's JSON lines.
pub const GARDIEN_LOG_FORMAT: EnvVar = EnvVar::plain(
    "GARDIEN_LOG_FORMAT",
    "`text`",
    "`json` for one JSON object per line (Cloud Logging); logs go to stderr, coloured only when it is a terminal",
);
/// Every variable this crate reads, for both binaries' `env-docs` (the trace's project is
/// `gardien_secrets::GOOGLE_CLOUD_PROJECT`, listed with the secrets chain).
pub const TELEMETRY_VARS: [EnvVar; 3] = [GARDIEN_LOG, GARDIEN_LOG_FORMAT, error_reporting::DSN];

/// The names read, for code that wants a `&str`.
pub const LOG_FILTER: &str = GARDIEN_LOG.name;
pub const LOG_FORMAT: &str = GARDIEN_LOG_FORMAT.name;
/// The project of the trace key (`projects/<project>/traces/<id>`).
pub const PROJECT: &str = gardien_secrets::GOOGLE_CLOUD_PROJECT.name;

/// The request span's fields the JSON layer writes under Cloud Logging's keys.
pub const TRACE_ID_FIELD: &str = "trace_id";
pub const SPAN_ID_FIELD: &str = "span_id";
pub const TRACE_SAMPLED_FIELD: &str = "trace_sampled";

/// The span of one request in this process: every line logged inside it carries its trace.
/// At `ERROR` level so that no level filter (`GARDIEN_LOG=warn`…) drops it; it is never
/// printed itself. `request_id` is recorded once known.
pub fn request_span(context: &TraceContext) -> tracing::Span {
    tracing::error_span!(
        "request",
        trace_id = context.trace_id_hex().as_str(),
        span_id = context.span_id_hex().as_str(),
        trace_sampled = context.sampled,
        request_id = tracing::field::Empty,
    )
}

/// `true` with probability `rate` (0 to 1): the access log's sampling, decided before any
/// of the line is formatted.
pub fn sample(rate: f64) -> bool {
    rate >= 1.0 || (rate > 0.0 && rand::random::<f64>() < rate)
}

/// Installs the process's subscriber, logging to stderr: `filter` (a `tracing` filter that
/// does not parse is `info`), JSON lines for Cloud Logging when `json`, else text
/// (coloured on a terminal). Records of the `log` crate (Pingora's) go through it too.
pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        let project = std::env::var(PROJECT)
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
        registry
            .with(CloudLoggingLayer::new(project, std::io::stderr))
            .init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_never_below_zero_nor_above_one() {
        assert!((0..1000).all(|_| !sample(0.0)));
        assert!((0..1000).all(|_| !sample(-1.0)));
        assert!((0..1000).all(|_| sample(1.0)));
        let hits = (0..10_000).filter(|_| sample(0.5)).count();
        assert!((4_000..6_000).contains(&hits), "{hits}");
    }
}
