//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations and
//! served at `/openapi.json`; `make test` checks the running service against it.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "gardien-backend",
        description = "Notification preferences, reports and notification templates. Called through gardien, which verifies the caller's token and forwards X-User-Id, X-User-Email and X-User-Roles, signed in X-Gardien-Identity.",
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail, crate::error::ErrorCode, crate::error::FieldError)),
    modifiers(&Identity),
    security(("gardien_identity" = []))
)]
struct Base;

/// The identity gardien forwards, described as an API-key scheme on `X-User-Id`.
struct Identity;

impl Modify for Identity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "gardien_identity",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-User-Id",
                "The caller's id, set by gardien from the verified token (with X-User-Email, X-User-Roles and the X-Gardien-Identity signature).",
            ))),
        );
    }
}

/// The document the feature routers add their paths to.
pub fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

pub async fn serve(document: Arc<utoipa::openapi::OpenApi>) -> Response {
    axum::Json(document.as_ref().clone()).into_response()
}
