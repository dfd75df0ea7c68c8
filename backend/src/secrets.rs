//! The backend's secrets, read through the chain it shares with gardien
//! (`gardien-secrets`: Google Secret Manager, files, environment, development defaults in
//! `dev`; docs/SECRETS.md) and kept fresh in a store (`SecretStore::for_process`) that handlers read at each use, so a
//! rotated value is picked up without a restart.

use gardien_secrets::catalog::EnvVar;
use gardien_secrets::{Environment, Requirement, SecretLookup};

/// Keys `X-Gardien-Identity`; shared with gardien. Required outside `dev`.
pub const INTERNAL_SECRET_VAR: EnvVar = EnvVar::secret(
    "GARDIEN_INTERNAL_SECRET",
    "**required**",
    "verifies `X-Gardien-Identity`: the same value as gardien's ([IDENTITY.md](IDENTITY.md))",
)
.per_environment("the development default", "**required**", "**required**");
pub const INTERNAL_SECRET: &str = INTERNAL_SECRET_VAR.name;
/// A second value accepted besides the internal secret, during a rotation that a verifier
/// reading its secret only at start needs (docs/IDENTITY.md#rotating-the-secret). Never
/// required; at least [`MIN_INTERNAL_SECRET_BYTES`] in production when set.
pub const INTERNAL_SECRET_PREVIOUS_VAR: EnvVar = EnvVar::secret(
    "GARDIEN_INTERNAL_SECRET_PREVIOUS",
    "unset",
    "a second value accepted besides `GARDIEN_INTERNAL_SECRET` during a rotation ([IDENTITY.md](IDENTITY.md#rotating-the-secret)); at least 32 bytes in production",
);
pub const INTERNAL_SECRET_PREVIOUS: &str = INTERNAL_SECRET_PREVIOUS_VAR.name;
/// Shortest previous internal secret accepted in production (gardien's rule for the
/// internal secret).
pub const MIN_INTERNAL_SECRET_BYTES: usize = 32;
/// The database URL, credentials included. Required in production unless
/// `--database-url` gives it (so a failed lookup cannot quietly leave each replica a
/// SQLite file of its own); elsewhere the default is the SQLite file. Read at start (a new
/// value takes a restart: the pool is open).
pub const DATABASE_URL_VAR: EnvVar = EnvVar::secret(
    "DATABASE_URL",
    "**required**",
    "the database, credentials included: `postgres://…` (or `sqlite://…`; production needs `DATABASE_ALLOW_SQLITE=true` for it); `--database-url` overrides it; read at start",
)
.per_environment(
    "`sqlite://gardien.db?mode=rwc`",
    "`sqlite://gardien.db?mode=rwc`",
    "**required** unless `--database-url` gives it",
);
pub const DATABASE_URL: &str = DATABASE_URL_VAR.name;
/// Error reporting, when configured.
pub const SENTRY_DSN: &str = gardien_telemetry::error_reporting::SENTRY_DSN;

/// Every secret the backend reads in `environment`, followed by `extra` — the delivery
/// providers' credentials for the mode they run in (SendGrid, Twilio, SMTP), which the
/// delivery code decides. `database_given`: `--database-url` was passed, so the
/// `DATABASE_URL` secret is not needed.
pub fn requirements(
    environment: Environment,
    database_given: bool,
    extra: Vec<Requirement>,
) -> Vec<Requirement> {
    let identity = "verifies X-Gardien-Identity (the signature gardien puts on identity headers)";
    let mut requirements = vec![
        if environment == Environment::Dev {
            Requirement::optional(INTERNAL_SECRET, identity)
        } else {
            Requirement::required(INTERNAL_SECRET, identity)
        },
        if environment == Environment::Production && !database_given {
            Requirement::required(
                DATABASE_URL,
                "the database: postgres://… (or sqlite://… with DATABASE_ALLOW_SQLITE=true)",
            )
        } else {
            Requirement::optional(DATABASE_URL, "the database (default: the SQLite file)")
        },
        // Removing it stops its acceptance (it is not kept as a last good value).
        Requirement::optional(
            INTERNAL_SECRET_PREVIOUS,
            "also accepted for X-Gardien-Identity during a rotation",
        )
        .forgotten_when_removed(),
        Requirement::optional(SENTRY_DSN, "error reporting"),
    ];
    requirements.extend(extra);
    requirements
}

/// What refuses a start among the secrets' values (never the values themselves): in
/// production, a previous internal secret shorter than [`MIN_INTERNAL_SECRET_BYTES`].
pub fn problems(environment: Environment, secrets: &dyn SecretLookup) -> Vec<String> {
    let mut problems = Vec::new();
    if environment == Environment::Production {
        if let Some(previous) = secrets.get(INTERNAL_SECRET_PREVIOUS) {
            if previous.len() < MIN_INTERNAL_SECRET_BYTES {
                problems.push(format!(
                    "{INTERNAL_SECRET_PREVIOUS}: {} bytes; production needs at least {MIN_INTERNAL_SECRET_BYTES}",
                    previous.len()
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_says_the_default_database() {
        let default = format!("`{}`", crate::config::DEFAULT_DATABASE_URL);
        assert_eq!(DATABASE_URL_VAR.defaults.dev, default);
        assert_eq!(DATABASE_URL_VAR.defaults.staging, default);
    }

    #[test]
    fn the_internal_secret_is_required_outside_dev_and_extras_follow() {
        let extra = vec![Requirement::required("SENDGRID_API_KEY", "SendGrid")];
        let production = requirements(Environment::Production, false, extra.clone());
        let names: Vec<(&str, bool)> = production
            .iter()
            .map(|r| (r.name.as_str(), r.required))
            .collect();
        assert_eq!(
            names,
            vec![
                (INTERNAL_SECRET, true),
                (DATABASE_URL, true),
                (INTERNAL_SECRET_PREVIOUS, false),
                (SENTRY_DSN, false),
                ("SENDGRID_API_KEY", true)
            ]
        );
        assert!(!requirements(Environment::Dev, false, Vec::new())[0].required);
        assert!(requirements(Environment::Staging, false, Vec::new())[0].required);
    }

    #[test]
    fn the_database_url_is_required_in_production_unless_the_flag_gives_it() {
        let required = |environment, given| {
            requirements(environment, given, Vec::new())
                .into_iter()
                .find(|r| r.name == DATABASE_URL)
                .map(|r| r.required)
        };
        assert_eq!(required(Environment::Production, false), Some(true));
        assert_eq!(required(Environment::Production, true), Some(false));
        assert_eq!(required(Environment::Staging, false), Some(false));
        assert_eq!(required(Environment::Dev, false), Some(false));
    }

    #[test]
    fn a_short_previous_secret_is_refused_in_production_only() {
        use gardien_secrets::Secret;
        use std::collections::HashMap;
        let short: HashMap<String, Secret> = HashMap::from([(
            INTERNAL_SECRET_PREVIOUS.to_owned(),
            Secret::new("short-one"),
        )]);
        let problems = problems(Environment::Production, &short);
        assert_eq!(
            problems,
            vec!["GARDIEN_INTERNAL_SECRET_PREVIOUS: 9 bytes; production needs at least 32"]
        );
        assert!(super::problems(Environment::Staging, &short).is_empty());
        let long: HashMap<String, Secret> = HashMap::from([(
            INTERNAL_SECRET_PREVIOUS.to_owned(),
            Secret::new("x".repeat(MIN_INTERNAL_SECRET_BYTES)),
        )]);
        assert!(super::problems(Environment::Production, &long).is_empty());
        let none: HashMap<String, Secret> = HashMap::new();
        assert!(super::problems(Environment::Production, &none).is_empty());
    }
}
