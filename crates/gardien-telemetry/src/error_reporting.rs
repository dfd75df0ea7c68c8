//! Error reports to Sentry, shared by gardien and gardien-backend, started when `SENTRY_DSN`
//! resolves through the secrets chain (docs/OBSERVABILITY.md, "Sentry").
//!
//! What is sent is chosen, not collected: each report names its `kind` (a fixed word such
//! as `upstream_unreachable` or `providers_exhausted`) and the `subject` it is about (the
//! upstream, issuer, channel…), a message, and tags. No request, user, body or breadcrumb is
//! ever attached, and [`scrub`] runs on every event before it leaves (panics included):
//! authorization values, tokens, query strings, e-mail addresses, phone numbers, URL
//! passwords and every secret value the process resolved are replaced.
//!
//! Reports are grouped in Sentry by `kind` and `subject` (the fingerprint), and at most one
//! per `kind` and `subject` a minute is sent (30 a minute in all): an outage costs a few
//! events, and a request that fails pays one lock when reporting is on, nothing when off.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use regex::Regex;
use sentry::protocol::{Context, Event, Level, TraceContext as SentryTrace, Value};

use gardien_secrets::catalog::EnvVar;
use gardien_secrets::{Environment, SecretLookup, SecretStore};

use crate::throttle::Throttle;
use crate::TraceContext;

/// One report per kind and subject per window.
const WINDOW: Duration = Duration::from_secs(60);
/// Reports per window in all, whatever their kind.
const MAX_PER_WINDOW: u32 = 30;
/// Kind-and-subject pairs remembered; subjects come from the policy or fixed lists.
const MAX_KEYS: usize = 1_000;
/// How long a stopping process waits for queued reports to be sent.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Resolved secret values shorter than this are not searched for (they would match words).
const MIN_SECRET_LENGTH: usize = 8;
/// What replaces anything scrubbed.
pub const REDACTED: &str = "[redacted]";

static ENABLED: AtomicBool = AtomicBool::new(false);
static REPORTER: OnceLock<Reporter> = OnceLock::new();

tokio::task_local! {
    /// The request being served on this task (the backend sets it around each request), so a
    /// report made deep inside a handler carries its request id and trace.
    static CURRENT_REQUEST: RequestFields;
}

/// What a report knows of the request it happened in.
#[derive(Debug, Clone, Default)]
pub struct RequestFields {
    pub request_id: Option<String>,
    pub trace: Option<TraceContext>,
    pub route: Option<String>,
}

/// Runs `future` with `fields` as the current request of [`report`].
pub async fn in_request<F: std::future::Future>(fields: RequestFields, future: F) -> F::Output {
    CURRENT_REQUEST.scope(fields, future).await
}

/// How the client is set up.
pub struct ReportingOptions {
    /// The DSN, as resolved: a secret (never logged, never in `Debug`).
    pub dsn: String,
    /// `environment` of every event: the policy's or the backend's environment.
    pub environment: String,
    /// `release` of every event: [`release`].
    pub release: String,
    /// The values the secrets chain holds now (asked again for each event, so a rotated
    /// value is scrubbed too).
    pub secret_values: SecretValues,
}

/// Where the scrubber reads the process's secret values from.
pub type SecretValues = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

impl std::fmt::Debug for ReportingOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportingOptions")
            .field("dsn", &REDACTED)
            .field("environment", &self.environment)
            .field("release", &self.release)
            .field("secret_values", &"…")
            .finish()
    }
}

/// The `release` both binaries report, in Sentry and in their build info:
/// `gardien@<version>+<commit>`, the same string for the gateway and the backend of one build.
pub fn release(version: &str, commit: &str) -> String {
    format!("gardien@{version}+{commit}")
}

/// Keeps the client alive; dropping it sends what is queued (at most two seconds).
#[must_use = "reports stop when the guard is dropped"]
pub struct ReportingGuard {
    _guard: sentry::ClientInitGuard,
}

impl std::fmt::Debug for ReportingGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReportingGuard")
    }
}

/// A DSN that does not parse; the message never repeats the DSN (it holds the key).
#[derive(Debug, thiserror::Error)]
#[error("SENTRY_DSN is not a valid Sentry DSN ({reason}); expected https://<key>@<host>/<project>")]
pub struct InvalidDsn {
    reason: String,
}

/// The secret both binaries read the DSN from.
pub const DSN: EnvVar = EnvVar::secret(
    "SENTRY_DSN",
    "unset",
    "error reporting to Sentry (`https://<key>@<host>/<project>`); optional, and one that does not parse refuses the start",
);
pub const SENTRY_DSN: &str = DSN.name;

/// Starts reporting when `SENTRY_DSN` resolved in `store`, for `environment`; `Ok(None)` when
/// it is not set. The scrubber reads `store`'s values again for each event.
pub fn start(
    store: &Arc<SecretStore>,
    environment: Environment,
    release: String,
) -> Result<Option<ReportingGuard>, InvalidDsn> {
    let Some(dsn) = resolved_dsn(store) else {
        return Ok(None);
    };
    let values = Arc::clone(store);
    init(ReportingOptions {
        dsn,
        environment: environment.as_str().to_owned(),
        release,
        secret_values: Arc::new(move || {
            values
                .values()
                .iter()
                .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
                .collect()
        }),
    })
    .map(Some)
}

/// Whether the `SENTRY_DSN` resolved in `store` (if any) is a DSN: for the binaries' `check`.
pub fn check(store: &SecretStore) -> Result<(), InvalidDsn> {
    match resolved_dsn(store) {
        Some(dsn) => validate_dsn(&dsn),
        None => Ok(()),
    }
}

fn resolved_dsn(store: &SecretStore) -> Option<String> {
    store
        .get(SENTRY_DSN)
        .map(|s| String::from_utf8_lossy(s.expose()).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Whether `dsn` is a DSN [`init`] would take (for the binaries' `check`).
pub fn validate_dsn(dsn: &str) -> Result<(), InvalidDsn> {
    parse_dsn(dsn).map(|_| ())
}

fn parse_dsn(dsn: &str) -> Result<sentry::types::Dsn, InvalidDsn> {
    dsn.trim().parse().map_err(|e| InvalidDsn {
        reason: redact_text(&format!("{e}"), &[dsn.to_owned()]),
    })
}

/// Starts reporting: panics from here on, and every [`report`]. Call once, early in `main`,
/// before the runtime starts threads.
pub fn init(options: ReportingOptions) -> Result<ReportingGuard, InvalidDsn> {
    let dsn = parse_dsn(&options.dsn)?;
    let secret_values = options.secret_values;
    let own_dsn = options.dsn;
    // `ClientOptions` is non-exhaustive: set what differs from the defaults.
    let mut client_options = sentry::ClientOptions::default();
    client_options.dsn = Some(dsn);
    client_options.release = Some(Cow::Owned(options.release));
    client_options.environment = Some(Cow::Owned(options.environment));
    client_options.send_default_pii = false;
    client_options.max_breadcrumbs = 0;
    client_options.attach_stacktrace = false;
    client_options.shutdown_timeout = SHUTDOWN_TIMEOUT;
    client_options.before_send = Some(Arc::new(move |event| {
        let mut secrets = secret_values();
        secrets.push(own_dsn.clone());
        Some(scrub(event, &secrets))
    }));
    client_options.before_breadcrumb = Some(Arc::new(|_| None));
    let guard = sentry::init(client_options);
    let _ = REPORTER.set(Reporter {
        throttle: Throttle::new(WINDOW, MAX_PER_WINDOW, MAX_KEYS),
    });
    ENABLED.store(true, Ordering::Release);
    Ok(ReportingGuard { _guard: guard })
}

/// Whether [`init`] ran: callers skip building a report when it did not.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// An event to send: built only when the throttle lets it through.
#[derive(Debug, Clone)]
pub struct Report {
    level: Level,
    message: String,
    tags: BTreeMap<&'static str, String>,
    request: RequestFields,
}

impl Report {
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Level::Error, message.into())
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Self::new(Level::Warning, message.into())
    }

    fn new(level: Level, message: String) -> Self {
        Report {
            level,
            message,
            tags: BTreeMap::new(),
            request: CURRENT_REQUEST.try_with(Clone::clone).unwrap_or_default(),
        }
    }

    /// A tag (bounded values only: names from the policy, fixed words, ids).
    pub fn tag(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.tags.insert(name, value.into());
        self
    }

    /// The request it happened in, when the caller holds it (the gateway does).
    pub fn request(mut self, fields: RequestFields) -> Self {
        self.request = fields;
        self
    }
}

#[derive(Debug)]
struct Reporter {
    throttle: Throttle,
}

/// Sends the report `build` makes, about `subject` (the upstream, issuer, channel… or `""`),
/// unless one of the same `kind` and `subject` was sent in the last minute. Does nothing
/// (and builds nothing) when reporting is off.
pub fn report(kind: &'static str, subject: &str, build: impl FnOnce() -> Report) {
    if !enabled() {
        return;
    }
    let Some(reporter) = REPORTER.get() else {
        return;
    };
    let Some(permit) = reporter.throttle.permit(&format!("{kind}\u{0}{subject}")) else {
        return;
    };
    let report = build();
    let mut event = Event {
        level: report.level,
        message: Some(report.message),
        logger: Some(kind.to_owned()),
        fingerprint: Cow::Owned(vec![Cow::Borrowed(kind), Cow::Owned(subject.to_owned())]),
        ..Default::default()
    };
    event.tags.insert("kind".to_owned(), kind.to_owned());
    for (name, value) in report.tags {
        event.tags.insert(name.to_owned(), value);
    }
    let request = report.request;
    if let Some(id) = request.request_id {
        event.tags.insert("request_id".to_owned(), id);
    }
    if let Some(route) = request.route {
        event.tags.insert("route".to_owned(), route.clone());
        event.transaction = Some(route);
    }
    if let Some(trace) = request.trace {
        event
            .tags
            .insert("trace_id".to_owned(), trace.trace_id_hex());
        event.contexts.insert(
            "trace".to_owned(),
            Context::Trace(Box::new(SentryTrace {
                trace_id: trace.trace_id.into(),
                span_id: trace.span_id.into(),
                ..Default::default()
            })),
        );
    }
    if permit.suppressed > 0 {
        event.extra.insert(
            "reports_suppressed_before".to_owned(),
            permit.suppressed.into(),
        );
    }
    sentry::capture_event(event);
}

/// Sends what is queued, waiting at most `timeout` (before a deliberate exit).
pub fn flush(timeout: Duration) {
    if let Some(client) = sentry::Hub::current().client() {
        client.flush(Some(timeout));
    }
}

/// Tag and extra names whose values are never sent, whoever set them.
const SENSITIVE_NAMES: [&str; 12] = [
    "authorization",
    "cookie",
    "token",
    "secret",
    "password",
    "signature",
    "identity",
    "dsn",
    "api_key",
    "recipient",
    "body",
    "query",
];

/// Removes from `event` what must never leave the process (see the module's doc).
pub fn scrub(mut event: Event<'static>, secrets: &[String]) -> Event<'static> {
    event.request = None;
    event.user = None;
    event.breadcrumbs.values.clear();
    event.message = event.message.map(|m| redact_text(&m, secrets));
    if let Some(entry) = event.logentry.as_mut() {
        entry.message = redact_text(&entry.message, secrets);
        for param in &mut entry.params {
            redact_value(param, secrets);
        }
    }
    event.culprit = event.culprit.map(|c| redact_text(&c, secrets));
    event.transaction = event.transaction.map(|t| redact_text(&t, secrets));
    for exception in &mut event.exception.values {
        exception.value = exception.value.take().map(|v| redact_text(&v, secrets));
    }
    event.tags = std::mem::take(&mut event.tags)
        .into_iter()
        .filter(|(name, _)| !is_sensitive_name(name))
        .map(|(name, value)| {
            let value = redact_text(&value, secrets);
            (name, value)
        })
        .collect();
    event.extra = std::mem::take(&mut event.extra)
        .into_iter()
        .filter(|(name, _)| !is_sensitive_name(name))
        .map(|(name, mut value)| {
            redact_value(&mut value, secrets);
            (name, value)
        })
        .collect();
    event
}

fn is_sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE_NAMES.iter().any(|s| name.contains(s))
}

fn redact_value(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(s) => *s = redact_text(s, secrets),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, secrets)),
        Value::Object(map) => {
            for (name, v) in map.iter_mut() {
                if is_sensitive_name(name) {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact_value(v, secrets);
                }
            }
        }
        _ => {}
    }
}

/// The patterns [`redact_text`] replaces, in order.
static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // An Authorization value, whatever the scheme.
        (
            r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]+",
            "$1 [redacted]",
        ),
        // A JWT anywhere (three base64url parts, the first a JSON header).
        (
            r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*",
            REDACTED,
        ),
        // A URL's user info (passwords of redis://, the DSN's key).
        (r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", "$1[redacted]@"),
        // A query string, after a path or a URL.
        (r#"\?[^\s"'<>#]+"#, "?[redacted]"),
        // An e-mail address (recipients).
        (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", REDACTED),
        // A phone number in E.164 (recipients).
        (r"\+[1-9][0-9]{6,14}\b", REDACTED),
    ]
    .into_iter()
    .filter_map(|(pattern, replacement)| Regex::new(pattern).ok().map(|r| (r, replacement)))
    .collect()
});

/// `text` with secrets, credentials and personal data replaced by `[redacted]`.
pub fn redact_text(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LENGTH) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    for (pattern, replacement) in PATTERNS.iter() {
        if let Cow::Owned(replaced) = pattern.replace_all(&text, *replacement) {
            text = replaced;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_personal_data_are_redacted() {
        let secrets = vec!["SG.provider-api-key-value".to_owned()];
        let cases = [
            (
                "Authorization: Bearer abc.def-ghi",
                "Authorization: Bearer [redacted]",
            ),
            (
                "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln end",
                "token [redacted] end",
            ),
            (
                "GET /api/login?token=abc&x=1 failed",
                "GET /api/login?[redacted] failed",
            ),
            (
                "redis://:hunter2hunter2@10.0.0.3:6379 down",
                "redis://[redacted]@10.0.0.3:6379 down",
            ),
            ("to alice.smith@example.com", "to [redacted]"),
            ("sms to +14155550123 refused", "sms to [redacted] refused"),
            (
                "key SG.provider-api-key-value refused",
                "key [redacted] refused",
            ),
            (
                "upstream api connect_refused",
                "upstream api connect_refused",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_text(input, &secrets), expected, "{input}");
        }
    }

    #[test]
    fn sensitive_tags_and_extras_are_dropped_and_the_rest_scrubbed() {
        let mut event = Event {
            message: Some("failed for bob@example.com".to_owned()),
            ..Default::default()
        };
        event.tags.insert("authorization".into(), "Bearer x".into());
        event.tags.insert("upstream".into(), "api".into());
        event.tags.insert("route".into(), "/a?b=c".into());
        event.extra.insert("cookie".into(), "sid=1".into());
        event
            .extra
            .insert("detail".into(), serde_json::json!({"api_key": "k", "n": 1}));
        event.request = Some(Default::default());
        let event = scrub(event, &[]);
        assert_eq!(event.message.as_deref(), Some("failed for [redacted]"));
        assert!(!event.tags.contains_key("authorization"));
        assert_eq!(event.tags["upstream"], "api");
        assert_eq!(event.tags["route"], "/a?[redacted]");
        assert!(!event.extra.contains_key("cookie"));
        assert_eq!(
            event.extra["detail"],
            serde_json::json!({"api_key": REDACTED, "n": 1})
        );
        assert!(event.request.is_none());
    }

    #[test]
    fn the_release_is_the_same_string_for_both_binaries() {
        assert_eq!(
            release("0.1.0", "0123456789ab"),
            "gardien@0.1.0+0123456789ab"
        );
    }

    #[test]
    fn a_bad_dsn_is_refused_without_repeating_it() {
        let error = init(ReportingOptions {
            dsn: "not-a-dsn-with-secret-key".to_owned(),
            environment: "test".to_owned(),
            release: "r".to_owned(),
            secret_values: Arc::new(Vec::new),
        })
        .expect_err("not a DSN");
        assert!(
            !error.to_string().contains("not-a-dsn-with-secret-key"),
            "{error}"
        );
        assert!(!enabled());
    }

    #[test]
    fn nothing_is_built_when_reporting_is_off() {
        report("kind", "subject", || panic!("built while off"));
    }
}
