//! What the HTTP providers (SendGrid, Twilio) share: the client, the classification of
//! transport errors, and the wait a `429` or `503` asks for.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use super::SetupError;
use crate::delivery::provider::{Failure, FailureKind};

/// The longest wait a provider's `Retry-After` / `X-RateLimit-Reset` is believed for: a
/// bogus far-future reset must not park a message for days.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Longest part of a server's error text kept in a failure's detail.
const MAX_DETAIL_CHARS: usize = 300;

/// A client bounded by `timeout` (connect included), that never follows redirects (an API
/// that redirects is misconfigured, and a redirect must not carry our credentials).
pub(crate) fn client(provider: &str, timeout: Duration) -> Result<reqwest::Client, SetupError> {
    if timeout.is_zero() {
        return Err(SetupError::new(provider, "timeout must be more than 0"));
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gardien-backend/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SetupError::new(provider, format!("HTTP client: {}", e.without_url())))
}

/// A request that got no HTTP answer: timeouts, refused or reset connections are worth
/// retrying; a request that could not even be built is not. The URL is left out of the
/// detail (it would hold an account SID).
pub(crate) fn transport_failure(
    provider: &str,
    error: reqwest::Error,
    timeout: Duration,
) -> Failure {
    if error.is_timeout() {
        return Failure::new(
            FailureKind::Retryable,
            format!("{provider}: no answer within {}ms", timeout.as_millis()),
        );
    }
    if error.is_builder() {
        return Failure::new(
            FailureKind::Rejected,
            format!(
                "{provider}: the request could not be built: {}",
                error.without_url()
            ),
        );
    }
    let what = if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    Failure::new(
        FailureKind::Retryable,
        format!("{provider}: {what}: {}", chain(&error.without_url())),
    )
}

/// An error and its sources on one line (`connection refused` is a source of reqwest's
/// `error sending request`).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// How long the server asked us to wait: `Retry-After` (seconds or an HTTP date), else
/// `X-RateLimit-Reset` (epoch seconds, SendGrid). Capped at [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let wait = header("retry-after")
        .and_then(|value| match value.parse::<u64>() {
            Ok(seconds) => Some(Duration::from_secs(seconds)),
            Err(_) => httpdate::parse_http_date(value)
                .ok()
                .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)),
        })
        .or_else(|| {
            header("x-ratelimit-reset")
                .and_then(|value| value.parse::<u64>().ok())
                .map(|epoch| {
                    (SystemTime::UNIX_EPOCH + Duration::from_secs(epoch))
                        .duration_since(now)
                        .unwrap_or(Duration::ZERO)
                })
        })?;
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A server's text cut to a length fit for an attempt record.
pub(crate) fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The base URL and a path, whatever the base's trailing slash.
pub(crate) fn endpoint(base: &reqwest::Url, path: &str) -> String {
    format!("{}{path}", base.as_str().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn retry_after_seconds_date_and_reset() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-reset", "1700000042")]), now),
            Some(Duration::from_secs(42))
        );
        // A reset in the past means now; a far one is capped; garbage is ignored.
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-reset", "1600000000")]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-reset", "1900000000")]), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn shorten_cuts_long_text_on_a_char_boundary() {
        let long = "é".repeat(400);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_DETAIL_CHARS + 1);
        assert_eq!(shorten(" ok "), "ok");
    }

    #[test]
    fn endpoint_joins_with_or_without_slash() {
        let a = reqwest::Url::parse("http://127.0.0.1:9/").expect("url");
        let b = reqwest::Url::parse("http://127.0.0.1:9/prefix").expect("url");
        assert_eq!(
            endpoint(&a, "/v3/mail/send"),
            "http://127.0.0.1:9/v3/mail/send"
        );
        assert_eq!(
            endpoint(&b, "/v3/mail/send"),
            "http://127.0.0.1:9/prefix/v3/mail/send"
        );
    }
}
