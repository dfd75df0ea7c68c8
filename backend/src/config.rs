//! The backend's configuration: command line and environment, validated once at start.
//! A production start with a bad configuration refuses, listing every problem. Secrets
//! (`GARDIEN_INTERNAL_SECRET`, `DATABASE_URL`, …) are not options: they come from the
//! secrets chain (see `secrets.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
pub use gardien_secrets::Environment;

/// The database when neither `--database-url` nor the `DATABASE_URL` secret says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://gardien.db?mode=rwc";

/// `gardien-backend [serve|migrate] [options]`; every option also reads an environment
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
    /// Apply the database migrations and exit.
    Migrate,
    /// Resolve every secret and validate the configuration; say where each secret came
    /// from (never its value) and exit non-zero listing every missing one.
    Check,
}

/// Everything the service reads.
#[derive(Clone, Parser)]
pub struct Options {
    /// `dev`, `staging` or `production`: outside `dev`, `GARDIEN_INTERNAL_SECRET` is
    /// required and a missing required secret refuses the start; development defaults
    /// fill missing secrets only in `dev`.
    #[arg(long, env = "GARDIEN_ENVIRONMENT", default_value = "production")]
    pub environment: Environment,
    /// Address to listen on.
    #[arg(long, env = "BACKEND_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`; overrides the `DATABASE_URL` secret (Secret Manager,
    /// `/run/secrets/DATABASE_URL` or the variable). Default `sqlite://gardien.db?mode=rwc`.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Most connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub max_connections: u32,
    /// Connections the pool keeps open when idle.
    #[arg(long, env = "DATABASE_MIN_CONNECTIONS", default_value_t = 1)]
    pub min_connections: u32,
    /// Longest wait for a pooled connection, e.g. `3s`.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime_duration)]
    pub acquire_timeout: Duration,
    /// How long an idle connection stays open, e.g. `10m`.
    #[arg(long, env = "DATABASE_IDLE_TIMEOUT", default_value = "10m", value_parser = humantime_duration)]
    pub idle_timeout: Duration,
    /// How far from now a signature's timestamp may be.
    #[arg(long, env = "IDENTITY_WINDOW", default_value = "30s", value_parser = humantime_duration)]
    pub identity_window: Duration,
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

/// The database URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://[credentials]@{host}"),
            None => url.to_owned(),
        },
        None => "[unparsable url]".to_owned(),
    }
}

impl Options {
    /// The options from `args` and the environment, with defaults (for tests and tools).
    pub fn try_parse_from_args<I, T>(args: I) -> Options
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Options::try_parse_from(args).unwrap_or_else(|e| panic!("invalid options: {e}"))
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
    fn the_environment_defaults_to_production() {
        let options = Options::parse_from(["gardien-backend"]);
        assert_eq!(options.environment, Environment::Production);
        assert_eq!(options.database_url(), DEFAULT_DATABASE_URL);
        let options = Options::parse_from(["gardien-backend", "--environment", "dev"]);
        assert_eq!(options.environment, Environment::Dev);
        assert!(Options::try_parse_from(["gardien-backend", "--environment", "qa"]).is_err());
    }
}
