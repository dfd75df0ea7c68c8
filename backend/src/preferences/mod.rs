//! Notification preferences: `GET`, `PUT` (replace) and `PATCH` (JSON Merge Patch) of the
//! caller's document at `/api/notifications/preferences`, and of any user's at
//! `/api/notifications/preferences/{user_id}` — admins only, except that a user may name
//! themself there.
//!
//! Every answer carries `ETag: "<version>"` (`"0"`: the defaults, nothing stored); an update
//! with a stale `If-Match` gets `412` and changes nothing. Updates are compare-and-set on the
//! version (see `store`): of two updates from the same read, one wins, the other gets `412`
//! (or, without `If-Match`, is applied on top of the winner). An update that changes nothing
//! writes nothing and keeps the version. Delivery reads [`store::effective`].

pub mod etag;
pub mod merge;
pub mod model;
pub mod store;
pub mod validate;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::header::ETAG;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::identity::Caller;
use crate::json::StrictJson;
use crate::AppState;

pub use model::Preferences;
use model::PreferencesPatch;
use validate::Mode;

const TAG: &str = "preferences";

/// Rereads after losing a race to another update without `If-Match`, before giving up.
const MAX_ATTEMPTS: usize = 8;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_own, put_own, patch_own))
        .routes(routes!(get_user, put_user, patch_user))
}

/// The caller's preferences (the defaults when they never changed them).
#[utoipa::path(
    get,
    path = "/api/notifications/preferences",
    tag = TAG,
    operation_id = "get_preferences",
    responses(
        (status = 200, description = "The caller's preferences (the documented defaults when nothing is stored, ETag \"0\")", body = Preferences,
            headers(("ETag" = String, description = "Strong ETag of the document's version, e.g. \"3\""))),
        (status = 401, description = "`unauthenticated`: no identity, or not signed by gardien", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
async fn get_own(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    read(&state, target(&caller, None)?).await
}

/// Replaces the caller's preferences with a full document.
#[utoipa::path(
    put,
    path = "/api/notifications/preferences",
    tag = TAG,
    operation_id = "replace_preferences",
    params(IfMatchHeader),
    request_body(content = Preferences, content_type = "application/json", description = "The full document: every member is required (a category added by templates may be left out and takes its default)."),
    responses(
        (status = 200, description = "The stored preferences", body = Preferences,
            headers(("ETag" = String, description = "Strong ETag of the new version"))),
        (status = 400, description = "`validation_failed` (each wrong, missing or unknown field by its path, e.g. `categories.promos`, or the `If-Match` header), `invalid_json`, `bad_request`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 409, description = "`conflict`: too many concurrent updates; retry", body = ErrorBody),
        (status = 412, description = "`precondition_failed`: If-Match does not match the current ETag (sent back); nothing changed", body = ErrorBody,
            headers(("ETag" = String, description = "The current ETag"))),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`security_notifications_required`: security notifications cannot be turned off by email or in-app; nothing changed", body = ErrorBody,
            headers(("ETag" = String, description = "The current ETag"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
async fn put_own(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    write(&state, target(&caller, None)?, Mode::Replace, request).await
}

/// Merges a JSON Merge Patch (RFC 7386) into the caller's preferences.
#[utoipa::path(
    patch,
    path = "/api/notifications/preferences",
    tag = TAG,
    operation_id = "patch_preferences",
    params(IfMatchHeader),
    request_body(
        description = "A JSON Merge Patch (RFC 7386): objects merge, `null` resets a member to its default; the result is validated as a whole.",
        content(
            (PreferencesPatch = "application/merge-patch+json"),
            (PreferencesPatch = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "The preferences after the merge", body = Preferences,
            headers(("ETag" = String, description = "Strong ETag of the resulting version"))),
        (status = 400, description = "`validation_failed` (each wrong or unknown field of the merged document by its path, or the `If-Match` header), `invalid_json`, `bad_request`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 409, description = "`conflict`: too many concurrent updates; retry", body = ErrorBody),
        (status = 412, description = "`precondition_failed`: If-Match does not match the current ETag (sent back); nothing changed", body = ErrorBody,
            headers(("ETag" = String, description = "The current ETag"))),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`security_notifications_required`: security notifications cannot be turned off by email or in-app; nothing changed", body = ErrorBody,
            headers(("ETag" = String, description = "The current ETag"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
async fn patch_own(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    write(&state, target(&caller, None)?, Mode::Merged, request).await
}

/// Another user's preferences (admin; a user may name themself).
#[utoipa::path(
    get,
    path = "/api/notifications/preferences/{user_id}",
    tag = TAG,
    operation_id = "get_user_preferences",
    params(UserIdPath),
    responses(
        (status = 200, description = "The user's preferences (defaults when nothing is stored; `contacts.email` is null unless the user set one, since only their own requests carry their email)", body = Preferences,
            headers(("ETag" = String, description = "Strong ETag of the document's version"))),
        (status = 400, description = "`validation_failed`: `user_id` is not valid UTF-8", body = ErrorBody),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another user's preferences need the admin role", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    read(&state, target(&caller, Some(path_user(user_id)?))?).await
}

/// Replaces another user's preferences (admin; a user may name themself).
#[utoipa::path(
    put,
    path = "/api/notifications/preferences/{user_id}",
    tag = TAG,
    operation_id = "replace_user_preferences",
    params(UserIdPath, IfMatchHeader),
    request_body(content = Preferences, content_type = "application/json", description = "The full document, as for PUT /api/notifications/preferences."),
    responses(
        (status = 200, description = "The stored preferences", body = Preferences,
            headers(("ETag" = String, description = "Strong ETag of the new version"))),
        (status = 400, description = "`validation_failed` (each wrong, missing or unknown field by its path, the `If-Match` header, or `user_id`), `invalid_json`, `bad_request`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another user's preferences need the admin role (checked before the body)", body = ErrorBody),
        (status = 409, description = "`conflict`: too many concurrent updates; retry", body = ErrorBody),
        (status = 412, description = "`precondition_failed`; nothing changed", body = ErrorBody,
            headers(("ETag" = String, description = "The current ETag"))),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`security_notifications_required`; nothing changed", body = ErrorBody,
            headers(("ETag" = String, description = "The current ETag"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
async fn put_user(
    State(state): State<AppState>,
    caller: Caller,
    user_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let target = target(&caller, Some(path_user(user_id)?))?;
    write(&state, target, Mode::Replace, request).await
}

/// Merges a JSON Merge Patch into another user's preferences (admin; a user may name
/// themself).
#[utoipa::path(
    patch,
    path = "/api/notifications/preferences/{user_id}",
    tag = TAG,
    operation_id = "patch_user_preferences",
    params(UserIdPath, IfMatchHeader),
    request_body(
        description = "A JSON Merge Patch (RFC 7386), as for PATCH /api/notifications/preferences.",
        content(
            (PreferencesPatch = "application/merge-patch+json"),
            (PreferencesPatch = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "The preferences after the merge", body = Preferences,
            headers(("ETag" = String, description = "Strong ETag of the resulting version"))),
        (status = 400, description = "`validation_failed` (each wrong or unknown field by its path, the `If-Match` header, or `user_id`), `invalid_json`, `bad_request`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: another user's preferences need the admin role (checked before the body)", body = ErrorBody),
        (status = 409, description = "`conflict`: too many concurrent updates; retry", body = ErrorBody),
        (status = 412, description = "`precondition_failed`; nothing changed", body = ErrorBody,
            headers(("ETag" = String, description = "The current ETag"))),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`security_notifications_required`; nothing changed", body = ErrorBody,
            headers(("ETag" = String, description = "The current ETag"))),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
async fn patch_user(
    State(state): State<AppState>,
    caller: Caller,
    user_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let target = target(&caller, Some(path_user(user_id)?))?;
    write(&state, target, Mode::Merged, request).await
}

/// `If-Match`, as the OpenAPI document describes it.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// The ETag read before (e.g. `"3"`; `"0"` for a user with nothing stored), or `*`. When
    /// it does not match the current ETag: 412, nothing changed. Absent: unconditional.
    #[param(rename = "If-Match", value_type = String, required = false)]
    pub if_match: Option<String>,
}

/// `{user_id}`, as the OpenAPI document describes it.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserIdPath {
    /// The user whose preferences to read or change (their `X-User-Id`).
    pub user_id: String,
}

/// Whose preferences a request is about, and the identity email their defaults fall back to
/// (only known for the caller themself).
#[derive(Debug)]
struct Target {
    user_id: String,
    identity_email: Option<String>,
}

/// The caller themself, or — for an admin — the user named in the path.
fn target(caller: &Caller, named: Option<String>) -> Result<Target, ApiError> {
    match named {
        Some(user_id) if user_id != caller.user_id => {
            if !caller.is_admin() {
                return Err(ApiError::forbidden(
                    "only an admin may read or change another user's preferences",
                ));
            }
            Ok(Target {
                user_id,
                identity_email: None,
            })
        }
        _ => Ok(Target {
            user_id: caller.user_id.clone(),
            identity_email: caller.email.clone(),
        }),
    }
}

fn path_user(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(user_id)| user_id)
        .map_err(|_| ApiError::field("user_id", "expected a user id (UTF-8)"))
}

async fn read(state: &AppState, target: Target) -> Result<Response, ApiError> {
    let categories = store::categories(&state.db).await?;
    let current = store::current(&state.db, &target.user_id, &categories).await?;
    Ok(answer(current.preferences, current.version, &target))
}

/// `PUT` (`Mode::Replace`) or `PATCH` (`Mode::Merged`): builds and validates the new
/// document, checks `If-Match` against the current version, and stores it only if the
/// version is still the one read — otherwise reads again (where a stale `If-Match` fails).
async fn write(
    state: &AppState,
    target: Target,
    mode: Mode,
    request: Request,
) -> Result<Response, ApiError> {
    let if_match = etag::IfMatch::from_headers(request.headers())?;
    let StrictJson(body) = StrictJson::<Value>::from_request(request, state).await?;
    let categories = store::categories(&state.db).await?;
    for _ in 0..MAX_ATTEMPTS {
        let current = store::current(&state.db, &target.user_id, &categories).await?;
        let tag = etag::of(current.version);
        // The body is judged before the precondition: a request that is wrong in itself
        // gets the error that says so (400/422), whatever its If-Match.
        let next = match mode {
            Mode::Replace => validate::document(&body, &categories)?,
            Mode::Merged => validate::merged(&current.preferences, &body, &categories)?,
        };
        validate::security(&next).map_err(|e| e.with_header(ETAG, tag.clone()))?;
        if !if_match.allows(current.version) {
            return Err(ApiError::precondition_failed().with_header(ETAG, tag));
        }
        if next == current.preferences {
            return Ok(answer(next, current.version, &target));
        }
        let stored = if current.version == 0 {
            store::insert(&state.db, &target.user_id, &next).await?
        } else {
            store::replace(&state.db, &target.user_id, &next, current.version).await?
        };
        if stored {
            return Ok(answer(next, current.version + 1, &target));
        }
    }
    Err(ApiError::new(
        ErrorCode::Conflict,
        "too many concurrent updates of these preferences; read them again and retry",
    ))
}

fn answer(preferences: Preferences, version: i64, target: &Target) -> Response {
    let preferences = preferences.with_identity_email(target.identity_email.as_deref());
    ([(ETAG, etag::of(version))], Json(preferences)).into_response()
}
