//! Notification templates (admin only): create, read, replace, soft-delete, version history
//! and restore, and preview. Bodies are minijinja templates rendered in strict mode (see
//! `render`); every change makes a new version (see `store`).
//!
//! Decisions:
//! - A deleted key may be created again: the template comes back with the next version
//!   number, and its history (versions before the deletion) stays visible in `/versions`
//!   and restorable. While deleted, every endpoint of the key answers `404`.
//! - A change whose content equals the current one (a repeated `PUT`, restoring the
//!   current version) makes no version and answers the current template.
//! - The channel of a template never changes (`422 channel_immutable`); the category is
//!   part of each version and may change.
//! - `ETag` is the current version (`"3"`); `If-Match` on `PUT`, `DELETE` and restore makes
//!   the change conditional (`412` when it names another version).
//! - Preview renders strictly: if a declared variable that the chosen locale uses is not
//!   given, it answers `422 missing_variables` naming each (`fields[].path` =
//!   `variables.<name>`); declared variables that locale does not use are listed in
//!   `missing_variables` of a `200`. Any other rendering error is `422 render_failed` with the
//!   part's path and the line and column; an sms over 1600 characters is `422 sms_too_long`.

pub mod model;
pub mod render;
pub mod store;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, ErrorCode, FieldError};
use crate::identity::Caller;
use crate::json::StrictJson;
use crate::AppState;
use model::{
    path_key, Channel, Content, CreateTemplate, ListParams, PreviewAnswer, PreviewRequest,
    ReplaceTemplate, TemplateList, TemplateSummary, TemplateView, VersionList, VersionSummary,
    VersionView,
};
use render::RenderError;
use store::{Change, Changed, Created, StoredTemplate};

const TAG: &str = "templates";
const BASE: &str = "/api/notifications/templates";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, replace_template, delete_template))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(restore_version))
        .routes(routes!(preview_template))
}

/// An admin caller: `401` without identity, `403` without the admin role — checked before
/// the body is read.
#[derive(Debug)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(Admin(caller))
    }
}

fn time(micros: i64) -> Result<String, ApiError> {
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.to_string())
        .map_err(ApiError::internal)
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// `If-Match`: `None` without the header or with `*`; else the versions it names (none
/// parseable: matches nothing).
fn if_match(headers: &HeaderMap) -> Option<Vec<i64>> {
    let mut values = headers.get_all(IF_MATCH).iter().peekable();
    values.peek()?;
    let mut versions = Vec::new();
    for value in values {
        for tag in value.to_str().unwrap_or("").split(',') {
            let tag = tag.trim();
            if tag == "*" {
                return None;
            }
            if let Some(n) = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(|t| t.parse::<i64>().ok())
            {
                versions.push(n);
            }
        }
    }
    Some(versions)
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::field("path", rejection.body_text())
}

fn view(t: &StoredTemplate) -> Result<TemplateView, ApiError> {
    Ok(TemplateView {
        key: t.key.clone(),
        category: t.content.category.clone(),
        channel: t.channel,
        version: t.version,
        default_locale: t.content.default_locale.clone(),
        variables: t.content.variables.clone(),
        locales: t.content.locales.clone(),
        created_at: time(t.created_at)?,
        updated_at: time(t.updated_at)?,
        updated_by: t.updated_by.clone(),
    })
}

/// `200` with the template and its `ETag`.
fn answer(status: StatusCode, t: &StoredTemplate) -> Result<Response, ApiError> {
    let mut response = (status, Json(view(t)?)).into_response();
    response.headers_mut().insert(ETAG, etag(t.version));
    Ok(response)
}

/// Shape and template checks of a content for `channel`: `400` listing every problem.
fn validate(channel: Channel, content: &Content) -> Result<(), ApiError> {
    let mut errors = model::check_shape(channel, content);
    errors.extend(render::check(channel, content));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::fields(errors))
    }
}

fn changed(outcome: Changed) -> Result<Response, ApiError> {
    match outcome {
        Changed::Changed(t) | Changed::Unchanged(t) => answer(StatusCode::OK, &t),
        Changed::Deleted => Ok(StatusCode::NO_CONTENT.into_response()),
        Changed::NotFound => Err(ApiError::not_found("template")),
        Changed::PreconditionFailed => Err(ApiError::precondition_failed()),
        Changed::ChannelMismatch(channel) => Err(ApiError::unprocessable(
                ErrorCode::ChannelImmutable,
            format!(
                "this template's channel is `{}` and never changes; create another key for another channel",
                channel.as_str()
            ),
        )),
    }
}

/// Lists the templates (not deleted), sorted by key.
#[utoipa::path(
    get,
    path = "/api/notifications/templates",
    tag = TAG,
    params(ListParams),
    responses(
        (status = 200, description = "The templates, sorted by key", body = TemplateList),
        (status = 400, description = "A filter is invalid or unknown", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
async fn list_templates(
    State(state): State<AppState>,
    _admin: Admin,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<TemplateList>, ApiError> {
    let Query(pairs) = query.map_err(|r| ApiError::field("query", r.body_text()))?;
    let mut category = None;
    let mut channel = None;
    let mut errors = Vec::new();
    for (name, value) in &pairs {
        let duplicate = match name.as_str() {
            "category" => {
                if !model::valid_category(value) {
                    errors.push(FieldError {
                        path: name.clone(),
                        message: "must be 1 to 32 of a-z, 0-9, `_`, `-`".into(),
                    });
                }
                category.replace(value.as_str()).is_some()
            }
            "channel" => match Channel::parse(value) {
                Some(c) => channel.replace(c).is_some(),
                None => {
                    errors.push(FieldError {
                        path: name.clone(),
                        message: "must be `email` or `sms`".into(),
                    });
                    false
                }
            },
            _ => {
                errors.push(FieldError {
                    path: name.clone(),
                    message: "unknown parameter (known: `category`, `channel`)".into(),
                });
                false
            }
        };
        if duplicate {
            errors.push(FieldError {
                path: name.clone(),
                message: "given more than once".into(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let templates = store::list(&state.db, category, channel).await?;
    let templates = templates
        .iter()
        .map(|t| {
            Ok(TemplateSummary {
                key: t.key.clone(),
                category: t.content.category.clone(),
                channel: t.channel,
                default_locale: t.content.default_locale.clone(),
                locales: t.content.locales.keys().cloned().collect(),
                version: t.version,
                updated_at: time(t.updated_at)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(TemplateList { templates }))
}

/// Creates a template at version 1 (or re-creates a deleted key: its history goes on).
#[utoipa::path(
    post,
    path = "/api/notifications/templates",
    tag = TAG,
    request_body = CreateTemplate,
    responses(
        (status = 201, description = "Created", body = TemplateView, headers(
            ("Location" = String, description = "The template's URL"),
            ("ETag" = String, description = "The template's version"),
        )),
        (status = 400, description = "Invalid: the fields say where (template errors give line and column)", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "A template with this key exists", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
async fn create_template(
    State(state): State<AppState>,
    Admin(caller): Admin,
    StrictJson(body): StrictJson<CreateTemplate>,
) -> Result<Response, ApiError> {
    let (key, channel, content) = body.into_parts();
    let mut errors = Vec::new();
    if !model::valid_key(&key) {
        errors.push(FieldError {
            path: "key".into(),
            message: "must match `[a-z0-9][a-z0-9._-]{0,63}`".into(),
        });
    }
    if let Err(e) = validate(channel, &content) {
        errors.extend(e.fields);
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    match store::create(&state.db, &key, channel, &content, &caller.user_id).await? {
        Created::Conflict => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("a template with the key `{key}` exists"),
        )),
        Created::Created(t) => {
            let mut response = answer(StatusCode::CREATED, &t)?;
            let location =
                HeaderValue::from_str(&format!("{BASE}/{key}")).map_err(ApiError::internal)?;
            response.headers_mut().insert(LOCATION, location);
            Ok(response)
        }
    }
}

/// The current version of a template, in full.
#[utoipa::path(
    get,
    path = "/api/notifications/templates/{key}",
    tag = TAG,
    params(("key" = String, Path, description = "The template's key")),
    responses(
        (status = 200, description = "The template", body = TemplateView, headers(
            ("ETag" = String, description = "The template's version"),
        )),
        (status = 400, description = "The path cannot be read", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template (or deleted)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
async fn get_template(
    State(state): State<AppState>,
    _admin: Admin,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(key) = key.map_err(path_rejection)?;
    let key = path_key(&key)?;
    match store::current(&state.db, key).await? {
        Some(t) => answer(StatusCode::OK, &t),
        None => Err(ApiError::not_found("template")),
    }
}

/// Replaces a template's content: a new version (none if nothing changes).
#[utoipa::path(
    put,
    path = "/api/notifications/templates/{key}",
    tag = TAG,
    params(
        ("key" = String, Path, description = "The template's key"),
        ("If-Match" = Option<String>, Header, description = "The ETag read: the change applies only to that version"),
    ),
    request_body = ReplaceTemplate,
    responses(
        (status = 200, description = "The template as it now stands", body = TemplateView, headers(
            ("ETag" = String, description = "The template's version"),
        )),
        (status = 400, description = "Invalid: the fields say where (template errors give line and column)", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template (or deleted)", body = ErrorBody),
        (status = 412, description = "If-Match names another version", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 422, description = "`channel_immutable`: the channel differs from the template's", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
async fn replace_template(
    State(state): State<AppState>,
    Admin(caller): Admin,
    key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    StrictJson(body): StrictJson<ReplaceTemplate>,
) -> Result<Response, ApiError> {
    let Path(key) = key.map_err(path_rejection)?;
    let key = path_key(&key)?;
    let (channel, content) = body.into_parts();
    validate(channel, &content)?;
    let change = Change {
        content,
        channel,
        if_match: if_match(&headers),
        summary: "updated".into(),
        by: caller.user_id,
    };
    changed(store::change(&state.db, key, &change).await?)
}

/// Soft-deletes a template: reads answer 404, its category leaves the preferences, its
/// versions stay.
#[utoipa::path(
    delete,
    path = "/api/notifications/templates/{key}",
    tag = TAG,
    params(
        ("key" = String, Path, description = "The template's key"),
        ("If-Match" = Option<String>, Header, description = "The ETag read: deletes only that version"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The path cannot be read", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template (or deleted)", body = ErrorBody),
        (status = 412, description = "If-Match names another version", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
async fn delete_template(
    State(state): State<AppState>,
    _admin: Admin,
    key: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(key) = key.map_err(path_rejection)?;
    let key = path_key(&key)?;
    changed(store::delete(&state.db, key, if_match(&headers).as_deref()).await?)
}

/// Every version of a template, oldest first.
#[utoipa::path(
    get,
    path = "/api/notifications/templates/{key}/versions",
    tag = TAG,
    params(("key" = String, Path, description = "The template's key")),
    responses(
        (status = 200, description = "The history", body = VersionList),
        (status = 400, description = "The path cannot be read", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template (or deleted)", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
async fn list_versions(
    State(state): State<AppState>,
    _admin: Admin,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<VersionList>, ApiError> {
    let Path(key) = key.map_err(path_rejection)?;
    let key = path_key(&key)?;
    let Some((current_version, versions)) = store::versions(&state.db, key).await? else {
        return Err(ApiError::not_found("template"));
    };
    let versions = versions
        .into_iter()
        .map(|v| {
            Ok(VersionSummary {
                version: v.version,
                created_at: time(v.created_at)?,
                created_by: v.created_by,
                summary: v.summary,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(VersionList {
        key: key.to_owned(),
        current_version,
        versions,
    }))
}

/// `n` of `…/versions/{n}`: a positive integer; others are `400`.
fn version_number(n: &str) -> Result<i64, ApiError> {
    n.parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::field("n", "must be a version number (an integer from 1)"))
}

/// Reads version `n` of `key`, or `404`.
async fn stored_version(
    state: &AppState,
    key: &str,
    n: i64,
) -> Result<(store::StoredVersion, Content), ApiError> {
    let mut version = store::version(&state.db, key, n)
        .await?
        .ok_or_else(|| ApiError::not_found("version"))?;
    let content = version
        .content
        .take()
        .ok_or_else(|| ApiError::internal("version read without content"))?;
    Ok((version, content))
}

/// One version of a template, in full.
#[utoipa::path(
    get,
    path = "/api/notifications/templates/{key}/versions/{n}",
    tag = TAG,
    params(
        ("key" = String, Path, description = "The template's key"),
        ("n" = i64, Path, minimum = 1, description = "The version number"),
    ),
    responses(
        (status = 200, description = "The version", body = VersionView),
        (status = 400, description = "`n` is not a version number", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template (or deleted) or version", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
async fn get_version(
    State(state): State<AppState>,
    _admin: Admin,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<VersionView>, ApiError> {
    let Path((key, n)) = path.map_err(path_rejection)?;
    let key = path_key(&key)?;
    let n = version_number(&n)?;
    let (version, content) = stored_version(&state, key, n).await?;
    Ok(Json(VersionView {
        key: key.to_owned(),
        version: version.version,
        created_at: time(version.created_at)?,
        created_by: version.created_by,
        summary: version.summary,
        category: content.category,
        default_locale: content.default_locale,
        variables: content.variables,
        locales: content.locales,
    }))
}

/// Makes version `n`'s content current, as a new version (history is never rewritten).
#[utoipa::path(
    post,
    path = "/api/notifications/templates/{key}/versions/{n}/restore",
    tag = TAG,
    params(
        ("key" = String, Path, description = "The template's key"),
        ("n" = i64, Path, minimum = 1, description = "The version to restore"),
        ("If-Match" = Option<String>, Header, description = "The ETag read: restores only over that version"),
    ),
    responses(
        (status = 200, description = "The template as it now stands", body = TemplateView, headers(
            ("ETag" = String, description = "The template's version"),
        )),
        (status = 400, description = "`n` is not a version number", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template (or deleted) or version", body = ErrorBody),
        (status = 412, description = "If-Match names another version", body = ErrorBody),
        (status = 422, description = "`invalid_version`: that version does not pass today's checks", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
async fn restore_version(
    State(state): State<AppState>,
    Admin(caller): Admin,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((key, n)) = path.map_err(path_rejection)?;
    let key = path_key(&key)?;
    let n = version_number(&n)?;
    let current = store::current(&state.db, key)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    let (_, content) = stored_version(&state, key, n).await?;
    if let Err(e) = validate(current.channel, &content) {
        let mut error = ApiError::unprocessable(
            ErrorCode::InvalidVersion,
            format!("version {n} does not pass today's checks; see `fields`"),
        );
        error.fields = e.fields;
        return Err(error);
    }
    let change = Change {
        content,
        channel: current.channel,
        if_match: if_match(&headers),
        summary: format!("restored from version {n}"),
        by: caller.user_id,
    };
    changed(store::change(&state.db, key, &change).await?)
}

/// The answer to a template that did not render (preview, and sending a notification).
pub fn render_error(error: RenderError, locale_used: &str) -> ApiError {
    match error {
        RenderError::MissingVariables(names) => {
            let mut e = ApiError::unprocessable(
                ErrorCode::MissingVariables,
                format!(
                    "locale `{locale_used}` uses variables that were not given: {}",
                    names.join(", ")
                ),
            );
            e.fields = names
                .into_iter()
                .map(|name| FieldError {
                    path: format!("variables.{name}"),
                    message: format!("declared, used by locale `{locale_used}`, and not given"),
                })
                .collect();
            e
        }
        RenderError::Template { path, message } => {
            let mut e = ApiError::unprocessable(
                ErrorCode::RenderFailed,
                format!("the template failed to render: {path}: {message}"),
            );
            e.fields = vec![FieldError { path, message }];
            e
        }
        RenderError::SmsTooLong { .. } => {
            let mut e = ApiError::unprocessable(ErrorCode::SmsTooLong, error.to_string());
            e.fields = vec![FieldError {
                path: render::part_path(locale_used, Channel::Sms, "text"),
                message: error.to_string(),
            }];
            e
        }
        RenderError::VariablesNotAnObject => ApiError::field("variables", error.to_string()),
        RenderError::NoContent => ApiError::internal("stored template without content"),
    }
}

/// Renders a template for a locale and variables, without sending anything.
#[utoipa::path(
    post,
    path = "/api/notifications/templates/{key}/preview",
    tag = TAG,
    params(("key" = String, Path, description = "The template's key")),
    request_body = PreviewRequest,
    responses(
        (status = 200, description = "The rendered parts", body = PreviewAnswer),
        (status = 400, description = "Invalid locale or body", body = ErrorBody),
        (status = 401, description = "No identity", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such template (or deleted)", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 422, description = "`missing_variables` (used but not given), `render_failed` (with line and column) or `sms_too_long`", body = ErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody),
    )
)]
async fn preview_template(
    State(state): State<AppState>,
    _admin: Admin,
    key: Result<Path<String>, PathRejection>,
    StrictJson(body): StrictJson<PreviewRequest>,
) -> Result<Json<PreviewAnswer>, ApiError> {
    let Path(key) = key.map_err(path_rejection)?;
    let key = path_key(&key)?;
    if let Some(locale) = &body.locale {
        if !model::valid_requested_locale(locale) {
            return Err(ApiError::field(
                "locale",
                "not a locale tag such as `en`, `fr` or `fr-CA`",
            ));
        }
    }
    let template = store::current(&state.db, key)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    let locale = body
        .locale
        .as_deref()
        .unwrap_or(&template.content.default_locale);
    let variables = serde_json::Value::Object(body.variables.unwrap_or_default());
    let locale_used = render::resolve_locale(
        locale,
        &template.content.locales,
        &template.content.default_locale,
    );
    let rendered =
        render::render(&template, locale, &variables).map_err(|e| render_error(e, locale_used))?;
    Ok(Json(PreviewAnswer {
        locale_used: rendered.locale_used,
        subject: rendered.subject,
        html: rendered.html,
        text: rendered.text,
        missing_variables: rendered.missing_variables,
    }))
}
