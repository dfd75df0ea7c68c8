//! Preferences storage: one row per user in `notification_preferences` (the full
//! normalised document as JSON text, a version that is the ETag, the time of the last
//! change). A user without a row has the defaults at version 0; nothing is written on read.
//! Writes are compare-and-set on the version, so two updates from the same read cannot
//! both succeed.

use sqlx::Row;

use crate::db::{self, Db};
use crate::error::ApiError;
use crate::templates;

use super::model::{Preferences, BUILT_IN_CATEGORIES};

/// A user's stored document (or the defaults) and its version (0: nothing stored).
/// `contacts.email` is in stored form: `None` follows the identity's email.
#[derive(Debug, Clone)]
pub struct Current {
    pub preferences: Preferences,
    pub version: i64,
}

/// The categories a user can set: the built-in ones, then those templates add.
pub async fn categories(db: &Db) -> Result<Vec<String>, ApiError> {
    let mut categories: Vec<String> = BUILT_IN_CATEGORIES.iter().map(|c| c.to_string()).collect();
    let mut added = templates::store::categories(db).await?;
    added.sort();
    for category in added {
        if !categories.contains(&category) {
            categories.push(category);
        }
    }
    Ok(categories)
}

/// The user's document over today's `categories` (see [`Preferences::reconcile`]), or the
/// defaults at version 0.
pub async fn current(db: &Db, user_id: &str, categories: &[String]) -> Result<Current, ApiError> {
    let row =
        sqlx::query("SELECT document, version FROM notification_preferences WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&db.pool)
            .await?;
    let Some(row) = row else {
        return Ok(Current {
            preferences: Preferences::defaults(categories),
            version: 0,
        });
    };
    let document: String = row.try_get("document")?;
    let version: i64 = row.try_get("version")?;
    let stored: Preferences = serde_json::from_str(&document)
        .map_err(|e| ApiError::internal(format!("stored preferences do not parse: {e}")))?;
    Ok(Current {
        preferences: stored.reconcile(categories),
        version,
    })
}

/// Stores the first document of a user (version 1); `false` when a row appeared meanwhile.
pub async fn insert(db: &Db, user_id: &str, preferences: &Preferences) -> Result<bool, ApiError> {
    let result = sqlx::query(
        "INSERT INTO notification_preferences (user_id, document, version, updated_at) \
         VALUES ($1, $2, 1, $3) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(encode(preferences)?)
    .bind(db::now_micros())
    .execute(&db.pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Replaces the document if it is still at `version` (the version becomes `version + 1`);
/// `false` when another update came first.
pub async fn replace(
    db: &Db,
    user_id: &str,
    preferences: &Preferences,
    version: i64,
) -> Result<bool, ApiError> {
    let result = sqlx::query(
        "UPDATE notification_preferences SET document = $1, version = version + 1, updated_at = $2 \
         WHERE user_id = $3 AND version = $4",
    )
    .bind(encode(preferences)?)
    .bind(db::now_micros())
    .bind(user_id)
    .bind(version)
    .execute(&db.pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// What delivery uses: the user's preferences — stored, or the defaults — with
/// `contacts.email` resolved to `identity_email` when the user never set one.
pub async fn effective(
    db: &Db,
    user_id: &str,
    identity_email: Option<&str>,
) -> Result<Preferences, ApiError> {
    let categories = categories(db).await?;
    let current = current(db, user_id, &categories).await?;
    Ok(current.preferences.with_identity_email(identity_email))
}

fn encode(preferences: &Preferences) -> Result<String, ApiError> {
    serde_json::to_string(preferences)
        .map_err(|e| ApiError::internal(format!("preferences do not encode: {e}")))
}
