//! Prometheus metrics: requests by route and status, latency by route, database pool usage;
//! notifications accepted, delivery attempts and outcomes, provider circuits and failovers;
//! the outbox's due rows and their age per channel and whether the database answers
//! (refreshed by a periodic query, [`keep_outbox_fresh`]); the process's CPU, memory and
//! open files (Linux) and `gardien_backend_build_info`.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::db::{now_micros, Db};

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
    failovers: IntCounterVec,
    /// `X-Gardien-Identity` signatures accepted, by the secret that verified them.
    identity_verified: IntCounterVec,
    outbox_due: IntGaugeVec,
    outbox_oldest: GaugeVec,
    /// When the outbox was last counted, Unix microseconds (0: not yet).
    outbox_counted_at: Arc<AtomicI64>,
    database_up: IntGauge,
}

/// The version and git commit of this build (`unknown` when built without git).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = match option_env!("GARDIEN_GIT_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// How often [`keep_outbox_fresh`] counts the outbox's due rows.
pub const OUTBOX_REFRESH: Duration = Duration::from_secs(15);

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
        let failovers = IntCounterVec::new(
            Opts::new(
                "gardien_backend_provider_failovers_total",
                "Deliveries moved to the channel's next provider, by channel and provider (from, to)",
            ),
            &["channel", "from", "to"],
        )?;
        let identity_verified = IntCounterVec::new(
            Opts::new(
                "gardien_backend_identity_verified_total",
                "X-Gardien-Identity signatures accepted, by the secret that verified them (current, previous: during a rotation)",
            ),
            &["secret"],
        )?;
        for secret in ["current", "previous"] {
            identity_verified.with_label_values(&[secret]);
        }
        let outbox_due = IntGaugeVec::new(
            Opts::new(
                "gardien_backend_outbox_due",
                "Outbox rows due for delivery now and not yet taken, by channel",
            ),
            &["channel"],
        )?;
        let outbox_oldest = GaugeVec::new(
            Opts::new(
                "gardien_backend_outbox_oldest_due_seconds",
                "Seconds the oldest due outbox row has waited, by channel (0 when none)",
            ),
            &["channel"],
        )?;
        let database_up = IntGauge::new(
            "gardien_backend_database_up",
            "1 when the database answered the last query of the outbox refresh or /readyz",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "gardien_backend_build_info",
                "1, labelled with the version and git commit of the running backend",
            ),
            &["version", "commit"],
        )?;
        build_info.with_label_values(&[VERSION, COMMIT]).set(1);
        for channel in Channel::ALL {
            outbox_due.with_label_values(&[channel.name()]);
            outbox_oldest.with_label_values(&[channel.name()]);
        }
        registry.register(Box::new(failovers.clone()))?;
        registry.register(Box::new(identity_verified.clone()))?;
        registry.register(Box::new(outbox_due.clone()))?;
        registry.register(Box::new(outbox_oldest.clone()))?;
        registry.register(Box::new(database_up.clone()))?;
        registry.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
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
            failovers,
            identity_verified,
            outbox_due,
            outbox_oldest,
            outbox_counted_at: Arc::new(AtomicI64::new(0)),
            database_up,
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

    /// A signature verified by `secret` (`current` or `previous`).
    pub fn identity_verified(&self, secret: &str) {
        self.identity_verified.with_label_values(&[secret]).inc();
    }

    /// One attempt's outcome.
    pub fn attempt(&self, provider: &str, outcome: &str) {
        self.attempts.with_label_values(&[provider, outcome]).inc();
    }

    /// Every series, as `/metrics` renders them.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// A delivery of `channel` moved from provider `from` to `to` (names from the registry).
    pub fn failover(&self, channel: Channel, from: &str, to: &str) {
        self.failovers
            .with_label_values(&[channel.name(), from, to])
            .inc();
    }

    /// Whether the database answered.
    pub fn database_up(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// Counts the outbox's due rows (what a worker would claim now: `queued` and due, or
    /// `sending` with an expired lease) and the age of the oldest, per channel. A failed
    /// query sets `gardien_backend_database_up` to 0 and keeps the last counts.
    pub async fn refresh_outbox(&self, db: &Db) {
        let now = now_micros();
        let rows = sqlx::query(
            "SELECT channel, COUNT(*) AS due, \
               MIN(CASE WHEN status = 'queued' THEN not_before ELSE lease_until END) AS oldest \
             FROM notification_deliveries \
             WHERE (status = 'queued' AND not_before <= $1) OR (status = 'sending' AND lease_until <= $1) \
             GROUP BY channel",
        )
        .bind(now)
        .fetch_all(&db.pool)
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "counting the outbox's due rows failed");
                self.database_up(false);
                return;
            }
        };
        self.database_up(true);
        self.outbox_counted_at.store(now, Ordering::Relaxed);
        for channel in Channel::ALL {
            self.outbox_due.with_label_values(&[channel.name()]).set(0);
            self.outbox_oldest
                .with_label_values(&[channel.name()])
                .set(0.0);
        }
        for row in rows {
            let (Ok(channel), Ok(due), Ok(oldest)) = (
                row.try_get::<String, _>("channel"),
                row.try_get::<i64, _>("due"),
                row.try_get::<i64, _>("oldest"),
            ) else {
                continue;
            };
            // Only the known channels: a label never comes from a stored value as is.
            let Some(channel) = Channel::from_name(&channel) else {
                continue;
            };
            self.outbox_due
                .with_label_values(&[channel.name()])
                .set(due);
            self.outbox_oldest
                .with_label_values(&[channel.name()])
                .set((now - oldest).max(0) as f64 / 1e6);
        }
    }

    /// The last count of the outbox, for `/readyz`: per channel the rows due and the
    /// oldest one's wait, and how long ago they were counted (`null` before the first
    /// count). Read from the gauges: no query per call.
    pub fn outbox_backlog(&self) -> Value {
        let channels: serde_json::Map<String, Value> = Channel::ALL
            .into_iter()
            .map(|channel| {
                let due = self.outbox_due.with_label_values(&[channel.name()]).get();
                let oldest = self
                    .outbox_oldest
                    .with_label_values(&[channel.name()])
                    .get();
                (
                    channel.name().to_owned(),
                    json!({"due": due, "oldest_due_seconds": oldest}),
                )
            })
            .collect();
        let counted_at = self.outbox_counted_at.load(Ordering::Relaxed);
        let counted_seconds_ago =
            (counted_at > 0).then(|| (now_micros() - counted_at).max(0) as f64 / 1e6);
        json!({"channels": channels, "counted_seconds_ago": counted_seconds_ago})
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

/// Refreshes the outbox metrics every `interval`, for as long as the process runs.
pub async fn keep_outbox_fresh(metrics: std::sync::Arc<Metrics>, db: Db, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        metrics.refresh_outbox(&db).await;
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
