//! The database migrations: the SQL files of `backend/migrations/`, embedded in the binary
//! (`sqlx::migrate!`), forward-only (no down files: undoing one is a new migration) and
//! additive within a release ([`additive`]), applied by `gardien-backend migrate [up]` and
//! at every start, and reported by `migrate status` and `migrate up --dry-run`.
//!
//! Many replicas starting at once: sqlx's PostgreSQL migrator (sqlx-postgres 0.8.6,
//! `migrate.rs`, `lock`) takes `pg_advisory_lock(key)` on the migrating connection before it
//! reads `_sqlx_migrations`, and releases it after the last migration; `locking` is on by
//! default (it is not turned off here). The key is derived from `current_database()` only,
//! not the schema: replicas on one database (whatever their `search_path`) queue behind one
//! another, which is what is needed (and test schemas of one database merely take turns).
//! Each migration and its `_sqlx_migrations` row are committed in one transaction, so a
//! replica that waited finds it applied and skips it. SQLite has no such lock (sqlx's
//! `lock` is a no-op there): it is one process's file; its writers queue on the file lock.
//! `tests/migrations.rs` starts replicas together on one fresh PostgreSQL schema.

pub mod additive;
pub mod statements;
pub mod status;

use std::sync::LazyLock;

use sqlx::migrate::{MigrateError, Migrator};

use crate::db::Db;
pub use status::{version, Applied, Entry, State, Status};

/// The embedded migrations. `ignore_missing`: a migration applied by a newer release (one
/// this binary does not know) does not stop this one — the previous release must keep
/// running on the new schema during a rolling deploy and after a rollback; `status` reports
/// it.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
});

/// Why `up` stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("cannot read the applied migrations: {0}")]
    Read(#[from] sqlx::Error),
    #[error("{}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("{0}")]
    Migrate(#[from] MigrateError),
}

/// The status of `db`, read without changing it.
pub async fn status(db: &Db) -> Result<Status, sqlx::Error> {
    Ok(Status::compare(&MIGRATOR, &status::applied(db).await?))
}

/// Applies the pending migrations (under sqlx's lock on PostgreSQL); refused, before
/// anything runs, on a checksum mismatch or a failed migration. Returns the status from
/// before (its pending entries were applied, by this process or by a replica that held the
/// lock first).
pub async fn up(db: &Db) -> Result<Status, UpError> {
    let before = status(db).await?;
    let problems = before.problems();
    if !problems.is_empty() {
        return Err(UpError::Refused(problems));
    }
    MIGRATOR.run(&db.pool).await?;
    Ok(before)
}

/// What `migrate up --dry-run` prints: each pending migration, its version and
/// description, then its statements (comments dropped), indented.
pub fn dry_run_lines(status: &Status) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in status.pending() {
        lines.push(format!(
            "would apply {} {}",
            version(entry.version),
            entry.description
        ));
        let Some(migration) = MIGRATOR.iter().find(|m| m.version == entry.version) else {
            continue;
        };
        for statement in statements::split(&migration.sql) {
            for (n, line) in statement.lines().enumerate() {
                let lead = if n == 0 { "  > " } else { "    " };
                lines.push(format!("{lead}{line}"));
            }
        }
    }
    lines
}
