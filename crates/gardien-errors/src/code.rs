//! Every error code either binary answers with, written once with its HTTP status.

/// Declares [`ErrorCode`]: each variant with its wire name and status, so a code is typed
/// in exactly one place (a hand-written `match` per property would repeat every name).
macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, $status:literal; )*) => {
        /// A stable error code: what clients and alerts match on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of the list.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it goes on the wire (`route_not_found`).
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The HTTP status an answer with this code carries.
            pub const fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }
        }
    };
}

error_codes! {
    // Shared by both binaries.
    /// The request could not be read.
    BadRequest = "bad_request", 400;
    /// The route (or path) does not take this method.
    MethodNotAllowed = "method_not_allowed", 405;
    /// A failure of ours; the details are logged, never sent.
    InternalError = "internal_error", 500;
    /// The body is larger than accepted.
    PayloadTooLarge = "payload_too_large", 413;

    // The gateway.
    /// No route matches the path.
    RouteNotFound = "route_not_found", 404;
    /// Dot-segments, encoded separators or control characters in the path.
    BadPath = "bad_path", 400;
    /// An HTTP/1.1 request without exactly one valid `Host` (RFC 9112 §3.2).
    BadHost = "bad_host", 400;
    /// The request head did not arrive within `server.request_header_timeout`.
    RequestHeaderTimeout = "request_header_timeout", 408;
    /// The request headers are larger than `server.max_header_bytes`.
    HeadersTooLarge = "headers_too_large", 431;
    /// The upstream could not be reached.
    UpstreamUnreachable = "upstream_unreachable", 502;
    /// The upstream did not answer in time.
    UpstreamTimeout = "upstream_timeout", 504;
    /// The upstream sent an invalid or incomplete response.
    UpstreamError = "upstream_error", 502;
    /// A rate-limit rule refused the request.
    RateLimited = "rate_limited", 429;
    /// The upstream has as many requests in flight as it may.
    Overloaded = "overloaded", 503;
    /// A bearer token is required.
    TokenMissing = "token_missing", 401;
    /// The token is not a well-formed JWT.
    TokenMalformed = "token_malformed", 401;
    /// The token has expired.
    TokenExpired = "token_expired", 401;
    /// The token is not valid yet.
    TokenNotYetValid = "token_not_yet_valid", 401;
    /// The token's signature is invalid.
    BadSignature = "bad_signature", 401;
    /// The token was signed with an unknown key.
    UnknownKey = "unknown_key", 401;
    /// The token's algorithm is not allowed.
    AlgNotAllowed = "alg_not_allowed", 401;
    /// The token's issuer is not trusted.
    WrongIssuer = "wrong_issuer", 401;
    /// The token's audience is not accepted.
    WrongAudience = "wrong_audience", 401;
    /// The token lacks a required claim.
    ClaimMissing = "claim_missing", 401;
    /// A valid token without a role the route requires.
    InsufficientRole = "insufficient_role", 403;
    /// A preflight whose `Origin` is not a valid origin.
    CorsMalformedOrigin = "cors_malformed_origin", 403;
    /// A preflight from an origin the policy does not allow.
    CorsOriginNotAllowed = "cors_origin_not_allowed", 403;
    /// A preflight asking for a method the policy does not allow.
    CorsMethodNotAllowed = "cors_method_not_allowed", 403;
    /// A preflight asking for a header the policy does not allow.
    CorsHeaderNotAllowed = "cors_header_not_allowed", 403;

    // gardien-backend.
    /// The request is invalid; `fields` says where.
    ValidationFailed = "validation_failed", 400;
    /// The body is not valid JSON.
    InvalidJson = "invalid_json", 400;
    /// The body is not `application/json`.
    UnsupportedMediaType = "unsupported_media_type", 415;
    /// No verified identity.
    Unauthenticated = "unauthenticated", 401;
    /// The identity may not do this.
    Forbidden = "forbidden", 403;
    /// The resource does not exist (or is not the caller's).
    NotFound = "not_found", 404;
    /// The resource exists, or changed under a concurrent request.
    Conflict = "conflict", 409;
    /// A report cannot move to that status from its current one.
    InvalidTransition = "invalid_transition", 409;
    /// `If-Match` does not match the current `ETag`.
    PreconditionFailed = "precondition_failed", 412;
    /// Security notifications cannot be turned off.
    SecurityNotificationsRequired = "security_notifications_required", 422;
    /// A template's channel never changes.
    ChannelImmutable = "channel_immutable", 422;
    /// A template version does not pass today's checks.
    InvalidVersion = "invalid_version", 422;
    /// The template uses variables that were not given.
    MissingVariables = "missing_variables", 422;
    /// The template failed to render.
    RenderFailed = "render_failed", 422;
    /// The rendered SMS is too long.
    SmsTooLong = "sms_too_long", 422;
    /// No template has this key.
    UnknownTemplate = "unknown_template", 422;
    /// A channel asked for has no template under this key.
    TemplateMissing = "template_missing", 422;
    /// The idempotency key was used for a different request.
    IdempotencyKeyReused = "idempotency_key_reused", 422;
}

impl ErrorCode {
    /// The code of a wire name, if it is one.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ErrorCode::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{name}`")))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A stable error code (the full list is shared by gardien and gardien-backend)",
            ))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "`{name}` twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert_eq!(ErrorCode::from_name(name), Some(*code));
            assert!((400..600).contains(&code.status()), "{name}");
            let json = serde_json::to_string(code).expect("json");
            assert_eq!(json, format!("\"{name}\""));
            let back: ErrorCode = serde_json::from_str(&json).expect("back");
            assert_eq!(back, *code);
        }
        assert!(serde_json::from_str::<ErrorCode>("\"nope\"").is_err());
    }
}
