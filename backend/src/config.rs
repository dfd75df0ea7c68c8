//! The backend's configuration: command line and environment, validated once at start.
//! A production start with a bad configuration refuses, listing every problem. Secrets
//! (`GARDIEN_INTERNAL_SECRET`, `DATABASE_URL`, …) are not options: they come from the
//! secrets chain (see `secrets.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gardien_secrets::catalog::EnvVar;
pub use gardien_secrets::Environment;

/// The database when neither `--database-url` nor the `DATABASE_URL` secret says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://gardien.db?mode=rwc";

/// The variables [`Options`] reads (each option's `env`), for `gardien-backend env-docs`.
pub const GARDIEN_ENVIRONMENT: EnvVar = EnvVar::plain(
    "GARDIEN_ENVIRONMENT",
    "`production`",
    "`dev`, `staging` or `production` (the columns of this table): outside `dev`, `GARDIEN_INTERNAL_SECRET` is required and a missing required secret refuses the start; development defaults fill missing secrets only in `dev`",
);
pub const BACKEND_LISTEN: EnvVar = EnvVar::plain(
    "BACKEND_LISTEN",
    "`127.0.0.1:8081`",
    "address to listen on; port `0` takes a free one (the address bound is logged and written to `BACKEND_READY_FILE`)",
);
pub const BACKEND_READY_FILE: EnvVar = EnvVar::plain(
    "BACKEND_READY_FILE",
    "unset",
    "once listening, the address bound (`127.0.0.1:PORT` and a newline) is written to this file, atomically",
);
pub const DATABASE_ALLOW_SQLITE: EnvVar = EnvVar::plain(
    "DATABASE_ALLOW_SQLITE",
    "`false`",
    "`true` lets production run on a SQLite URL (one replica that keeps its file)",
);
pub const DATABASE_MAX_CONNECTIONS: EnvVar = EnvVar::plain(
    "DATABASE_MAX_CONNECTIONS",
    "`10`",
    "most connections in the pool",
);
pub const DATABASE_MIN_CONNECTIONS: EnvVar = EnvVar::plain(
    "DATABASE_MIN_CONNECTIONS",
    "`1`",
    "connections the pool keeps open when idle",
);
pub const DATABASE_ACQUIRE_TIMEOUT: EnvVar = EnvVar::plain(
    "DATABASE_ACQUIRE_TIMEOUT",
    "`3s`",
    "longest wait for a pooled connection",
);
pub const DATABASE_IDLE_TIMEOUT: EnvVar = EnvVar::plain(
    "DATABASE_IDLE_TIMEOUT",
    "`10m`",
    "how long an idle connection stays open",
);
pub const IDENTITY_WINDOW: EnvVar = EnvVar::plain(
    "IDENTITY_WINDOW",
    "`30s`",
    "how far from now the timestamp of an `X-Gardien-Identity` signature may be",
);
pub const IDENTITY_ROTATION_WINDOW: EnvVar = EnvVar::plain(
    "IDENTITY_ROTATION_WINDOW",
    "`3 × SECRETS_REFRESH_INTERVAL + IDENTITY_WINDOW`",
    "after `GARDIEN_INTERNAL_SECRET` changes, how long the value before it is still accepted (covers gardien's `jwt.identity_rotation_delay`); `0s`: only `GARDIEN_INTERNAL_SECRET_PREVIOUS` besides the current value ([IDENTITY.md](IDENTITY.md#rotating-the-secret))",
);

/// `gardien-backend [options] [serve|migrate [up [--dry-run]|status]|check|report-test]`; every option also reads an environment
/// variable.
#[derive(Debug, Parser)]
#[command(
    name = "gardien-backend",
    version,
    about = "Notification preferences, reports and notification templates"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub options: Options,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the database migrations and exit (`migrate` alone is `migrate up`); `migrate
    /// status` and `migrate up --dry-run` say what would run.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Resolve every secret and validate the configuration; say where each secret came
    /// from (never its value) and exit non-zero listing every missing one.
    Check,
    /// Send a test event (and with `--panic`, a panic) to the Sentry project of
    /// `SENTRY_DSN`, to see error reports arrive.
    ReportTest {
        /// Also panic on purpose, to see a panic reported.
        #[arg(long)]
        panic: bool,
    },
    /// Print every environment variable the backend reads, with its default per
    /// environment and its meaning (docs/ENVIRONMENT.md is made from it).
    EnvDocs {
        /// `table` for a terminal, `markdown` for docs/ENVIRONMENT.md's generated block.
        #[arg(long, value_enum, default_value_t = EnvDocsFormat::Table)]
        format: EnvDocsFormat,
    },
}

/// How `gardien-backend env-docs` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvDocsFormat {
    Table,
    Markdown,
}

/// `gardien-backend migrate …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum MigrateAction {
    /// Apply the pending migrations (the default).
    Up {
        /// Print the migrations that would run, with their statements, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List every migration: applied (when), pending, changed since applied (checksum
    /// mismatch), or applied by a newer release; exit 1 on a mismatch or a failed one.
    Status,
}

/// Everything the service reads.
#[derive(Clone, Parser)]
pub struct Options {
    /// `dev`, `staging` or `production`: outside `dev`, `GARDIEN_INTERNAL_SECRET` is
    /// required and a missing required secret refuses the start; development defaults
    /// fill missing secrets only in `dev`.
    #[arg(long, env = GARDIEN_ENVIRONMENT.name, default_value = "production")]
    pub environment: Environment,
    /// Address to listen on; port 0 takes a free port (the address bound is logged and
    /// written to `--ready-file`).
    #[arg(long, env = BACKEND_LISTEN.name, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Once listening, write the address bound (`127.0.0.1:PORT` and a newline) to this
    /// file, atomically.
    #[arg(long, env = BACKEND_READY_FILE.name)]
    pub ready_file: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`; overrides the `DATABASE_URL` secret (Secret Manager,
    /// `/run/secrets/DATABASE_URL` or the variable). Required in production (one of the
    /// two); elsewhere the default is `sqlite://gardien.db?mode=rwc`.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Let production run on SQLite (one replica that keeps its file); without it a
    /// SQLite URL refuses a production start.
    #[arg(
        long,
        env = DATABASE_ALLOW_SQLITE.name,
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_sqlite: bool,
    /// Most connections in the pool.
    #[arg(long, env = DATABASE_MAX_CONNECTIONS.name, default_value_t = 10)]
    pub max_connections: u32,
    /// Connections the pool keeps open when idle.
    #[arg(long, env = DATABASE_MIN_CONNECTIONS.name, default_value_t = 1)]
    pub min_connections: u32,
    /// Longest wait for a pooled connection, e.g. `3s`.
    #[arg(long, env = DATABASE_ACQUIRE_TIMEOUT.name, default_value = "3s", value_parser = humantime_duration)]
    pub acquire_timeout: Duration,
    /// How long an idle connection stays open, e.g. `10m`.
    #[arg(long, env = DATABASE_IDLE_TIMEOUT.name, default_value = "10m", value_parser = humantime_duration)]
    pub idle_timeout: Duration,
    /// How far from now a signature's timestamp may be.
    #[arg(long, env = IDENTITY_WINDOW.name, default_value = "30s", value_parser = humantime_duration)]
    pub identity_window: Duration,
    /// After `GARDIEN_INTERNAL_SECRET` changes, how long the value before it is still
    /// accepted. Default `3 × SECRETS_REFRESH_INTERVAL + IDENTITY_WINDOW`, which covers
    /// gardien's default `jwt.identity_rotation_delay`; at least that delay plus one
    /// refresh interval plus `IDENTITY_WINDOW` when it is set longer. `0s`: only
    /// `GARDIEN_INTERNAL_SECRET_PREVIOUS` is accepted besides the current value.
    #[arg(long, env = IDENTITY_ROTATION_WINDOW.name, value_parser = humantime_duration)]
    pub identity_rotation_window: Option<Duration>,
    /// Notification delivery (`NOTIFY_*`).
    #[command(flatten)]
    pub delivery: crate::delivery::config::DeliveryOptions,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("environment", &self.environment)
            .field("listen", &self.listen)
            .field("database", &redact_url(self.database_url()))
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// `500ms`, `3s`, `10m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 3s)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(number),
        "s" | "" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => return Err(format!("`{text}`: use ms, s, m or h")),
    })
}

/// The database URL without its password (user info, or a `password=` parameter), for
/// logs.
pub fn redact_url(url: &str) -> String {
    let redacted = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://[credentials]@{host}"),
            None => url.to_owned(),
        },
        None if url.starts_with("sqlite:") => url.to_owned(),
        None => return "[unparsable url]".to_owned(),
    };
    match redacted.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.to_ascii_lowercase().contains("pass") => {
                        format!("{key}=[credentials]")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => redacted,
    }
}

/// Which database `url` is, for `check` and the start log: the engine and where, never a
/// credential.
pub fn describe_database(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or(path);
        return if path.is_empty() || path == ":memory:" {
            "SQLite in memory".to_owned()
        } else {
            format!("SQLite, file {path}")
        };
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return "PostgreSQL (the URL does not parse)".to_owned();
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost");
        let port = parsed.port().unwrap_or(5432);
        let mut text = format!("PostgreSQL, host {host}:{port}");
        let database = parsed.path().trim_start_matches('/');
        if !database.is_empty() {
            text.push_str(&format!(", database {database}"));
        }
        if !parsed.username().is_empty() {
            text.push_str(&format!(", user {}", parsed.username()));
        }
        let query_password = parsed
            .query_pairs()
            .any(|(key, _)| key.to_ascii_lowercase().contains("pass"));
        if parsed.password().is_some() || query_password {
            text.push_str(" (password masked)");
        }
        return text;
    }
    format!("unknown engine ({})", redact_url(url))
}

impl Options {
    /// The options from `args` and the environment, with defaults (for tests and tools);
    /// an invalid argument is an error naming it, never a panic.
    pub fn try_parse_from_args<I, T>(args: I) -> Result<Options, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Options::try_parse_from(args)
    }

    /// The database URL in use: `--database-url`, else the `DATABASE_URL` secret once
    /// resolved into `database_url`, else the SQLite default.
    pub fn database_url(&self) -> &str {
        self.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL)
    }

    /// Every problem of the configuration, for a start that refuses with the full list.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            problems.push(format!(
                "DATABASE_URL: `{}` is neither sqlite:// nor postgres://",
                redact_url(url)
            ));
        }
        // In production a missing URL is a missing required secret (see `secrets.rs`);
        // a SQLite one must be asked for.
        if self.environment == Environment::Production
            && self.database_url.is_some()
            && url.starts_with("sqlite:")
            && !self.allow_sqlite
        {
            problems.push(format!(
                "DATABASE_URL: `{}` is SQLite, refused in production: every replica would have a database of its own; use postgres://…, or set DATABASE_ALLOW_SQLITE=true for a single replica that keeps its file",
                redact_url(url)
            ));
        }
        if self.max_connections == 0 {
            problems.push("DATABASE_MAX_CONNECTIONS: must be at least 1".into());
        }
        if self.min_connections > self.max_connections {
            problems.push("DATABASE_MIN_CONNECTIONS: more than DATABASE_MAX_CONNECTIONS".into());
        }
        if self.identity_window.is_zero() {
            problems.push("IDENTITY_WINDOW: must be more than 0".into());
        }
        problems.extend(
            self.delivery
                .problems(self.database_url().starts_with("sqlite:")),
        );
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://[credentials]@db:5432/x"
        );
        assert_eq!(
            redact_url("sqlite://gardien.db?mode=rwc"),
            "sqlite://gardien.db?mode=rwc"
        );
    }

    #[test]
    fn databases_are_described_without_credentials() {
        assert_eq!(
            describe_database("postgres://app:s3cret@db.internal:6432/gardien?sslmode=require"),
            "PostgreSQL, host db.internal:6432, database gardien, user app (password masked)"
        );
        assert_eq!(
            describe_database("postgresql://db/x?password=s3cret"),
            "PostgreSQL, host db:5432, database x (password masked)"
        );
        assert_eq!(
            describe_database("sqlite:///var/lib/gardien/b.db?mode=rwc"),
            "SQLite, file /var/lib/gardien/b.db"
        );
        assert_eq!(describe_database("sqlite::memory:"), "SQLite in memory");
        assert_eq!(
            redact_url("postgres://db/x?sslmode=require&password=s3cret"),
            "postgres://db/x?sslmode=require&password=[credentials]"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn sqlite_in_production_must_be_asked_for() {
        let sqlite = [
            "gardien-backend",
            "--database-url",
            "sqlite://b.db?mode=rwc",
        ];
        let problems = Options::parse_from(sqlite).problems();
        assert!(
            problems.iter().any(|p| p.starts_with("DATABASE_URL:") && p.contains("DATABASE_ALLOW_SQLITE=true")),
            "{problems:?}"
        );
        let mut allowed = sqlite.to_vec();
        allowed.extend(["--allow-sqlite", "true"]);
        assert!(Options::parse_from(allowed).problems().is_empty());
        let mut staging = sqlite.to_vec();
        staging.extend(["--environment", "staging"]);
        assert!(Options::parse_from(staging).problems().is_empty());
        let postgres = ["gardien-backend", "--database-url", "postgres://db/x"];
        assert!(Options::parse_from(postgres).problems().is_empty());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let options = Options::parse_from([
            "gardien-backend",
            "--database-url",
            "postgres://app:s3cret@db/x",
        ]);
        let text = format!("{options:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("postgres://[credentials]@db/x"), "{text}");
    }

    #[test]
    fn try_parse_from_args_returns_an_error_instead_of_panicking() {
        let parsed = std::panic::catch_unwind(|| {
            Options::try_parse_from_args(["gardien-backend", "--max-connections", "many"])
        });
        let error = parsed.expect("no panic").expect_err("invalid");
        assert!(error.to_string().contains("--max-connections"), "{error}");
        let options = Options::try_parse_from_args(["gardien-backend"]).expect("valid");
        assert_eq!(options.max_connections, 10);
    }

    #[test]
    fn the_environment_defaults_to_production() {
        let options = Options::parse_from(["gardien-backend"]);
        assert_eq!(options.environment, Environment::Production);
        assert_eq!(options.database_url(), DEFAULT_DATABASE_URL);
        let options = Options::parse_from(["gardien-backend", "--environment", "dev"]);
        assert_eq!(options.environment, Environment::Dev);
        assert!(Options::try_parse_from(["gardien-backend", "--environment", "qa"]).is_err());
    }
}
