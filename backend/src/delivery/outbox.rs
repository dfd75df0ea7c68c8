//! The outbox as workers see it: claim due rows under a lease, record each attempt before
//! the provider is called, then record its outcome and the row's next state.
//!
//! Claiming is one statement that moves due rows to `sending` with this worker's name and
//! a lease end. On PostgreSQL the rows are picked with `FOR UPDATE SKIP LOCKED`, so
//! workers of several replicas claim disjoint rows without waiting on each other; SQLite
//! runs the statement under its single write lock (one worker per database file).
//!
//! Every later write is fenced on the lease (`lease_owner` = this worker, status
//! `sending`): a worker whose lease expired and was claimed by another cannot overwrite
//! the row. A row whose worker died stays `sending` until its lease ends, then is claimed
//! again; the attempt it left `started` is marked `abandoned` (the provider may or may not
//! have accepted it: delivery is at least once, see docs/DELIVERY.md).

use sqlx::Row;

use crate::db::{Db, Engine};
use crate::delivery::provider::Channel;
use crate::notifications::model::RenderedMessage;

/// A row this worker holds.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub notification_id: String,
    pub channel: Channel,
    pub recipient: Option<String>,
    pub message: Option<RenderedMessage>,
    pub provider_index: usize,
    pub provider_tries: u32,
    pub expires_at: Option<i64>,
    /// When the notification was accepted (Unix microseconds).
    pub created_at: i64,
}

/// What an attempt came to.
#[derive(Debug, Clone, Default)]
pub struct AttemptRecord<'a> {
    /// `accepted`, a failure kind, `circuit_open`.
    pub outcome: &'a str,
    pub status: Option<u16>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub provider_message_id: Option<&'a str>,
}

/// The row's next state.
#[derive(Debug, Clone)]
pub enum NextState<'a> {
    Sent {
        provider: &'a str,
        message_id: Option<&'a str>,
        sandbox: bool,
    },
    Queued {
        not_before: i64,
        provider_index: usize,
        provider_tries: u32,
        last_error: Option<&'a str>,
    },
    Failed {
        reason: &'static str,
        last_error: Option<&'a str>,
    },
}

const RETURNING: &str = "RETURNING id, notification_id, channel, recipient, message, \
     provider_index, provider_tries, expires_at, created_at";

/// Claims up to `limit` due rows for `worker` until `lease_until` (Unix microseconds).
pub async fn claim(
    db: &Db,
    worker: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lock = match db.engine {
        Engine::Postgres => "FOR UPDATE SKIP LOCKED",
        Engine::Sqlite => "",
    };
    let sql = format!(
        "UPDATE notification_deliveries SET status = 'sending', lease_owner = $1, lease_until = $2, updated_at = $3 \
         WHERE id IN (SELECT id FROM notification_deliveries \
           WHERE (status = 'queued' AND not_before <= $3) OR (status = 'sending' AND lease_until <= $3) \
           ORDER BY not_before LIMIT $4 {lock}) \
         {RETURNING}"
    );
    let rows = sqlx::query(&sql)
        .bind(worker)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|row| {
            let channel: String = row.try_get("channel")?;
            let message: Option<String> = row.try_get("message")?;
            let index: i64 = row.try_get("provider_index")?;
            let tries: i64 = row.try_get("provider_tries")?;
            Ok(Claimed {
                id: row.try_get("id")?,
                notification_id: row.try_get("notification_id")?,
                channel: Channel::from_name(&channel).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown channel `{channel}`").into())
                })?,
                recipient: row.try_get("recipient")?,
                message: message.and_then(|m| serde_json::from_str(&m).ok()),
                provider_index: usize::try_from(index).unwrap_or(usize::MAX),
                provider_tries: u32::try_from(tries).unwrap_or(u32::MAX),
                expires_at: row.try_get("expires_at")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
}

/// Records the start of an attempt on `provider` and commits it, before the provider is
/// called. `None` when the lease was lost (another worker holds the row now).
pub async fn begin_attempt(
    db: &Db,
    delivery: &Claimed,
    worker: &str,
    provider: &str,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let number: Option<i64> = sqlx::query(
        "UPDATE notification_deliveries SET attempts = attempts + 1, updated_at = $1 \
         WHERE id = $2 AND lease_owner = $3 AND status = 'sending' RETURNING attempts",
    )
    .bind(now)
    .bind(&delivery.id)
    .bind(worker)
    .fetch_optional(&mut *tx)
    .await?
    .map(|row| row.try_get("attempts"))
    .transpose()?;
    let Some(number) = number else {
        tx.rollback().await?;
        return Ok(None);
    };
    sqlx::query(
        "UPDATE notification_attempts SET outcome = 'abandoned', finished_at = $1, \
         error = 'the worker stopped before the outcome was known' \
         WHERE delivery_id = $2 AND outcome = 'started'",
    )
    .bind(now)
    .bind(&delivery.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO notification_attempts (delivery_id, number, provider, worker, started_at, outcome) \
         VALUES ($1, $2, $3, $4, $5, 'started')",
    )
    .bind(&delivery.id)
    .bind(number)
    .bind(provider)
    .bind(worker)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(number))
}

/// Records attempt `number`'s outcome and moves the row to `next`, in one transaction.
/// Returns whether the row was still this worker's (the attempt is recorded either way).
pub async fn finish_attempt(
    db: &Db,
    delivery: &Claimed,
    worker: &str,
    number: i64,
    record: &AttemptRecord<'_>,
    next: &NextState<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "UPDATE notification_attempts SET finished_at = $1, outcome = $2, status = $3, code = $4, \
         error = $5, provider_message_id = $6 WHERE delivery_id = $7 AND number = $8",
    )
    .bind(now)
    .bind(record.outcome)
    .bind(record.status.map(i64::from))
    .bind(record.code)
    .bind(record.error)
    .bind(record.provider_message_id)
    .bind(&delivery.id)
    .bind(number)
    .execute(&mut *tx)
    .await?;
    let ours = move_row(&mut tx, delivery, worker, next, now).await?;
    tx.commit().await?;
    Ok(ours)
}

/// Moves the row to `next` without an attempt (expired before one was made).
pub async fn finish_without_attempt(
    db: &Db,
    delivery: &Claimed,
    worker: &str,
    next: &NextState<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let ours = move_row(&mut tx, delivery, worker, next, now).await?;
    tx.commit().await?;
    Ok(ours)
}

/// The `SET` clause every move ends with, and the lease fence.
macro_rules! move_sql {
    ($set:literal) => {
        concat!(
            "UPDATE notification_deliveries SET ",
            $set,
            ", lease_owner = NULL, lease_until = NULL, updated_at = $1 ",
            "WHERE id = $2 AND lease_owner = $3 AND status = 'sending'"
        )
    };
}

async fn move_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    delivery: &Claimed,
    worker: &str,
    next: &NextState<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let query = match next {
        NextState::Sent {
            provider,
            message_id,
            sandbox,
        } => sqlx::query(move_sql!(
            "status = 'sent', sent_at = $1, provider = $4, provider_message_id = $5, sandbox = $6, last_error = NULL"
        ))
        .bind(now)
        .bind(&delivery.id)
        .bind(worker)
        .bind(*provider)
        .bind(*message_id)
        .bind(i64::from(*sandbox)),
        NextState::Queued {
            not_before,
            provider_index,
            provider_tries,
            last_error,
        } => sqlx::query(move_sql!(
            "status = 'queued', not_before = $4, provider_index = $5, provider_tries = $6, last_error = $7"
        ))
        .bind(now)
        .bind(&delivery.id)
        .bind(worker)
        .bind(*not_before)
        .bind(i64::try_from(*provider_index).unwrap_or(i64::MAX))
        .bind(i64::from(*provider_tries))
        .bind(*last_error),
        NextState::Failed { reason, last_error } => sqlx::query(move_sql!(
            "status = 'failed', reason = $4, last_error = $5"
        ))
        .bind(now)
        .bind(&delivery.id)
        .bind(worker)
        .bind(*reason)
        .bind(*last_error),
    };
    Ok(query.execute(&mut **tx).await?.rows_affected() == 1)
}

/// Gives rows this worker claimed but did not start back to the queue (shutdown).
pub async fn release(db: &Db, worker: &str, ids: &[String], now: i64) -> Result<(), sqlx::Error> {
    for id in ids {
        sqlx::query(
            "UPDATE notification_deliveries SET status = 'queued', lease_owner = NULL, \
             lease_until = NULL, updated_at = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'sending'",
        )
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(&db.pool)
        .await?;
    }
    Ok(())
}
