//! Prometheus metrics: requests by route and status, latency by route, database pool usage;
//! notifications accepted, delivery attempts and outcomes, provider circuits.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::delivery::provider::Channel;
use crate::notifications::model::DeliveryStatus;
use crate::AppState;

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    pool: IntGaugeVec,
    notifications: IntCounterVec,
    deliveries: IntCounterVec,
    attempts: IntCounterVec,
    circuits: IntGaugeVec,
    delivery_seconds: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gardien_backend_requests_total",
                "Requests, by route template, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gardien_backend_request_duration_seconds",
                "Request latency, by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "gardien_backend_db_connections",
                "Database pool connections, by state (open, idle, max)",
            ),
            &["state"],
        )?;
        let notifications = IntCounterVec::new(
            Opts::new(
                "gardien_backend_notifications_total",
                "Notification channels accepted by POST /api/notifications, by channel and first status (queued, skipped)",
            ),
            &["channel", "status"],
        )?;
        let deliveries = IntCounterVec::new(
            Opts::new(
                "gardien_backend_deliveries_total",
                "Deliveries that reached a final status, by channel, status (sent, failed) and reason",
            ),
            &["channel", "status", "reason"],
        )?;
        let attempts = IntCounterVec::new(
            Opts::new(
                "gardien_backend_delivery_attempts_total",
                "Attempts to hand a message to a provider, by provider and outcome",
            ),
            &["provider", "outcome"],
        )?;
        let circuits = IntGaugeVec::new(
            Opts::new(
                "gardien_backend_provider_circuit",
                "1 for each provider's current circuit state (closed, open, half_open), 0 for the others",
            ),
            &["provider", "state"],
        )?;
        let delivery_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gardien_backend_delivery_seconds",
                "From the notification's acceptance to a provider's acceptance, by channel",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["channel"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(circuits.clone()))?;
        registry.register(Box::new(delivery_seconds.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            pool,
            notifications,
            deliveries,
            attempts,
            circuits,
            delivery_seconds,
        })
    }
}

impl Metrics {
    /// A channel of an accepted notification, with its first status.
    pub fn notification(&self, channel: Channel, status: DeliveryStatus) {
        self.notifications
            .with_label_values(&[channel.name(), status.name()])
            .inc();
    }

    /// A delivery reached `sent` or `failed` (`reason` empty when sent).
    pub fn delivery_finished(&self, channel: Channel, status: DeliveryStatus, reason: &str) {
        self.deliveries
            .with_label_values(&[channel.name(), status.name(), reason])
            .inc();
    }

    /// Seconds from acceptance to a provider's acceptance.
    pub fn delivered_after(&self, channel: Channel, seconds: f64) {
        self.delivery_seconds
            .with_label_values(&[channel.name()])
            .observe(seconds);
    }

    /// One attempt's outcome.
    pub fn attempt(&self, provider: &str, outcome: &str) {
        self.attempts.with_label_values(&[provider, outcome]).inc();
    }

    /// A provider's circuit is now in `state`.
    pub fn circuit(&self, provider: &str, state: &str) {
        for candidate in ["closed", "open", "half_open"] {
            self.circuits
                .with_label_values(&[provider, candidate])
                .set(i64::from(candidate == state));
        }
    }
}

/// Counts every request under its route template (`/api/reports/{id}`), never the raw path.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    state
        .metrics
        .requests
        .with_label_values(&[route.as_str(), method.as_str(), status.as_str()])
        .inc();
    state
        .metrics
        .duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `/metrics` in the Prometheus text format.
pub async fn render(State(state): State<AppState>) -> Response {
    let pool = &state.db.pool;
    state
        .metrics
        .pool
        .with_label_values(&["open"])
        .set(i64::from(pool.size()));
    state
        .metrics
        .pool
        .with_label_values(&["idle"])
        .set(i64::try_from(pool.num_idle()).unwrap_or(i64::MAX));
    state
        .metrics
        .pool
        .with_label_values(&["max"])
        .set(i64::from(pool.options().get_max_connections()));
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&state.metrics.registry.gather(), &mut out);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
}
