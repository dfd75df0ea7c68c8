//! Template storage: `notification_templates` (one row per key: category, channel, current
//! version, soft deletion) and `notification_template_versions` (every version's content as
//! JSON, never rewritten). Every change inserts a version and bumps `current_version` in one
//! transaction, which starts by writing the template row so concurrent changes queue on its
//! lock (PostgreSQL) or on the write lock (SQLite) instead of racing for a version number.

use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use crate::db::{now_micros, Db};
use crate::templates::model::{Channel, Content};

/// A template as it stands: its current version's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    pub key: String,
    pub channel: Channel,
    /// The current version.
    pub version: i64,
    pub content: Content,
    /// Unix microseconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Who made the current version.
    pub updated_by: String,
}

/// One version of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: i64,
    pub created_at: i64,
    pub created_by: String,
    pub summary: String,
    /// Absent in listings.
    pub content: Option<Content>,
}

/// What a change asks for.
#[derive(Debug, Clone)]
pub struct Change {
    pub content: Content,
    /// The template's channel, which a change cannot alter.
    pub channel: Channel,
    /// `If-Match`: the change applies only if the current version is one of these.
    pub if_match: Option<Vec<i64>>,
    /// Recorded with the version (`updated`, `restored from version 3`).
    pub summary: String,
    pub by: String,
}

/// How a create went.
#[derive(Debug, Clone)]
pub enum Created {
    Created(StoredTemplate),
    /// A template with that key exists (and is not deleted).
    Conflict,
}

/// How a change or a deletion went.
#[derive(Debug, Clone)]
pub enum Changed {
    /// A new version was made.
    Changed(StoredTemplate),
    /// The content equals the current one: no version was made.
    Unchanged(StoredTemplate),
    /// Deleted.
    Deleted,
    NotFound,
    /// `If-Match` does not name the current version.
    PreconditionFailed,
    /// The template's channel is not the one the change is for.
    ChannelMismatch(Channel),
}

fn decode(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown channel `{0}` in notification_templates")]
struct UnknownChannel(String);

const CURRENT: &str = "SELECT t.key, t.channel, t.current_version, t.created_at, t.updated_at, \
     v.content, v.created_by \
     FROM notification_templates t \
     JOIN notification_template_versions v ON v.key = t.key AND v.version = t.current_version \
     WHERE t.deleted_at IS NULL";

fn template_from_row(row: &AnyRow) -> Result<StoredTemplate, sqlx::Error> {
    let channel: String = row.try_get("channel")?;
    let content: String = row.try_get("content")?;
    Ok(StoredTemplate {
        key: row.try_get("key")?,
        channel: Channel::parse(&channel).ok_or_else(|| decode(UnknownChannel(channel)))?,
        version: row.try_get("current_version")?,
        content: serde_json::from_str(&content).map_err(decode)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("created_by")?,
    })
}

async fn load<'e, E>(executor: E, key: &str) -> Result<Option<StoredTemplate>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query(&format!("{CURRENT} AND t.key = $1"))
        .bind(key)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(template_from_row).transpose()
}

/// The current version of the template `key`, unless it is deleted. What delivery renders.
pub async fn current(db: &Db, key: &str) -> Result<Option<StoredTemplate>, sqlx::Error> {
    load(&db.pool, key).await
}

/// The templates not deleted, by key, optionally of one category and/or channel.
pub async fn list(
    db: &Db,
    category: Option<&str>,
    channel: Option<Channel>,
) -> Result<Vec<StoredTemplate>, sqlx::Error> {
    let mut sql = CURRENT.to_owned();
    let mut n = 0;
    if category.is_some() {
        n += 1;
        sql.push_str(&format!(" AND t.category = ${n}"));
    }
    if channel.is_some() {
        n += 1;
        sql.push_str(&format!(" AND t.channel = ${n}"));
    }
    sql.push_str(" ORDER BY t.key");
    let mut query = sqlx::query(&sql);
    if let Some(category) = category {
        query = query.bind(category);
    }
    if let Some(channel) = channel {
        query = query.bind(channel.as_str());
    }
    let rows = query.fetch_all(&db.pool).await?;
    let mut templates = rows
        .iter()
        .map(template_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    // The same order on both engines, whatever PostgreSQL's collation.
    templates.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(templates)
}

/// Categories that templates add to the preference categories (`security`, `account`,
/// `reports`, `marketing` are built in): those of every template not deleted, distinct,
/// sorted.
pub async fn categories(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT category FROM notification_templates WHERE deleted_at IS NULL",
    )
    .fetch_all(&db.pool)
    .await?;
    let mut categories = rows
        .iter()
        .map(|row| row.try_get::<String, _>("category"))
        .collect::<Result<Vec<_>, _>>()?;
    categories.sort();
    Ok(categories)
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, Any>,
    key: &str,
    version: i64,
    content: &Content,
    now: i64,
    by: &str,
    summary: &str,
) -> Result<(), sqlx::Error> {
    let json = serde_json::to_string(content).map_err(decode)?;
    sqlx::query(
        "INSERT INTO notification_template_versions \
         (key, version, content, created_at, created_by, summary) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key)
    .bind(version)
    .bind(json)
    .bind(now)
    .bind(by)
    .bind(summary)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Creates the template `key` at version 1 — or, if `key` was deleted, brings it back with
/// the next version number (its history goes on).
pub async fn create(
    db: &Db,
    key: &str,
    channel: Channel,
    content: &Content,
    by: &str,
) -> Result<Created, sqlx::Error> {
    let now = now_micros();
    let mut tx = db.pool.begin().await?;
    let revived = sqlx::query(
        "UPDATE notification_templates SET category = $1, channel = $2, \
         current_version = current_version + 1, deleted_at = NULL, created_at = $3, updated_at = $4 \
         WHERE key = $5 AND deleted_at IS NOT NULL",
    )
    .bind(&content.category)
    .bind(channel.as_str())
    .bind(now)
    .bind(now)
    .bind(key)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let (version, summary) = if revived == 1 {
        let row = sqlx::query("SELECT current_version FROM notification_templates WHERE key = $1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        (
            row.try_get::<i64, _>("current_version")?,
            "re-created after deletion",
        )
    } else {
        let inserted = sqlx::query(
            "INSERT INTO notification_templates \
             (key, category, channel, current_version, deleted_at, created_at, updated_at) \
             VALUES ($1, $2, $3, 1, NULL, $4, $5) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(&content.category)
        .bind(channel.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(Created::Conflict);
        }
        (1, "created")
    };
    insert_version(&mut tx, key, version, content, now, by, summary).await?;
    tx.commit().await?;
    Ok(Created::Created(StoredTemplate {
        key: key.to_owned(),
        channel,
        version,
        content: content.clone(),
        created_at: now,
        updated_at: now,
        updated_by: by.to_owned(),
    }))
}

/// Locks the template row (a write that changes nothing) and reads it, in `tx`.
async fn lock(
    tx: &mut sqlx::Transaction<'_, Any>,
    key: &str,
) -> Result<Option<StoredTemplate>, sqlx::Error> {
    let locked = sqlx::query(
        "UPDATE notification_templates SET current_version = current_version \
         WHERE key = $1 AND deleted_at IS NULL",
    )
    .bind(key)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if locked == 0 {
        return Ok(None);
    }
    load(&mut **tx, key).await
}

fn precondition_fails(if_match: Option<&[i64]>, version: i64) -> bool {
    if_match.is_some_and(|versions| !versions.contains(&version))
}

/// Makes `change.content` the current content of `key` as a new version, unless it equals
/// the current content.
pub async fn change(db: &Db, key: &str, change: &Change) -> Result<Changed, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let Some(current) = lock(&mut tx, key).await? else {
        tx.rollback().await?;
        return Ok(Changed::NotFound);
    };
    if precondition_fails(change.if_match.as_deref(), current.version) {
        tx.rollback().await?;
        return Ok(Changed::PreconditionFailed);
    }
    if current.channel != change.channel {
        tx.rollback().await?;
        return Ok(Changed::ChannelMismatch(current.channel));
    }
    if current.content == change.content {
        tx.rollback().await?;
        return Ok(Changed::Unchanged(current));
    }
    let now = now_micros();
    let version = current.version + 1;
    insert_version(
        &mut tx,
        key,
        version,
        &change.content,
        now,
        &change.by,
        &change.summary,
    )
    .await?;
    sqlx::query(
        "UPDATE notification_templates SET current_version = $1, category = $2, updated_at = $3 \
         WHERE key = $4",
    )
    .bind(version)
    .bind(&change.content.category)
    .bind(now)
    .bind(key)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Changed::Changed(StoredTemplate {
        version,
        content: change.content.clone(),
        updated_at: now,
        updated_by: change.by.clone(),
        ..current
    }))
}

/// Soft-deletes `key`: it disappears from reads and from [`categories`]; its versions stay.
pub async fn delete(db: &Db, key: &str, if_match: Option<&[i64]>) -> Result<Changed, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let Some(current) = lock(&mut tx, key).await? else {
        tx.rollback().await?;
        return Ok(Changed::NotFound);
    };
    if precondition_fails(if_match, current.version) {
        tx.rollback().await?;
        return Ok(Changed::PreconditionFailed);
    }
    let now = now_micros();
    sqlx::query(
        "UPDATE notification_templates SET deleted_at = $1, updated_at = $2 WHERE key = $3",
    )
    .bind(now)
    .bind(now)
    .bind(key)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Changed::Deleted)
}

fn version_from_row(row: &AnyRow, with_content: bool) -> Result<StoredVersion, sqlx::Error> {
    let content = if with_content {
        let json: String = row.try_get("content")?;
        Some(serde_json::from_str(&json).map_err(decode)?)
    } else {
        None
    };
    Ok(StoredVersion {
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        summary: row.try_get("summary")?,
        content,
    })
}

/// Every version of `key`, oldest first, with the current version number; `None` if the
/// template does not exist or is deleted.
pub async fn versions(
    db: &Db,
    key: &str,
) -> Result<Option<(i64, Vec<StoredVersion>)>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT current_version FROM notification_templates WHERE key = $1 AND deleted_at IS NULL",
    )
    .bind(key)
    .fetch_optional(&db.pool)
    .await?
    else {
        return Ok(None);
    };
    let current: i64 = row.try_get("current_version")?;
    let rows = sqlx::query(
        "SELECT version, created_at, created_by, summary FROM notification_template_versions \
         WHERE key = $1 ORDER BY version",
    )
    .bind(key)
    .fetch_all(&db.pool)
    .await?;
    let versions = rows
        .iter()
        .map(|row| version_from_row(row, false))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((current, versions)))
}

/// Version `n` of `key` with its content; `None` if the template does not exist, is
/// deleted, or has no version `n`.
pub async fn version(db: &Db, key: &str, n: i64) -> Result<Option<StoredVersion>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT v.version, v.created_at, v.created_by, v.summary, v.content \
         FROM notification_template_versions v \
         JOIN notification_templates t ON t.key = v.key \
         WHERE v.key = $1 AND v.version = $2 AND t.deleted_at IS NULL",
    )
    .bind(key)
    .bind(n)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(|r| version_from_row(r, true)).transpose()
}
