//! Answers the gateway writes itself, in the envelope both binaries share
//! (`crates/gardien-errors`):
//! `{"error":{"code":"<snake_case>","message":"<human text>","request_id":"<id>"}}`.
//!
//! Codes are [`ErrorCode`]s, each with its status, listed once in that crate; messages are
//! for humans and never carry internal details such as upstream addresses or error chains.

use std::borrow::Cow;

use bytes::Bytes;
pub use gardien_errors::ErrorCode;
use http::{HeaderName, HeaderValue, StatusCode};

/// One gateway-generated error response.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// Headers specific to this error (`Allow` on a 405).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl GatewayError {
    /// An answer with `code`, at the status the code goes with.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        GatewayError {
            status: StatusCode::from_u16(code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn route_not_found() -> Self {
        Self::new(ErrorCode::RouteNotFound, "no route matches this path")
    }

    pub fn method_not_allowed(allow: HeaderValue) -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            "this route does not accept this method",
        )
        .with_header(http::header::ALLOW, allow)
    }

    pub fn bad_path() -> Self {
        Self::new(
            ErrorCode::BadPath,
            "the request path contains dot-segments, encoded separators or control characters",
        )
    }

    pub fn upstream_unreachable(upstream: &str) -> Self {
        Self::new(
            ErrorCode::UpstreamUnreachable,
            format!("the upstream `{upstream}` could not be reached"),
        )
    }

    pub fn upstream_timeout(upstream: &str) -> Self {
        Self::new(
            ErrorCode::UpstreamTimeout,
            format!("the upstream `{upstream}` did not answer in time"),
        )
    }

    pub fn upstream_error(upstream: &str) -> Self {
        Self::new(
            ErrorCode::UpstreamError,
            format!("the upstream `{upstream}` sent an invalid or incomplete response"),
        )
    }

    pub fn headers_too_large() -> Self {
        Self::new(
            ErrorCode::HeadersTooLarge,
            "the request headers are larger than this gateway accepts",
        )
    }

    /// `401` for a refused token, with `WWW-Authenticate` as RFC 6750 §3 has it: no error
    /// code when the request carried no token, `invalid_token` otherwise.
    pub fn unauthorized(code: ErrorCode, description: &'static str, token_present: bool) -> Self {
        let challenge = if token_present {
            format!("Bearer realm=\"gardien\", error=\"invalid_token\", error_description=\"{description}\"")
        } else {
            "Bearer realm=\"gardien\"".to_owned()
        };
        Self::new(code, description).with_header(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
        )
    }

    /// `403` for a valid token without the role a route requires.
    pub fn insufficient_role() -> Self {
        Self::new(
            ErrorCode::InsufficientRole,
            "the token does not carry a role this route requires",
        )
        .with_header(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"gardien\", error=\"insufficient_scope\", error_description=\"the token does not carry a role this route requires\"",
            ),
        )
    }

    /// `429` from rule `rule`; come back after `retry_after_secs`.
    pub fn rate_limited(rule: &str, retry_after_secs: u64) -> Self {
        Self::new(
            ErrorCode::RateLimited,
            format!("too many requests (rule `{rule}`); retry after {retry_after_secs}s"),
        )
        .with_header(
            http::header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs),
        )
    }

    /// `503` when an upstream has as many requests in flight as it may.
    pub fn overloaded(upstream: &str) -> Self {
        Self::new(
            ErrorCode::Overloaded,
            format!("the upstream `{upstream}` is at capacity; retry shortly"),
        )
        .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    pub fn bad_request() -> Self {
        Self::new(ErrorCode::BadRequest, "the request could not be read")
    }

    /// `400` for an HTTP/1.1 request without `Host`, or any request with several or an
    /// invalid one (RFC 9112 §3.2).
    pub fn bad_host() -> Self {
        Self::new(
            ErrorCode::BadHost,
            "the request needs exactly one valid Host header",
        )
    }

    /// `408` when a request head does not arrive within `server.request_header_timeout`.
    pub fn request_header_timeout() -> Self {
        Self::new(
            ErrorCode::RequestHeaderTimeout,
            "the request headers did not arrive in time",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorCode::InternalError,
            "the gateway failed to handle this request",
        )
    }

    /// The JSON body, naming the request id so a user's report can be found in the logs.
    pub fn body(&self, request_id: &str) -> Bytes {
        Bytes::from(gardien_errors::render(
            self.code,
            &self.message,
            request_id,
            &[],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_shape() {
        let body = GatewayError::upstream_timeout("api").body("req-1");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"error": {
                "code": "upstream_timeout",
                "message": "the upstream `api` did not answer in time",
                "request_id": "req-1"
            }})
        );
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let error = GatewayError::method_not_allowed(HeaderValue::from_static("GET, POST"));
        assert_eq!(error.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(error.headers[0].0, http::header::ALLOW);
    }
}
