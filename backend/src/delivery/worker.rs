//! A delivery worker: claims due outbox rows, hands each to its channel's current provider
//! (one attempt per claim), and records the outcome and the row's next state.
//!
//! Each attempt is recorded (and committed) before the provider is called, so a provider
//! never accepts a message no attempt record accounts for. Retries go back to the queue
//! with a later `not_before` rather than holding a worker, so backoff costs nothing and a
//! crash loses nothing. An idle worker sleeps until a new notification wakes it or the poll
//! interval passes (rows held by quiet hours or backoff come due that way).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{watch, Notify};

use crate::db::{now_micros, Db};
use crate::delivery::circuit::{Circuits, Permit};
use crate::delivery::fallback::{self, Decision, Position, RetryPolicy};
use crate::delivery::outbox::{self, AttemptRecord, Claimed, NextState};
use crate::delivery::provider::{
    EmailMessage, Failure, FailureKind, Message, Provider, SmsMessage,
};
use crate::delivery::registry::Providers;
use crate::metrics::Metrics;
use crate::notifications::model::{reason, DeliveryStatus};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub batch: usize,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub provider_timeout: Duration,
    pub retry: RetryPolicy,
}

/// One worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Unique per worker and process start (`<host>-<pid>-<n>-<random>`): the lease owner.
    pub id: String,
    pub db: Db,
    pub providers: Arc<Providers>,
    pub circuits: Arc<Circuits>,
    pub metrics: Arc<Metrics>,
    pub wakeup: Arc<Notify>,
    pub settings: WorkerSettings,
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn jitter() -> f64 {
    rand::random::<f64>()
}

impl Worker {
    /// Runs until `shutdown` turns true; a claimed row not yet started is given back.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.id, "delivery worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Listen for wake-ups before looking, so one between the look and the wait is
            // not missed.
            let woken = self.wakeup.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = now_micros();
            let claimed = outbox::claim(
                &self.db,
                &self.id,
                now,
                now + micros(self.settings.lease),
                i64::try_from(self.settings.batch).unwrap_or(1),
            )
            .await;
            let batch = match claimed {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(worker = %self.id, error = %e, "claiming outbox rows failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.settings.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = &mut woken => {}
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            self.process_batch(batch, &shutdown).await;
        }
        tracing::info!(worker = %self.id, "delivery worker stopped");
    }

    /// Sends a batch, `concurrency` at a time; on shutdown, rows not yet started go back.
    async fn process_batch(&self, batch: Vec<Claimed>, shutdown: &watch::Receiver<bool>) {
        let unstarted: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());
        futures::stream::iter(batch)
            .for_each_concurrent(self.settings.concurrency.max(1), |row| async {
                if *shutdown.borrow() {
                    unstarted.lock().push(row.id.clone());
                    return;
                }
                self.process(row).await;
            })
            .await;
        let unstarted = unstarted.into_inner();
        if !unstarted.is_empty() {
            if let Err(e) = outbox::release(&self.db, &self.id, &unstarted, now_micros()).await {
                tracing::warn!(worker = %self.id, error = %e, "giving rows back failed; their leases will expire");
            }
        }
    }

    /// One attempt for one row.
    pub async fn process(&self, row: Claimed) {
        if let Err(e) = self.try_process(&row).await {
            // The lease expires and the row is claimed again.
            tracing::warn!(worker = %self.id, delivery = %row.id, error = %e, "recording a delivery failed");
        }
    }

    async fn try_process(&self, row: &Claimed) -> Result<(), sqlx::Error> {
        let now = now_micros();
        let providers = self.providers.for_channel(row.channel);
        let (Some(recipient), Some(message)) = (&row.recipient, &row.message) else {
            return self
                .fail_unattempted(
                    row,
                    reason::PROVIDERS_EXHAUSTED,
                    "no recipient or message recorded",
                )
                .await;
        };
        if row.expires_at.is_some_and(|at| at <= now) {
            return self
                .fail_unattempted(row, reason::EXPIRED, "expired before it could be delivered")
                .await;
        }
        let Some(provider) = providers.get(row.provider_index) else {
            return self
                .fail_unattempted(
                    row,
                    reason::PROVIDERS_EXHAUSTED,
                    "no provider left for the channel",
                )
                .await;
        };
        let position = Position {
            index: row.provider_index,
            tries: row.provider_tries,
        };
        let Some(number) =
            outbox::begin_attempt(&self.db, row, &self.id, provider.name(), now).await?
        else {
            tracing::warn!(worker = %self.id, delivery = %row.id, "lease lost before the attempt; another worker has the row");
            return Ok(());
        };
        if let Permit::Denied { remaining } = self.circuits.permit(provider.name()) {
            let decision = fallback::circuit_open(
                &self.settings.retry,
                position,
                providers.len(),
                remaining,
                jitter(),
            );
            let record = AttemptRecord {
                outcome: "circuit_open",
                error: Some("the provider's circuit is open: not called"),
                ..AttemptRecord::default()
            };
            self.metrics.attempt(provider.name(), "circuit_open");
            return self
                .settle(row, number, &record, decision, position, "circuit open")
                .await;
        }
        let message = build(row, recipient, message);
        let result =
            match tokio::time::timeout(self.settings.provider_timeout, provider.send(&message))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(Failure::new(
                    FailureKind::Retryable,
                    format!("no answer within {:?}", self.settings.provider_timeout),
                )),
            };
        let now = now_micros();
        match result {
            Ok(accepted) => {
                self.circuit_changed(provider.as_ref(), self.circuits.success(provider.name()));
                self.metrics.attempt(provider.name(), "accepted");
                let record = AttemptRecord {
                    outcome: "accepted",
                    provider_message_id: accepted.message_id.as_deref(),
                    ..AttemptRecord::default()
                };
                let next = NextState::Sent {
                    provider: provider.name(),
                    message_id: accepted.message_id.as_deref(),
                    sandbox: accepted.sandbox,
                };
                let ours =
                    outbox::finish_attempt(&self.db, row, &self.id, number, &record, &next, now)
                        .await?;
                if ours {
                    self.metrics
                        .delivery_finished(row.channel, DeliveryStatus::Sent, "");
                    self.metrics
                        .delivered_after(row.channel, (now - row.created_at).max(0) as f64 / 1e6);
                } else {
                    tracing::warn!(worker = %self.id, delivery = %row.id, "accepted after the lease was lost: another worker may send it again");
                }
                Ok(())
            }
            Err(failure) => {
                self.circuit_changed(
                    provider.as_ref(),
                    self.circuits.failure(provider.name(), failure.kind),
                );
                self.metrics.attempt(provider.name(), failure.kind.name());
                tracing::info!(
                    worker = %self.id, delivery = %row.id, provider = provider.name(),
                    outcome = failure.kind.name(), status = ?failure.status, code = ?failure.code,
                    "attempt failed: {}", failure.detail
                );
                let decision = fallback::after_failure(
                    &self.settings.retry,
                    position,
                    providers.len(),
                    &failure,
                    jitter(),
                );
                let record = AttemptRecord {
                    outcome: failure.kind.name(),
                    status: failure.status,
                    code: failure.code.as_deref(),
                    error: Some(&failure.detail),
                    provider_message_id: None,
                };
                self.settle(row, number, &record, decision, position, &failure.detail)
                    .await
            }
        }
    }

    /// Records a failed attempt and where the row goes next.
    async fn settle(
        &self,
        row: &Claimed,
        number: i64,
        record: &AttemptRecord<'_>,
        decision: Decision,
        position: Position,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        let now = now_micros();
        let next = match decision {
            Decision::Retry { wait, tries } => NextState::Queued {
                not_before: now + micros(wait),
                provider_index: position.index,
                provider_tries: tries,
                last_error: Some(detail),
            },
            Decision::Next { index } => {
                let providers = self.providers.for_channel(row.channel);
                if let (Some(from), Some(to)) =
                    (providers.get(position.index), providers.get(index))
                {
                    self.metrics.failover(row.channel, from.name(), to.name());
                }
                NextState::Queued {
                    not_before: now,
                    provider_index: index,
                    provider_tries: 0,
                    last_error: Some(detail),
                }
            }
            Decision::Fail { reason } => NextState::Failed {
                reason,
                last_error: Some(detail),
            },
        };
        let ours =
            outbox::finish_attempt(&self.db, row, &self.id, number, record, &next, now).await?;
        if let (true, Decision::Fail { reason }) = (ours, decision) {
            self.failed(row, reason, detail);
        }
        Ok(())
    }

    /// A row that ended `failed`: counted, and reported when no provider could take it.
    fn failed(&self, row: &Claimed, reason: &'static str, detail: &str) {
        self.metrics
            .delivery_finished(row.channel, DeliveryStatus::Failed, reason);
        if reason == reason::PROVIDERS_EXHAUSTED {
            crate::error_reports::providers_exhausted(
                row.channel,
                &row.id,
                &row.notification_id,
                detail,
            );
        }
    }

    async fn fail_unattempted(
        &self,
        row: &Claimed,
        reason: &'static str,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        let next = NextState::Failed {
            reason,
            last_error: Some(detail),
        };
        if outbox::finish_without_attempt(&self.db, row, &self.id, &next, now_micros()).await? {
            self.failed(row, reason, detail);
        }
        Ok(())
    }

    fn circuit_changed(&self, provider: &dyn Provider, state: Option<&'static str>) {
        if let Some(state) = state {
            tracing::warn!(
                provider = provider.name(),
                state,
                "provider circuit changed"
            );
            self.metrics.circuit(provider.name(), state);
        }
    }
}

/// The provider's message for a row.
fn build(
    row: &Claimed,
    recipient: &str,
    message: &crate::notifications::model::RenderedMessage,
) -> Message {
    match row.channel {
        crate::delivery::provider::Channel::Email => Message::Email(EmailMessage {
            to: recipient.to_owned(),
            subject: message.subject.clone().unwrap_or_default(),
            html: message.html.clone(),
            text: message.text.clone(),
            notification_id: row.notification_id.clone(),
            category: message.category.clone(),
        }),
        crate::delivery::provider::Channel::Sms => Message::Sms(SmsMessage {
            to: recipient.to_owned(),
            body: message.text.clone(),
            notification_id: row.notification_id.clone(),
        }),
    }
}
