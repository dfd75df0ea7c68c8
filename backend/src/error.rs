//! The one error type of the backend, and its one JSON shape — the same as the gateway's,
//! plus the fields a request got wrong:
//!
//! `{"error":{"code":"<snake_case>","message":"<human text>","request_id":"<id>","fields":[{"path","message"}]}}`
//!
//! Handlers return `ApiError`; internals (database errors…) are logged with the request id
//! and never sent to the client. The JSON is written by `request_id::middleware`, which
//! knows the request id: an `ApiError` response carries its parts as an extension until then.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A field a request got wrong.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// Dotted path in the JSON body, or the query parameter's name.
    pub path: String,
    pub message: String,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// `400 validation_failed` naming one field.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::fields(vec![FieldError {
            path: path.into(),
            message: message.into(),
        }])
    }

    /// `400 validation_failed` naming several fields.
    pub fn fields(fields: Vec<FieldError>) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "the request is invalid; see `fields`",
        );
        error.fields = fields;
        error
    }

    /// `422` with a code of the caller's choosing (a rule of the domain, not a shape error).
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// `412`: the `If-Match` does not match the current `ETag`.
    pub fn precondition_failed() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the resource changed since you read it (If-Match does not match its ETag); read it again",
        )
    }

    /// `500` for a failure of ours; `detail` is logged, never sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the service failed to handle this request",
        )
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(format!("database: {e}"))
    }
}

/// The parts of an error, carried to the request-id middleware that renders them.
#[derive(Debug, Clone)]
pub struct ErrorParts {
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response.extensions_mut().insert(ErrorParts {
            code: self.code,
            message: self.message,
            fields: self.fields,
        });
        response
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    fields: &'a [FieldError],
}

/// The JSON body of an error.
pub fn render(parts: &ErrorParts, request_id: &str) -> Vec<u8> {
    serde_json::to_vec(&Body {
        error: Inner {
            code: parts.code,
            message: &parts.message,
            request_id,
            fields: &parts.fields,
        },
    })
    .unwrap_or_default()
}

/// The error body as the OpenAPI document describes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub request_id: String,
    #[serde(default)]
    pub fields: Vec<FieldError>,
}
