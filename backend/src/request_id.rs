//! Request ids (kept from the gateway's `X-Request-Id` when well-formed, else generated),
//! and the rendering of every error answer with that id.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use gardien_telemetry::error_reporting::{self, RequestFields};
use gardien_telemetry::TraceContext;

use crate::error::{render, ErrorParts};

pub const HEADER: &str = "x-request-id";

/// The request id of a request, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn well_formed(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Sets the request id, returns it in `X-Request-Id`, and writes error bodies.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .map(HeaderValue::as_bytes)
        .filter(|id| well_formed(id))
        .and_then(|id| std::str::from_utf8(id).ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    // Every line of the request carries it (the span of `crate::trace`).
    tracing::Span::current().record("request_id", id.as_str());
    let mut response = if error_reporting::enabled() {
        let fields = RequestFields {
            request_id: Some(id.clone()),
            trace: request.extensions().get::<TraceContext>().copied(),
            route: request
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned()),
        };
        error_reporting::in_request(fields, next.run(request)).await
    } else {
        next.run(request).await
    };
    if let Some(parts) = response.extensions_mut().remove::<ErrorParts>() {
        let body = render(&parts, &id);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        *response.body_mut() = Body::from(body);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
