//! Migrations: `migrate status` and `migrate up --dry-run` say what would run and change
//! nothing; a newer release's migration is reported, not refused (the previous binary keeps
//! running on the new schema); an edited migration stops `up` and the start; replicas
//! started together on one fresh PostgreSQL schema apply each migration once; and every
//! shipped migration is additive or a marked contract step.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gardien_backend::migrations::{additive, MIGRATOR};
use sqlx::Row;
use support::process::BackendProcess;
use support::{Engine, TestDb};

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `gardien-backend ARGS` in dev on `database`, killed if it has not exited within 30 s.
fn backend(args: &[&str], database: &str) -> Run {
    backend_in("dev", args, database)
}

/// `gardien-backend ARGS` in `environment` on `database`, with nothing else configured (no
/// secrets directory, no Secret Manager, no delivery settings).
fn backend_in(environment: &str, args: &[&str], database: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_gardien-backend"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GARDIEN_ENVIRONMENT", environment)
        .env("GARDIEN_LOG", "warn")
        .env("SECRETS_DIR", dir.path().join("no-secrets"))
        .env("DATABASE_URL", database)
        .env("BACKEND_LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .stdout(Stdio::from(std::fs::File::create(&out).expect("stdout")))
        .stderr(Stdio::from(std::fs::File::create(&err).expect("stderr")))
        .spawn()
        .expect("start gardien-backend");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code,
        stdout: std::fs::read_to_string(out).unwrap_or_default(),
        stderr: std::fs::read_to_string(err).unwrap_or_default(),
    }
}

async fn table_count(db: &TestDb) -> i64 {
    let sql = match db.engine() {
        Engine::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
        Engine::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        }
    };
    sqlx::query(sql)
        .fetch_one(&db.db.pool)
        .await
        .expect("count tables")
        .get(0)
}

fn embedded() -> Vec<(String, String)> {
    MIGRATOR
        .iter()
        .map(|m| (format!("{:04}", m.version), m.description.to_string()))
        .collect()
}

async fn status_and_dry_run_change_nothing_then_up_applies(engine: Engine) {
    let db = TestDb::empty(engine).await;
    let status = backend(&["migrate", "status"], &db.url);
    assert_eq!(status.code, Some(0), "{status}");
    let count = MIGRATOR.iter().count();
    assert!(count >= 4);
    assert!(
        status
            .stdout
            .contains(&format!("{count} embedded, {count} pending")),
        "{status}"
    );
    for (version, description) in embedded() {
        let line = status
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{version} {description} ")))
            .unwrap_or_else(|| panic!("{version} listed: {status}"));
        assert!(line.ends_with("  pending"), "{line}");
    }

    let dry = backend(&["migrate", "up", "--dry-run"], &db.url);
    assert_eq!(dry.code, Some(0), "{dry}");
    for (version, description) in embedded() {
        assert!(
            dry.stdout
                .contains(&format!("would apply {version} {description}\n")),
            "{dry}"
        );
    }
    assert!(
        dry.stdout
            .contains("  > CREATE TABLE IF NOT EXISTS notification_preferences (\n        user_id TEXT PRIMARY KEY,"),
        "the statements, without their comments: {dry}"
    );
    assert!(!dry.stdout.contains("-- "), "comments dropped: {dry}");
    assert!(
        dry.stdout
            .contains(&format!("dry run: {count} migration(s) would be applied")),
        "{dry}"
    );
    assert_eq!(
        table_count(&db).await,
        0,
        "status and the dry run created nothing"
    );

    // `migrate` alone is `migrate up`.
    let up = backend(&["migrate"], &db.url);
    assert_eq!(up.code, Some(0), "{up}");
    assert!(
        up.stdout.contains(&format!("({count} were pending)")),
        "{up}"
    );
    assert!(table_count(&db).await > 0);
    let status = backend(&["migrate", "status"], &db.url);
    assert_eq!(status.code, Some(0), "{status}");
    assert!(status.stdout.contains(" 0 pending"), "{status}");
    for (version, description) in embedded() {
        let line = status
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{version} {description} ")))
            .unwrap_or_else(|| panic!("{version} listed: {status}"));
        assert!(line.contains("  applied 20"), "applied, with when: {line}");
    }
    let dry = backend(&["migrate", "up", "--dry-run"], &db.url);
    assert_eq!(dry.code, Some(0), "{dry}");
    assert!(dry.stdout.contains("nothing to apply"), "{dry}");
    let up = backend(&["migrate", "up"], &db.url);
    assert_eq!(up.code, Some(0), "{up}");
    assert!(up.stdout.contains("(0 were pending)"), "{up}");
    db.drop_schema().await;
}

/// The release's migration job (deploy/cloudrun/migrate-job.yaml, deploy/gke/migrate-job.yaml)
/// runs in production with the database alone: no delivery provider, no internal secret.
/// Serving in production with the same environment is refused (it needs both).
#[tokio::test]
async fn production_migrates_with_the_database_alone() {
    let db = TestDb::empty(Engine::Postgres).await;
    let up = backend_in("production", &["migrate", "up"], &db.url);
    assert_eq!(up.code, Some(0), "{up}");
    let status = backend_in("production", &["migrate", "status"], &db.url);
    assert_eq!(status.code, Some(0), "{status}");
    let count = MIGRATOR.iter().count();
    assert!(
        status
            .stdout
            .contains(&format!("{count} embedded, 0 pending")),
        "{status}"
    );
    let serve = backend_in("production", &[], &db.url);
    assert_eq!(
        serve.code,
        Some(1),
        "serving needs more than the database: {serve}"
    );
}

#[tokio::test]
async fn status_and_dry_run_change_nothing_then_up_applies_sqlite() {
    status_and_dry_run_change_nothing_then_up_applies(Engine::Sqlite).await;
}

#[tokio::test]
async fn status_and_dry_run_change_nothing_then_up_applies_postgres() {
    status_and_dry_run_change_nothing_then_up_applies(Engine::Postgres).await;
}

async fn a_newer_release_migration_is_reported_not_refused(engine: Engine) {
    let db = TestDb::new(engine).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9001, 'from a newer release', TRUE, $1, 1)",
    )
    .bind(vec![0u8; 48])
    .execute(&db.db.pool)
    .await
    .expect("a newer release's row");
    let status = backend(&["migrate", "status"], &db.url);
    assert_eq!(status.code, Some(0), "not an error for status: {status}");
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with("9001 from a newer release"))
        .unwrap_or_else(|| panic!("listed: {status}"));
    assert!(
        line.ends_with("by a newer release (unknown to this binary)"),
        "{line}"
    );

    let up = backend(&["migrate", "up"], &db.url);
    assert_eq!(up.code, Some(0), "{up}");
    assert!(
        up.stdout
            .contains("note: 9001 from a newer release was applied by a newer release"),
        "{up}"
    );
    // The previous binary still starts on the newer schema.
    let process = BackendProcess::start(&[("DATABASE_URL".to_owned(), db.url.clone())]).await;
    let health = reqwest::get(process.url("/readyz")).await.expect("readyz");
    assert_eq!(health.status(), 200, "{}", process.logs());
    drop(process);
    db.drop_schema().await;
}

#[tokio::test]
async fn a_newer_release_migration_is_reported_not_refused_sqlite() {
    a_newer_release_migration_is_reported_not_refused(Engine::Sqlite).await;
}

#[tokio::test]
async fn a_newer_release_migration_is_reported_not_refused_postgres() {
    a_newer_release_migration_is_reported_not_refused(Engine::Postgres).await;
}

async fn an_edited_migration_stops_up_and_the_start(engine: Engine) {
    let db = TestDb::new(engine).await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 2")
        .bind(vec![7u8; 48])
        .execute(&db.db.pool)
        .await
        .expect("change a checksum");
    let status = backend(&["migrate", "status"], &db.url);
    assert_eq!(status.code, Some(1), "{status}");
    assert!(
        status.stdout.contains("0002 reports") && status.stdout.contains("CHECKSUM MISMATCH"),
        "{status}"
    );
    assert!(
        status
            .stderr
            .contains("error: migration 0002 (reports): checksum mismatch"),
        "{status}"
    );
    for args in [
        &["migrate", "up"][..],
        &["migrate", "up", "--dry-run"],
        &["migrate"],
        &[],
    ] {
        let run = backend(args, &db.url);
        assert_eq!(run.code, Some(1), "{args:?}: {run}");
        assert!(run.stderr.contains("checksum mismatch"), "{args:?}: {run}");
    }
    db.drop_schema().await;
}

#[tokio::test]
async fn an_edited_migration_stops_up_and_the_start_sqlite() {
    an_edited_migration_stops_up_and_the_start(Engine::Sqlite).await;
}

#[tokio::test]
async fn an_edited_migration_stops_up_and_the_start_postgres() {
    an_edited_migration_stops_up_and_the_start(Engine::Postgres).await;
}

#[test]
fn an_unreachable_database_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No `mode=rwc`, in a directory that does not exist: it cannot be opened.
    let url = format!(
        "sqlite://{}",
        dir.path().join("missing/gardien.db").display()
    );
    for args in [
        &["migrate", "status"][..],
        &["migrate", "up", "--dry-run"],
        &["migrate"],
    ] {
        let run = backend(args, &url);
        assert_eq!(run.code, Some(1), "{args:?}: {run}");
        assert!(
            run.stderr
                .contains(&format!("error: cannot connect to {url}")),
            "{args:?}: {run}"
        );
    }
}

/// Four replicas started at the same moment on one fresh schema: sqlx's advisory lock
/// makes them take turns, so each migration is applied once, by one of them, and all four
/// serve. Without the lock, concurrent `CREATE TABLE`s and `_sqlx_migrations` inserts fail
/// one replica or another.
#[tokio::test]
async fn replicas_started_together_apply_each_migration_once() {
    for round in 0..2 {
        let db = TestDb::empty(Engine::Postgres).await;
        let env = vec![("DATABASE_URL".to_owned(), db.url.clone())];
        let replicas = futures::future::join_all((0..4).map(|_| BackendProcess::start(&env))).await;
        for replica in &replicas {
            let ready = reqwest::get(replica.url("/readyz")).await.expect("readyz");
            assert_eq!(ready.status(), 200, "round {round}: {}", replica.logs());
            let logs = replica.logs();
            assert!(
                !logs.contains("ERROR") && !logs.contains("error:"),
                "round {round}: {logs}"
            );
        }
        let rows = sqlx::query(
            "SELECT version, COUNT(*), MIN(CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT)) \
             FROM _sqlx_migrations GROUP BY version ORDER BY version",
        )
        .fetch_all(&db.db.pool)
        .await
        .expect("migration rows");
        let found: Vec<(i64, i64, i64)> = rows
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let expected: Vec<(i64, i64, i64)> = MIGRATOR.iter().map(|m| (m.version, 1, 1)).collect();
        assert_eq!(
            found, expected,
            "round {round}: each migration once, applied"
        );
        drop(replicas);
        db.drop_schema().await;
    }
}

/// Every shipped migration is additive, or a contract step carrying `-- contract: <release>`
/// (docs/BACKEND.md, Migrations). The files on disk are the embedded ones.
#[test]
fn every_migration_is_additive_or_a_marked_contract_step() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<String> = std::fs::read_dir(&folder)
        .expect("backend/migrations")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect();
    files.sort();
    let names: Vec<String> = MIGRATOR
        .iter()
        .map(|m| format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_")))
        .collect();
    assert_eq!(
        files, names,
        "the binary embeds every file (rebuild after adding one)"
    );
    assert!(
        files.iter().all(|name| !name.contains(".down.")),
        "forward-only: no down migrations"
    );
    let mut refused = Vec::new();
    for migration in MIGRATOR.iter() {
        if let Err(violations) = additive::check(&migration.sql) {
            for violation in violations {
                refused.push(format!(
                    "{:04} {}: {violation}",
                    migration.version, migration.description
                ));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "not additive (expand first; contract a release later with `-- contract: <release>`):\n{}",
        refused.join("\n")
    );
}

/// A schema as the previous binary's queries see it: each table's columns (type, nullable,
/// default) and the unique indexes its `ON CONFLICT`s rely on.
#[derive(Debug, Default)]
struct Catalog {
    columns: std::collections::BTreeMap<(String, String), (String, bool, bool)>,
    unique_indexes: std::collections::BTreeMap<String, String>,
}

async fn catalog(db: &TestDb) -> Catalog {
    let mut found = Catalog::default();
    let columns = sqlx::query(
        "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT), CAST(data_type AS TEXT), \
         CAST(is_nullable AS TEXT), CAST(CASE WHEN column_default IS NULL THEN 0 ELSE 1 END AS BIGINT) \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&db.db.pool)
    .await
    .expect("columns");
    for row in &columns {
        let nullable: String = row.get(3);
        let has_default: i64 = row.get(4);
        found.columns.insert(
            (row.get(0), row.get(1)),
            (row.get(2), nullable == "YES", has_default == 1),
        );
    }
    // From the catalog tables, not the `pg_indexes` view: filtering the view on `indexdef`
    // makes PostgreSQL run `pg_get_indexdef` on other schemas' indexes too, which fails
    // ("could not open relation") when a test running beside this one drops its schema.
    let indexes = sqlx::query(
        "SELECT CAST(c.relname AS TEXT), pg_get_indexdef(i.indexrelid) FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND i.indisunique",
    )
    .fetch_all(&db.db.pool)
    .await
    .expect("indexes");
    for row in &indexes {
        found.unique_indexes.insert(row.get(0), row.get(1));
    }
    found
}

/// What `after` does to the previous release's queries, written for `before`.
fn incompatibilities(before: &Catalog, after: &Catalog) -> Vec<String> {
    let mut found = Vec::new();
    let tables: std::collections::BTreeSet<&String> =
        before.columns.keys().map(|(table, _)| table).collect();
    for ((table, column), (kind, nullable, _)) in &before.columns {
        match after.columns.get(&(table.clone(), column.clone())) {
            None => found.push(format!("{table}.{column} is gone")),
            Some((new_kind, _, _)) if new_kind != kind => found.push(format!(
                "{table}.{column} changed type: {kind} → {new_kind}"
            )),
            Some((_, false, _)) if *nullable => {
                found.push(format!("{table}.{column} became NOT NULL"))
            }
            _ => {}
        }
    }
    for ((table, column), (_, nullable, has_default)) in &after.columns {
        let new = !before
            .columns
            .contains_key(&(table.clone(), column.clone()));
        if new && tables.contains(table) && !nullable && !has_default {
            found.push(format!(
                "{table}.{column} is new, NOT NULL without a default: the previous binary's inserts fail"
            ));
        }
    }
    for (name, definition) in &before.unique_indexes {
        if after.unique_indexes.get(name) != Some(definition) {
            found.push(format!("unique index {name} is gone or changed"));
        }
    }
    found
}

/// Each migration in turn on a real PostgreSQL schema: what the schema was before it (the
/// previous release's, for the last one) must still hold for the previous binary's queries
/// after it — no table or column gone, no type changed, no column made NOT NULL, no new
/// NOT NULL column without a default in an existing table, no unique index gone — unless
/// the file is a marked contract step. The catalog counterpart of the additive rule, which
/// reads the SQL.
async fn each_migration_keeps_the_previous_schema_working_with(extra: Option<&str>) -> Vec<String> {
    let db = TestDb::empty(Engine::Postgres).await;
    let mut scripts: Vec<(String, String)> = MIGRATOR
        .iter()
        .map(|m| {
            (
                format!("{:04} {}", m.version, m.description),
                m.sql.to_string(),
            )
        })
        .collect();
    if let Some(sql) = extra {
        scripts.push(("extra".to_owned(), sql.to_owned()));
    }
    let mut found = Vec::new();
    let mut before = catalog(&db).await;
    for (name, sql) in scripts {
        sqlx::raw_sql(&sql)
            .execute(&db.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let after = catalog(&db).await;
        if additive::contract_marker(&sql).is_none() {
            found.extend(
                incompatibilities(&before, &after)
                    .into_iter()
                    .map(|problem| format!("{name}: {problem}")),
            );
        }
        before = after;
    }
    db.drop_schema().await;
    found
}

#[tokio::test]
async fn each_migration_keeps_the_previous_schema_working() {
    let found = each_migration_keeps_the_previous_schema_working_with(None).await;
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The guard above can fail: a migration that drops, retypes or tightens is caught, and a
/// contract step is let through.
#[tokio::test]
async fn the_schema_guard_catches_an_incompatible_migration() {
    let found = each_migration_keeps_the_previous_schema_working_with(Some(
        "ALTER TABLE reports DROP COLUMN error;
         ALTER TABLE reports ALTER COLUMN updated_at TYPE TEXT;
         ALTER TABLE notifications ADD COLUMN priority BIGINT NOT NULL;
         ALTER TABLE notification_deliveries ALTER COLUMN reason SET NOT NULL;
         ALTER TABLE notification_idempotency DROP CONSTRAINT notification_idempotency_pkey;",
    ))
    .await;
    assert_eq!(
        found,
        [
            "extra: notification_deliveries.reason became NOT NULL",
            "extra: reports.error is gone",
            "extra: reports.updated_at changed type: bigint → text",
            "extra: notifications.priority is new, NOT NULL without a default: the previous binary's inserts fail",
            "extra: unique index notification_idempotency_pkey is gone or changed",
        ]
    );
    let contract = each_migration_keeps_the_previous_schema_working_with(Some(
        "-- contract: 0.2.0\nALTER TABLE reports DROP COLUMN error;",
    ))
    .await;
    assert!(contract.is_empty(), "{contract:?}");
}
