//! Sending notifications: `POST /api/notifications` (admins and internal callers) renders
//! the template in the user's locale, applies the user's preferences and quiet hours, and
//! writes one outbox row per channel in the same transaction as the notification, then
//! answers `202`; delivery workers take it from there (`crate::delivery`).
//! `GET /api/notifications/{id}` shows each channel's status, provider, provider message
//! id and every attempt.
//!
//! Decisions:
//! - Callers: `POST` needs the `admin` or `internal` role (the existing API calls it with
//!   an identity signed like gardien's; see docs/DELIVERY.md). `GET` is open to those and
//!   to the notified user.
//! - Idempotency: see `idempotency`. A replay is answered from what was stored, before the
//!   request is planned again, so it is the same answer even if the template or the
//!   preferences changed since.
//! - Rendering happens here, once: the outbox holds the rendered message, so what a user
//!   receives does not depend on when a worker gets to it.

pub mod idempotency;
pub mod model;
pub mod plan;
pub mod store;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::LOCATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::delivery::provider::Channel;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::identity::Caller;
use crate::json::StrictJson;
use crate::AppState;
use idempotency::Claim;
use model::{ChannelOutcome, NotificationView, SendAnswer, SendRequest};
use store::{Created, NewNotification};

const TAG: &str = "notifications";

/// The role of a service allowed to send notifications (besides `admin`).
pub const INTERNAL_ROLE: &str = "internal";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send_notification))
        .routes(routes!(get_notification))
}

/// A caller allowed to send: `admin` or `internal`.
#[derive(Debug)]
pub struct Sender(pub Caller);

impl Sender {
    fn allowed(caller: &Caller) -> bool {
        caller.is_admin() || caller.roles.iter().any(|r| r == INTERNAL_ROLE)
    }
}

impl FromRequestParts<AppState> for Sender {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !Sender::allowed(&caller) {
            return Err(ApiError::forbidden(
                "sending notifications needs the admin or internal role",
            ));
        }
        Ok(Sender(caller))
    }
}

fn location(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("/api/notifications/{id}"))
        .unwrap_or(HeaderValue::from_static("/api/notifications"))
}

fn accepted(answer: SendAnswer, replay: bool) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(&answer)).into_response();
    response
        .headers_mut()
        .insert(LOCATION, location(&answer.id));
    if replay {
        response.headers_mut().insert(
            HeaderName::from_static(idempotency::REPLAY_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    response
}

fn key_reused() -> ApiError {
    ApiError::unprocessable(
        ErrorCode::IdempotencyKeyReused,
        "this idempotency key was used in the last 24 hours for a different request",
    )
}

/// Sends a notification to a user on the channels of a template.
#[utoipa::path(
    post,
    path = "/api/notifications",
    tag = TAG,
    operation_id = "send_notification",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to repeat for 24 hours: the same key and request get the same answer (with `Idempotency-Replay: true`); the same key with another request gets 422.")),
    request_body(content = SendRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: one outbox row per channel was written (queued or skipped)", body = SendAnswer,
            headers(("Location" = String, description = "The notification's URL"),
                    ("Idempotency-Replay" = String, description = "`true` when this answers an earlier request with the same key"))),
        (status = 400, description = "`validation_failed` (fields by path), `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: needs the admin or internal role", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`unknown_template`, `template_missing` (a channel asked for has no template), `missing_variables`, `render_failed`, `sms_too_long`, `idempotency_key_reused`", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
async fn send_notification(
    State(state): State<AppState>,
    Sender(caller): Sender,
    headers: HeaderMap,
    StrictJson(request): StrictJson<SendRequest>,
) -> Result<Response, ApiError> {
    let header_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::field("Idempotency-Key", "1 to 255 visible ASCII characters")
        })?),
    };
    // Only a request with a key is fingerprinted.
    let fingerprint = (header_key.is_some() || request.idempotency_key.is_some())
        .then(|| idempotency::fingerprint(&request));
    let now = jiff::Timestamp::now();
    let checked = request.check(header_key, now)?;
    let claim = checked
        .idempotency_key
        .as_ref()
        .zip(fingerprint)
        .map(|(key, fingerprint)| Claim {
            scope: caller.user_id.clone(),
            key: key.clone(),
            fingerprint,
        });
    if let Some(claim) = &claim {
        match store::earlier_within_window(&state.db, claim).await? {
            Some(Created::Replay(answer)) => return Ok(accepted(answer, true)),
            Some(_) => return Err(key_reused()),
            None => {}
        }
    }
    let off: Vec<Channel> = Channel::ALL
        .into_iter()
        .filter(|c| state.options.delivery.channel_off(*c))
        .collect();
    let plan = plan::plan(&state.db, &checked, now, &off).await?;
    let answer = SendAnswer {
        id: uuid::Uuid::new_v4().to_string(),
        channels: plan
            .deliveries
            .iter()
            .map(|d| ChannelOutcome {
                channel: d.channel,
                status: d.status,
                reason: d.reason.map(str::to_owned),
                scheduled_for: (d.not_before > now).then(|| d.not_before.to_string()),
            })
            .collect(),
    };
    let notification = NewNotification {
        id: &answer.id,
        user_id: &checked.user_id,
        template_key: &checked.template_key,
        requested_by: &caller.user_id,
        expires_at: checked.expires_at,
        plan: &plan,
        answer: &answer,
    };
    match store::create(&state.db, &notification, claim.as_ref()).await? {
        Created::New => {
            for delivery in &plan.deliveries {
                state
                    .metrics
                    .notification(delivery.channel, delivery.status);
            }
            state.outbox.notify_waiters();
            Ok(accepted(answer, false))
        }
        Created::Replay(earlier) => Ok(accepted(earlier, true)),
        Created::KeyReused => Err(key_reused()),
    }
}

/// A notification: each channel's status, provider, provider message id and attempts.
#[utoipa::path(
    get,
    path = "/api/notifications/{id}",
    tag = TAG,
    operation_id = "get_notification",
    params(("id" = String, Path, description = "The notification's id")),
    responses(
        (status = 200, description = "The notification", body = NotificationView),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 404, description = "`not_found` (also for a user asking about someone else's)", body = ErrorBody),
        (status = 500, description = "`internal_error`", body = ErrorBody),
    )
)]
async fn get_notification(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<NotificationView>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::field("id", e.body_text()))?;
    let not_found = || ApiError::not_found("notification");
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(not_found());
    }
    let view = store::view(&state.db, &id).await?.ok_or_else(not_found)?;
    if !Sender::allowed(&caller) && view.user_id != caller.user_id {
        return Err(not_found());
    }
    Ok(Json(view))
}
