//! The one JSON error envelope of gardien and gardien-backend, and the one list of error
//! codes they answer with:
//!
//! `{"error":{"code":"<snake_case>","message":"<human text>","request_id":"<id>","fields":[{"path","message"}]}}`
//!
//! (`fields` only when a request got fields wrong.) Codes are stable — clients and alerts
//! match on them — so each is written once, here, as an [`ErrorCode`] with the HTTP status
//! it goes with; a call site names the variant, never a string. Messages are for humans and
//! never carry internal details.

mod code;

pub use code::ErrorCode;

use serde::{Deserialize, Serialize};

/// A field a request got wrong.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Dotted path in the JSON body, or the query parameter's name.
    pub path: String,
    pub message: String,
}

/// The envelope, as clients read it (and as the OpenAPI document describes it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, and the request id to quote when reporting it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

#[derive(Serialize)]
struct BorrowedBody<'a> {
    error: BorrowedDetail<'a>,
}

#[derive(Serialize)]
struct BorrowedDetail<'a> {
    code: ErrorCode,
    message: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    fields: &'a [FieldError],
}

/// The JSON body of an error, written without copying its parts.
pub fn render(code: ErrorCode, message: &str, request_id: &str, fields: &[FieldError]) -> Vec<u8> {
    let body = BorrowedBody {
        error: BorrowedDetail {
            code,
            message,
            request_id,
            fields,
        },
    };
    // Serialising strings and a unit enum into a Vec cannot fail; the fallback keeps the
    // envelope's shape all the same.
    serde_json::to_vec(&body).unwrap_or_else(|_| {
        br#"{"error":{"code":"internal_error","message":"","request_id":""}}"#.to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_has_the_documented_shape() {
        let body = render(ErrorCode::UpstreamTimeout, "too slow", "req-1", &[]);
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"error": {
                "code": "upstream_timeout",
                "message": "too slow",
                "request_id": "req-1"
            }})
        );
        let fields = [FieldError {
            path: "digest".into(),
            message: "one of: off, daily".into(),
        }];
        let body = render(ErrorCode::ValidationFailed, "see fields", "req-2", &fields);
        let parsed: ErrorBody = serde_json::from_slice(&body).expect("envelope");
        assert_eq!(parsed.error.code, ErrorCode::ValidationFailed);
        assert_eq!(parsed.error.fields, fields);
    }
}
