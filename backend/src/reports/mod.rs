//! Reports: `POST /api/reports` (create, owned by the caller), `GET /api/reports/{id}`,
//! `GET /api/reports` (filters, `created_at` sort, cursor pagination, optional total) and
//! `PATCH /api/reports/{id}` (admins move the status `pending → processing → ready | failed`).
//!
//! Visibility: a user sees only their own reports; someone else's report is `404`, exactly
//! like a missing one, so its existence is never revealed. An admin sees every report.
//! Choices: a payload over 256 KiB is `413 payload_too_large` naming `payload`; a move the
//! status machine does not allow is `409 invalid_transition`.

pub mod cursor;
pub mod model;
pub mod store;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::now_micros;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::identity::Caller;
use crate::json::StrictJson;
use crate::reports::model::{ListQuery, NewReport, Report, ReportPage, StatusChange};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reports, create_report))
        .routes(routes!(get_report, change_status))
}

/// Creates a report owned by the caller, `pending`.
#[utoipa::path(
    post,
    path = "/api/reports",
    tag = "reports",
    request_body = NewReport,
    responses(
        (status = 201, description = "The new report", body = Report,
            headers(("Location" = String, description = "`/api/reports/{id}` of the new report"))),
        (status = 400, description = "`invalid_json`, or `validation_failed` naming the field (`title`, `type`, an unknown field…)", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no identity, or not signed by gardien", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the payload is over 256 KiB (`fields` names `payload`), or the body over 1 MiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
    )
)]
async fn create_report(
    State(state): State<AppState>,
    caller: Caller,
    StrictJson(body): StrictJson<NewReport>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Report>), ApiError> {
    let report = body.validate()?;
    let id = uuid::Uuid::new_v4().to_string();
    let report = store::insert(&state.db, &id, &caller.user_id, report, now_micros()).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/reports/{id}"))],
        Json(report),
    ))
}

/// The caller's report (an admin: any report).
#[utoipa::path(
    get,
    path = "/api/reports/{id}",
    tag = "reports",
    params(("id" = String, Path, description = "The report's id")),
    responses(
        (status = 200, description = "The report", body = Report),
        (status = 401, description = "`unauthenticated`: no identity, or not signed by gardien", body = ErrorBody),
        (status = 404, description = "`not_found`: no such report, a malformed id, or a report of another user", body = ErrorBody),
    )
)]
async fn get_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Report>, ApiError> {
    visible(&state, &caller, &id).await.map(Json)
}

/// The caller's reports (an admin: everyone's), filtered, newest first unless `order=asc`,
/// a page at a time.
#[utoipa::path(
    get,
    path = "/api/reports",
    tag = "reports",
    params(model::ListParams),
    responses(
        (status = 200, description = "A page of reports, in (created_at, id) order", body = ReportPage),
        (status = 400, description = "`validation_failed` naming the parameter: unknown or repeated parameter, bad enum, date, limit or cursor, `created_from` after `created_to`, `owner` from a non-admin", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no identity, or not signed by gardien", body = ErrorBody),
    )
)]
async fn list_reports(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<ReportPage>, ApiError> {
    let Query(pairs) =
        query.map_err(|_| ApiError::field("query", "the query string cannot be read"))?;
    let mut query = ListQuery::parse(pairs, caller.is_admin())?;
    if !caller.is_admin() {
        query.owner = Some(caller.user_id);
    }
    let (items, next_cursor) = store::page(&state.db, &query).await?;
    let total = if query.include_total {
        Some(store::count(&state.db, &query).await?)
    } else {
        None
    };
    Ok(Json(ReportPage {
        items,
        next_cursor,
        total,
    }))
}

/// Moves a report's status (admins only).
#[utoipa::path(
    patch,
    path = "/api/reports/{id}",
    tag = "reports",
    params(("id" = String, Path, description = "The report's id")),
    request_body = StatusChange,
    responses(
        (status = 200, description = "The report, in its new status", body = Report),
        (status = 400, description = "`invalid_json`, or `validation_failed` naming the field (`status`, `error` without `failed`, an unknown field…)", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no identity, or not signed by gardien", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller sees this report but is not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such report, a malformed id, or a report the caller cannot see", body = ErrorBody),
        (status = 409, description = "`invalid_transition`: the status machine does not allow this move from the current status (the message names both)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
    )
)]
async fn change_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    StrictJson(body): StrictJson<StatusChange>,
) -> Result<Json<Report>, ApiError> {
    let (to, error) = body.validate()?;
    let mut report = visible(&state, &caller, &id).await?;
    caller.require_admin()?;
    let from = report.status;
    if !from.can_become(to) {
        return Err(invalid_transition(from, to));
    }
    let now = now_micros();
    if !store::set_status(&state.db, &id, from, to, error.as_deref(), now).await? {
        // Another change got there first: report against what it is now.
        let current = visible(&state, &caller, &id).await?;
        return Err(invalid_transition(current.status, to));
    }
    report.status = to;
    report.error = error;
    report.updated_at = jiff::Timestamp::from_microsecond(now)
        .map_err(ApiError::internal)?
        .to_string();
    Ok(Json(report))
}

/// The report `id` if the caller may see it; otherwise `404`, whether it exists or not.
async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<Report, ApiError> {
    let canonical = uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id);
    if !canonical {
        return Err(ApiError::not_found("report"));
    }
    let owner = (!caller.is_admin()).then_some(caller.user_id.as_str());
    store::find(&state.db, id, owner)
        .await?
        .ok_or_else(|| ApiError::not_found("report"))
}

fn invalid_transition(from: model::ReportStatus, to: model::ReportStatus) -> ApiError {
    ApiError::new(
                ErrorCode::InvalidTransition,
        format!(
            "a report cannot go from `{}` to `{}`; allowed: pending → processing, processing → ready, processing → failed",
            from.as_str(),
            to.as_str()
        ),
    )
}
