//! gardien-backend: the service methods the existing API never implemented — notification
//! preferences, reports and notification templates — behind gardien, on SQLite or
//! PostgreSQL.
//!
//! Handlers are thin: extractors validate (`Caller` for identity, `StrictJson` for bodies),
//! each feature's `store` does the SQL, and one `ApiError` maps to the JSON error answer.
//! [`app`] builds the whole service so tests can call it in-process.

pub mod config;
pub mod db;
pub mod delivery;
pub mod env_docs;
pub mod error;
pub mod error_reports;
pub mod health;
pub mod identity;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod migrations;
pub mod notifications;
pub mod openapi;
pub mod preferences;
pub mod ready;
pub mod reports;
pub mod request_id;
pub mod secrets;
pub mod templates;
pub mod trace;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use gardien_secrets::SecretLookup;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Options;
use crate::db::Db;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub options: Arc<Options>,
    pub metrics: Arc<Metrics>,
    /// Wakes the delivery workers when a notification is accepted.
    pub outbox: Arc<tokio::sync::Notify>,
    /// The providers' circuits, shown on `/readyz`.
    pub circuits: Arc<delivery::circuit::Circuits>,
    /// Current secret values (the refreshed store; a map in tests), read at each use so a
    /// rotated value is picked up without a restart.
    pub secrets: Arc<dyn SecretLookup>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db)
            .field("options", &self.options)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

/// The whole service: the API (documented in `/openapi.json`), health, metrics.
pub fn app(state: AppState) -> Router {
    let (api, document) = OpenApiRouter::with_openapi(openapi::base())
        .merge(preferences::router())
        .merge(reports::router())
        .merge(templates::router())
        .merge(notifications::router())
        .split_for_parts();
    let document = Arc::new(document);
    Router::new()
        .merge(api)
        .route(
            "/openapi.json",
            get(move || openapi::serve(Arc::clone(&document))),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this path does not take this method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::middleware,
        ))
        .layer(DefaultBodyLimit::max(json::BODY_LIMIT))
        .layer(axum::middleware::from_fn(request_id::middleware))
        .layer(axum::middleware::from_fn(trace::middleware))
        .with_state(state)
}
