//! The one error type of the backend. Its JSON envelope and its codes are the gateway's
//! (`crates/gardien-errors`), plus the fields a request got wrong:
//!
//! `{"error":{"code":"<snake_case>","message":"<human text>","request_id":"<id>","fields":[{"path","message"}]}}`
//!
//! Handlers return `ApiError`; internals (database errors…) are logged with the request id
//! and never sent to the client. The JSON is written by `request_id::middleware`, which
//! knows the request id: an `ApiError` response carries its parts as an extension until then.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The envelope as the OpenAPI document describes it, a field a request got wrong, and the
/// one list of codes: shared with the gateway.
pub use gardien_errors::{ErrorBody, ErrorCode, ErrorDetail, FieldError};

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub fields: Vec<FieldError>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An answer with `code`, at the status the code goes with.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
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
            ErrorCode::ValidationFailed,
            "the request is invalid; see `fields`",
        );
        error.fields = fields;
        error
    }

    /// `422` with a code of the caller's choosing (a rule of the domain, not a shape error).
    pub fn unprocessable(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut error = Self::new(code, message);
        error.status = StatusCode::UNPROCESSABLE_ENTITY;
        error
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `412`: the `If-Match` does not match the current `ETag`.
    pub fn precondition_failed() -> Self {
        Self::new(
            ErrorCode::PreconditionFailed,
            "the resource changed since you read it (If-Match does not match its ETag); read it again",
        )
    }

    /// `500` for a failure of ours; `detail` is logged, never sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        crate::error_reports::internal_error(&detail);
        Self::new(
            ErrorCode::InternalError,
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
    pub code: ErrorCode,
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

/// The JSON body of an error.
pub fn render(parts: &ErrorParts, request_id: &str) -> Vec<u8> {
    gardien_errors::render(parts.code, &parts.message, request_id, &parts.fields)
}
