//! Template storage. (To be written; `categories` is what preferences relies on.)

use crate::db::Db;

/// Categories that templates add to the preference categories (`security`, `account`,
/// `reports`, `marketing` are built in): those of every template not deleted.
pub async fn categories(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    let _ = db;
    Ok(Vec::new())
}
