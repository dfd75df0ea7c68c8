//! What gardien-backend reports to Sentry, all in one place (docs/OBSERVABILITY.md,
//! "Sentry"): panics, internal errors (what `ApiError::internal` logs and never returns) and
//! deliveries that end `providers_exhausted`. `gardien-telemetry` groups, rate-limits (one per
//! kind and subject a minute) and scrubs them: recipients, message bodies and provider keys
//! never leave. With no `SENTRY_DSN`, every function here is a load of one flag.

use std::fmt::Display;
use std::sync::Arc;

use gardien_secrets::{Environment, SecretStore};
use gardien_telemetry::error_reporting::{self, InvalidDsn, Report, ReportingGuard};

use crate::delivery::provider::Channel;
use crate::metrics::{COMMIT, VERSION};

/// The release every event carries: `gardien@<version>+<commit>`, as the gateway's.
pub fn release() -> String {
    error_reporting::release(VERSION, COMMIT)
}

/// Starts reporting when `SENTRY_DSN` resolved; `Ok(None)` when it is not set.
pub fn start(
    store: &Arc<SecretStore>,
    environment: Environment,
) -> Result<Option<ReportingGuard>, InvalidDsn> {
    error_reporting::start(store, environment, release())
}

/// Whether the resolved `SENTRY_DSN` (if any) is a DSN, for `gardien-backend check`.
pub fn check(store: &SecretStore) -> Result<(), InvalidDsn> {
    error_reporting::check(store)
}

/// A failure of ours while serving a request: the client got `500 internal_error`. The
/// request id, route and trace come from the request being served.
pub fn internal_error(detail: &dyn Display) {
    if !error_reporting::enabled() {
        return;
    }
    let detail = detail.to_string();
    // Grouped by what failed (`database: …`), not by the whole text.
    let subject = detail.split(':').next().unwrap_or("").trim().to_owned();
    error_reporting::report("internal_error", &subject, || {
        Report::error(format!("internal error: {detail}"))
    });
}

/// A notification that could not be delivered: every provider of its channel failed or
/// none is left. Only ids and provider names go out, never the recipient or the message.
pub fn providers_exhausted(
    channel: Channel,
    delivery_id: &str,
    notification_id: &str,
    detail: &str,
) {
    error_reporting::report("providers_exhausted", channel.name(), || {
        Report::error(format!(
            "{} delivery failed: providers exhausted ({detail})",
            channel.name()
        ))
        .tag("channel", channel.name())
        .tag("delivery_id", delivery_id)
        .tag("notification_id", notification_id)
    });
}
