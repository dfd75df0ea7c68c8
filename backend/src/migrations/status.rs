//! `migrate status`: every embedded migration against the `_sqlx_migrations` table sqlx
//! keeps (version, description, when, success, checksum), read without changing anything —
//! a database never migrated has no table and every migration is pending.

use sqlx::any::AnyRow;
use sqlx::migrate::Migrator;
use sqlx::Row;

use crate::db::{Db, Engine};

/// One row of `_sqlx_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub description: String,
    /// As the database prints it.
    pub installed_on: String,
    pub success: bool,
    pub checksum: Vec<u8>,
}

/// Where one migration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Pending,
    Applied {
        installed_on: String,
    },
    /// Applied, but the embedded file is not what was applied: the file was edited after
    /// it shipped. Neither `up` nor a start goes on.
    ChecksumMismatch {
        installed_on: String,
    },
    /// Recorded as failed (a migration outside a transaction that stopped half-way): it
    /// needs a person.
    Failed {
        installed_on: String,
    },
    /// Applied, unknown to this binary: a newer release's. Fine for this binary (the newer
    /// release's migrations are additive), reported, not an error.
    AppliedByNewerRelease {
        installed_on: String,
    },
}

/// One migration, embedded or only applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub version: i64,
    pub description: String,
    pub state: State,
}

/// Every migration in version order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub entries: Vec<Entry>,
}

impl Status {
    /// The embedded migrations of `migrator` against the rows of `applied`.
    pub fn compare(migrator: &Migrator, applied: &[Applied]) -> Status {
        let mut entries: Vec<Entry> = migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|migration| {
                let row = applied.iter().find(|a| a.version == migration.version);
                let state = match row {
                    None => State::Pending,
                    Some(row) if !row.success => State::Failed {
                        installed_on: row.installed_on.clone(),
                    },
                    Some(row) if row.checksum != *migration.checksum => State::ChecksumMismatch {
                        installed_on: row.installed_on.clone(),
                    },
                    Some(row) => State::Applied {
                        installed_on: row.installed_on.clone(),
                    },
                };
                Entry {
                    version: migration.version,
                    description: migration.description.to_string(),
                    state,
                }
            })
            .collect();
        for row in applied {
            if !migrator.version_exists(row.version) {
                entries.push(Entry {
                    version: row.version,
                    description: row.description.clone(),
                    state: if row.success {
                        State::AppliedByNewerRelease {
                            installed_on: row.installed_on.clone(),
                        }
                    } else {
                        State::Failed {
                            installed_on: row.installed_on.clone(),
                        }
                    },
                });
            }
        }
        entries.sort_by_key(|entry| entry.version);
        Status { entries }
    }

    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|entry| entry.state == State::Pending)
    }

    pub fn newer(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|entry| matches!(entry.state, State::AppliedByNewerRelease { .. }))
    }

    /// What stops `up` (and a start): a checksum mismatch, a failed migration.
    pub fn problems(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|entry| match &entry.state {
                State::ChecksumMismatch { .. } => Some(format!(
                    "migration {} ({}): checksum mismatch: the embedded file differs from the one applied; migrations are never edited once shipped, add a new one",
                    version(entry.version),
                    entry.description
                )),
                State::Failed { .. } => Some(format!(
                    "migration {} ({}): recorded as failed (success = false in _sqlx_migrations): repair the schema by hand, then delete that row",
                    version(entry.version),
                    entry.description
                )),
                _ => None,
            })
            .collect()
    }

    /// One line per migration: `0001 preferences  applied 2026-12-01 11:52:08+00`.
    pub fn lines(&self) -> Vec<String> {
        let width = self
            .entries
            .iter()
            .map(|entry| entry.description.len())
            .max()
            .unwrap_or(0);
        self.entries
            .iter()
            .map(|entry| {
                let state = match &entry.state {
                    State::Pending => "pending".to_owned(),
                    State::Applied { installed_on } => format!("applied {installed_on}"),
                    State::ChecksumMismatch { installed_on } => {
                        format!(
                            "CHECKSUM MISMATCH (applied {installed_on}, the file changed since)"
                        )
                    }
                    State::Failed { installed_on } => format!("FAILED ({installed_on})"),
                    State::AppliedByNewerRelease { installed_on } => format!(
                        "applied {installed_on} by a newer release (unknown to this binary)"
                    ),
                };
                format!(
                    "{} {:<width$}  {state}",
                    version(entry.version),
                    entry.description
                )
            })
            .collect()
    }
}

/// `0003`: versions as the files are named.
pub fn version(version: i64) -> String {
    format!("{version:04}")
}

/// The rows of `_sqlx_migrations`, or none when the table does not exist (never created
/// here: reading the status changes nothing).
pub async fn applied(db: &Db) -> Result<Vec<Applied>, sqlx::Error> {
    // The table sqlx resolves through the search path (PostgreSQL) or the file (SQLite).
    let exists = match db.engine {
        Engine::Postgres => {
            "SELECT COUNT(*) FROM (SELECT to_regclass('_sqlx_migrations') AS t) AS found WHERE t IS NOT NULL"
        }
        Engine::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
    };
    let found: i64 = sqlx::query(exists).fetch_one(&db.pool).await?.try_get(0)?;
    if found == 0 {
        return Ok(Vec::new());
    }
    let rows: Vec<AnyRow> = sqlx::query(
        "SELECT version, description, CAST(installed_on AS TEXT), \
         CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT), checksum \
         FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Applied {
                version: row.try_get(0)?,
                description: row.try_get(1)?,
                installed_on: row.try_get(2)?,
                success: row.try_get::<i64, _>(3)? != 0,
                checksum: row.try_get(4)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::migrate::{Migration, MigrationType};
    use std::borrow::Cow;

    fn migrator() -> Migrator {
        let migration = |version: i64, description: &'static str, sql: &'static str| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        };
        Migrator {
            migrations: Cow::Owned(vec![
                migration(1, "one", "CREATE TABLE one (x TEXT)"),
                migration(2, "two", "CREATE TABLE two (x TEXT)"),
                migration(3, "three", "CREATE TABLE three (x TEXT)"),
            ]),
            ..Migrator::DEFAULT
        }
    }

    fn applied(migrator: &Migrator, version: i64) -> Applied {
        let migration = migrator
            .iter()
            .find(|m| m.version == version)
            .expect("embedded");
        Applied {
            version,
            description: migration.description.to_string(),
            installed_on: "2026-12-01 10:00:00".into(),
            success: true,
            checksum: migration.checksum.to_vec(),
        }
    }

    #[test]
    fn applied_pending_and_newer() {
        let migrator = migrator();
        let mut rows = vec![applied(&migrator, 1), applied(&migrator, 2)];
        rows.push(Applied {
            version: 4,
            description: "four".into(),
            installed_on: "2026-12-01 11:00:00".into(),
            success: true,
            checksum: vec![1, 2, 3],
        });
        let status = Status::compare(&migrator, &rows);
        assert_eq!(
            status.entries.iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert_eq!(status.pending().map(|e| e.version).collect::<Vec<_>>(), [3]);
        assert_eq!(status.newer().map(|e| e.version).collect::<Vec<_>>(), [4]);
        assert!(status.problems().is_empty(), "{:?}", status.problems());
        let lines = status.lines();
        assert_eq!(lines[0], "0001 one    applied 2026-12-01 10:00:00");
        assert_eq!(lines[2], "0003 three  pending");
        assert_eq!(
            lines[3],
            "0004 four   applied 2026-12-01 11:00:00 by a newer release (unknown to this binary)"
        );
    }

    #[test]
    fn a_changed_file_is_a_checksum_mismatch_and_a_problem() {
        let migrator = migrator();
        let mut row = applied(&migrator, 2);
        row.checksum[0] ^= 0xff;
        let status = Status::compare(&migrator, &[applied(&migrator, 1), row]);
        assert!(matches!(
            status.entries[1].state,
            State::ChecksumMismatch { .. }
        ));
        let problems = status.problems();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("migration 0002 (two): checksum mismatch"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_failed_row_is_a_problem() {
        let migrator = migrator();
        let mut row = applied(&migrator, 1);
        row.success = false;
        let status = Status::compare(&migrator, &[row]);
        assert!(matches!(status.entries[0].state, State::Failed { .. }));
        assert_eq!(status.problems().len(), 1);
    }
}
