//! Notification storage: the notification, its outbox rows (one per channel) and its
//! idempotency key are written in one transaction, so a notification is never half
//! accepted: either the caller gets `202` and every row exists, or nothing was written.
//! Reading joins the outbox rows and their attempts.

use sqlx::Row;

use crate::db::{now_micros, Db};
use crate::delivery::provider::Channel;
use crate::error::{ApiError, ErrorCode};
use crate::notifications::idempotency::{Claim, WINDOW};
use crate::notifications::model::{
    AttemptView, DeliveryStatus, DeliveryView, NotificationView, RenderedMessage, SendAnswer,
};
use crate::notifications::plan::Plan;

/// What a create did.
#[derive(Debug)]
pub enum Created {
    /// Written.
    New,
    /// The key was used by the same request within the window: its answer.
    Replay(SendAnswer),
    /// The key was used by another request within the window.
    KeyReused,
}

/// The notification as written.
#[derive(Debug)]
pub struct NewNotification<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub template_key: &'a str,
    pub requested_by: &'a str,
    pub expires_at: Option<jiff::Timestamp>,
    pub plan: &'a Plan,
    pub answer: &'a SendAnswer,
}

/// Writes the notification, its outbox rows and its idempotency key in one transaction.
pub async fn create(
    db: &Db,
    notification: &NewNotification<'_>,
    claim: Option<&Claim>,
) -> Result<Created, ApiError> {
    let now = now_micros();
    let mut tx = db.pool.begin().await?;
    if let Some(claim) = claim {
        let window = i64::try_from(WINDOW.as_micros()).unwrap_or(i64::MAX);
        // A key older than the window is free again.
        sqlx::query(
            "DELETE FROM notification_idempotency WHERE scope = $1 AND key = $2 AND created_at < $3",
        )
        .bind(&claim.scope)
        .bind(&claim.key)
        .bind(now - window)
        .execute(&mut *tx)
        .await?;
        let answer = serde_json::to_string(notification.answer).map_err(ApiError::internal)?;
        let inserted = sqlx::query(
            "INSERT INTO notification_idempotency (scope, key, fingerprint, notification_id, response, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(&claim.scope)
        .bind(&claim.key)
        .bind(&claim.fingerprint)
        .bind(notification.id)
        .bind(answer)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // Another request holds the key (on PostgreSQL the insert waited for it to
            // commit): answer as it was answered, or refuse a different request.
            tx.rollback().await?;
            return earlier(db, claim, i64::MIN).await?.ok_or_else(|| {
                // Expired and removed between our insert and this read: the caller may
                // simply retry.
                ApiError::new(
                    ErrorCode::Conflict,
                    "the idempotency key changed hands during this request; retry",
                )
            });
        }
    }
    sqlx::query(
        "INSERT INTO notifications (id, user_id, template_key, category, locale, requested_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(notification.id)
    .bind(notification.user_id)
    .bind(notification.template_key)
    .bind(&notification.plan.category)
    .bind(&notification.plan.locale)
    .bind(notification.requested_by)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let expires_at = notification.expires_at.map(|t| t.as_microsecond());
    for delivery in &notification.plan.deliveries {
        let message = serde_json::to_string(&delivery.message).map_err(ApiError::internal)?;
        sqlx::query(
            "INSERT INTO notification_deliveries (id, notification_id, channel, status, reason, \
             template_key, template_version, locale_used, recipient, message, not_before, expires_at, \
             provider_index, provider_tries, attempts, sandbox, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, 0, 0, 0, $13, $13)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(notification.id)
        .bind(delivery.channel.name())
        .bind(delivery.status.name())
        .bind(delivery.reason)
        .bind(&delivery.template_key)
        .bind(delivery.template_version)
        .bind(&delivery.locale_used)
        .bind(&delivery.recipient)
        .bind(message)
        .bind(delivery.not_before.as_microsecond())
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Created::New)
}

/// What an earlier use of the key within the window says: `Replay` or `KeyReused`; `None`
/// when the key is free.
pub async fn earlier_within_window(db: &Db, claim: &Claim) -> Result<Option<Created>, ApiError> {
    let window = i64::try_from(WINDOW.as_micros()).unwrap_or(i64::MAX);
    earlier(db, claim, now_micros() - window).await
}

async fn earlier(db: &Db, claim: &Claim, since: i64) -> Result<Option<Created>, ApiError> {
    let row = sqlx::query(
        "SELECT fingerprint, response FROM notification_idempotency \
         WHERE scope = $1 AND key = $2 AND created_at >= $3",
    )
    .bind(&claim.scope)
    .bind(&claim.key)
    .bind(since)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let fingerprint: String = row.try_get("fingerprint")?;
    if fingerprint != claim.fingerprint {
        return Ok(Some(Created::KeyReused));
    }
    let response: String = row.try_get("response")?;
    let answer = serde_json::from_str(&response)
        .map_err(|e| ApiError::internal(format!("stored idempotent answer: {e}")))?;
    Ok(Some(Created::Replay(answer)))
}

fn time(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn optional_time(micros: Option<i64>) -> Option<String> {
    micros.map(time)
}

/// The notification `id` with every channel and attempt, or `None`.
pub async fn view(db: &Db, id: &str) -> Result<Option<NotificationView>, ApiError> {
    let Some(row) = sqlx::query(
        "SELECT id, user_id, template_key, category, locale, requested_by, created_at \
         FROM notifications WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    else {
        return Ok(None);
    };
    let mut view = NotificationView {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        template_key: row.try_get("template_key")?,
        category: row.try_get("category")?,
        locale: row.try_get("locale")?,
        requested_by: row.try_get("requested_by")?,
        created_at: time(row.try_get("created_at")?),
        channels: Vec::new(),
    };
    let deliveries = sqlx::query(
        "SELECT id, channel, status, reason, template_key, template_version, locale_used, recipient, \
         message, not_before, expires_at, provider, provider_message_id, sandbox, last_error, sent_at \
         FROM notification_deliveries WHERE notification_id = $1 ORDER BY channel",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    let attempts = sqlx::query(
        "SELECT a.delivery_id, a.number, a.provider, a.started_at, a.finished_at, a.outcome, a.status, \
         a.code, a.error FROM notification_attempts a \
         JOIN notification_deliveries d ON d.id = a.delivery_id \
         WHERE d.notification_id = $1 ORDER BY a.delivery_id, a.number",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    for row in deliveries {
        let delivery_id: String = row.try_get("id")?;
        let channel: String = row.try_get("channel")?;
        let status: String = row.try_get("status")?;
        let message: Option<String> = row.try_get("message")?;
        let status = DeliveryStatus::from_name(&status)
            .ok_or_else(|| ApiError::internal(format!("unknown delivery status `{status}`")))?;
        let not_before: i64 = row.try_get("not_before")?;
        let mut delivery = DeliveryView {
            channel: Channel::from_name(&channel)
                .ok_or_else(|| ApiError::internal(format!("unknown channel `{channel}`")))?,
            status,
            reason: row.try_get("reason")?,
            recipient: row.try_get("recipient")?,
            template_key: row.try_get("template_key")?,
            template_version: row.try_get("template_version")?,
            locale: row.try_get("locale_used")?,
            scheduled_for: matches!(status, DeliveryStatus::Queued).then(|| time(not_before)),
            expires_at: optional_time(row.try_get("expires_at")?),
            provider: row.try_get("provider")?,
            provider_message_id: row.try_get("provider_message_id")?,
            sandbox: row.try_get::<i64, _>("sandbox")? != 0,
            sent_at: optional_time(row.try_get("sent_at")?),
            last_error: row.try_get("last_error")?,
            message: message.and_then(|m| serde_json::from_str::<RenderedMessage>(&m).ok()),
            attempts: Vec::new(),
        };
        for attempt in &attempts {
            let of: String = attempt.try_get("delivery_id")?;
            if of != delivery_id {
                continue;
            }
            delivery.attempts.push(AttemptView {
                number: attempt.try_get("number")?,
                provider: attempt.try_get("provider")?,
                started_at: time(attempt.try_get("started_at")?),
                finished_at: optional_time(attempt.try_get("finished_at")?),
                outcome: attempt.try_get("outcome")?,
                status: attempt.try_get("status")?,
                code: attempt.try_get("code")?,
                error: attempt.try_get("error")?,
            });
        }
        view.channels.push(delivery);
    }
    Ok(Some(view))
}
