//! The chain's configuration, read once from variables (docs/SECRETS.md lists them):
//! whether Google Secret Manager is used and where, the secrets directory, the refresh
//! interval. Every problem is reported, not only the first.

use std::path::PathBuf;
use std::time::Duration;

use crate::catalog::EnvVar;
use crate::file::DEFAULT_SECRETS_DIR;
use crate::{Environment, Vars};

/// The project holding the secrets; wins over [`GOOGLE_CLOUD_PROJECT`].
pub const SECRET_MANAGER_PROJECT: EnvVar = EnvVar::plain(
    "SECRET_MANAGER_PROJECT",
    "unset",
    "Google Cloud project holding the secrets (wins over `GOOGLE_CLOUD_PROJECT`); unset with `GOOGLE_CLOUD_PROJECT` unset too: Secret Manager is not used",
);
/// Google's standard project variable: the secrets' project when
/// [`SECRET_MANAGER_PROJECT`] is unset, and the project of the trace key in JSON logs.
pub const GOOGLE_CLOUD_PROJECT: EnvVar = EnvVar::plain(
    "GOOGLE_CLOUD_PROJECT",
    "unset",
    "the same, under Google's standard name; also names the trace of JSON log lines (`projects/<project>/traces/<id>`)",
);
pub const SECRET_MANAGER_BASE_URL: EnvVar = EnvVar::plain(
    "SECRET_MANAGER_BASE_URL",
    "`https://secretmanager.googleapis.com`",
    "Secret Manager's endpoint",
);
pub const GCE_METADATA_HOST: EnvVar = EnvVar::plain(
    "GCE_METADATA_HOST",
    "`metadata.google.internal`",
    "metadata server (`host[:port]`) that access tokens come from",
);
pub const GOOGLE_APPLICATION_CREDENTIALS: EnvVar = EnvVar::plain(
    "GOOGLE_APPLICATION_CREDENTIALS",
    "unset",
    "service-account key file; used instead of the metadata server when set",
);
pub const SECRET_MANAGER_TIMEOUT: EnvVar = EnvVar::plain(
    "SECRET_MANAGER_TIMEOUT",
    "`5s`",
    "longest wait for one Secret Manager, metadata or token request",
);
pub const SECRETS_DIR: EnvVar = EnvVar::plain(
    "SECRETS_DIR",
    "`/run/secrets`",
    "directory of secret files (`<dir>/<NAME>`)",
);
pub const SECRETS_REFRESH_INTERVAL: EnvVar = EnvVar::plain(
    "SECRETS_REFRESH_INTERVAL",
    "`60s`",
    "how often secrets are looked up again (rotation without a restart); at least `100ms`",
);
pub const SECRETS_DEV_DEFAULTS: EnvVar = EnvVar::plain(
    "SECRETS_DEV_DEFAULTS",
    "`on`",
    "`off`: no development defaults, even in `dev` (they are never used elsewhere)",
);

/// Every variable the chain's configuration reads, in the order docs/ENVIRONMENT.md lists
/// them.
pub const CHAIN_VARS: [EnvVar; 9] = [
    SECRET_MANAGER_PROJECT,
    GOOGLE_CLOUD_PROJECT,
    SECRET_MANAGER_BASE_URL,
    GCE_METADATA_HOST,
    GOOGLE_APPLICATION_CREDENTIALS,
    SECRET_MANAGER_TIMEOUT,
    SECRETS_DIR,
    SECRETS_REFRESH_INTERVAL,
    SECRETS_DEV_DEFAULTS,
];

/// Secret Manager's public endpoint.
pub const DEFAULT_SECRET_MANAGER_BASE_URL: &str = "https://secretmanager.googleapis.com";
/// The metadata server's host name on Google Cloud (Cloud Run, GKE, Compute Engine).
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// Longest wait for one request to Secret Manager, the metadata server or the token
/// endpoint: a Secret Manager that does not answer must not hang a start.
pub const DEFAULT_SECRET_MANAGER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often resolved secrets are looked up again.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest refresh interval accepted (tests use sub-second ones).
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// Where Secret Manager is and how to get a token for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretManagerConfig {
    /// `SECRET_MANAGER_PROJECT`, else `GOOGLE_CLOUD_PROJECT`.
    pub project: String,
    /// `SECRET_MANAGER_BASE_URL`, without a trailing `/`.
    pub base_url: String,
    /// `GCE_METADATA_HOST`: `host` or `host:port`, no scheme.
    pub metadata_host: String,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service-account key file, preferred over the
    /// metadata server when set.
    pub credentials_file: Option<PathBuf>,
    /// `SECRET_MANAGER_TIMEOUT`: per request.
    pub timeout: Duration,
}

/// Everything the chain and the store need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    pub environment: Environment,
    /// `None` when no project is configured: the chain starts at files.
    pub secret_manager: Option<SecretManagerConfig>,
    /// `SECRETS_DIR`, default `/run/secrets`.
    pub secrets_dir: PathBuf,
    /// `SECRETS_REFRESH_INTERVAL`, default 60s.
    pub refresh_interval: Duration,
    /// Whether development defaults end the chain: in `dev` only, unless
    /// `SECRETS_DEV_DEFAULTS=off` (to run a dev process with no secret at all).
    pub dev_defaults: bool,
}

impl ChainConfig {
    /// Reads the configuration from `vars`; `Err` lists every problem, each starting with
    /// the variable's name.
    pub fn from_vars(vars: &dyn Vars, environment: Environment) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let duration = |name: &str, default: Duration, problems: &mut Vec<String>| match vars
            .non_empty(name)
        {
            None => default,
            Some(text) => match humantime::parse_duration(text.trim()) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!(
                        "{name}: `{text}` is not a duration (e.g. 60s): {e}"
                    ));
                    default
                }
            },
        };
        let refresh_interval = duration(
            SECRETS_REFRESH_INTERVAL.name,
            DEFAULT_REFRESH_INTERVAL,
            &mut problems,
        );
        if refresh_interval < MIN_REFRESH_INTERVAL {
            problems.push(format!(
                "SECRETS_REFRESH_INTERVAL: at least {}ms",
                MIN_REFRESH_INTERVAL.as_millis()
            ));
        }
        let timeout = duration(
            SECRET_MANAGER_TIMEOUT.name,
            DEFAULT_SECRET_MANAGER_TIMEOUT,
            &mut problems,
        );
        if timeout.is_zero() {
            problems.push("SECRET_MANAGER_TIMEOUT: must be more than 0".to_owned());
        }
        let project = vars
            .non_empty(SECRET_MANAGER_PROJECT.name)
            .or_else(|| vars.non_empty(GOOGLE_CLOUD_PROJECT.name))
            .map(|p| p.trim().to_owned());
        let secret_manager = project.map(|project| {
            if !is_project_id(&project) {
                problems.push(format!(
                    "SECRET_MANAGER_PROJECT/GOOGLE_CLOUD_PROJECT: `{project}` is not a project id or number"
                ));
            }
            let base_url = vars
                .non_empty(SECRET_MANAGER_BASE_URL.name)
                .unwrap_or_else(|| DEFAULT_SECRET_MANAGER_BASE_URL.to_owned());
            let base_url = base_url.trim().trim_end_matches('/').to_owned();
            match url::Url::parse(&base_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => problems.push(format!(
                    "SECRET_MANAGER_BASE_URL: `{base_url}` is not an http(s) URL"
                )),
            }
            let metadata_host = vars
                .non_empty(GCE_METADATA_HOST.name)
                .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_owned());
            let metadata_host = metadata_host.trim().trim_start_matches("http://").to_owned();
            if metadata_host.is_empty() || metadata_host.contains(['/', '@', ' ']) {
                problems.push(format!(
                    "GCE_METADATA_HOST: `{metadata_host}` is not a host or host:port"
                ));
            }
            SecretManagerConfig {
                project,
                base_url,
                metadata_host,
                credentials_file: vars
                    .non_empty(GOOGLE_APPLICATION_CREDENTIALS.name)
                    .map(PathBuf::from),
                timeout,
            }
        });
        let dev_defaults = match vars
            .non_empty(SECRETS_DEV_DEFAULTS.name)
            .as_deref()
            .map(str::trim)
        {
            None | Some("on" | "true" | "1") => true,
            Some("off" | "false" | "0") => false,
            Some(other) => {
                problems.push(format!(
                    "SECRETS_DEV_DEFAULTS: `{other}` is neither on nor off"
                ));
                true
            }
        } && environment == Environment::Dev;
        let secrets_dir = vars
            .non_empty(SECRETS_DIR.name)
            .map_or_else(|| PathBuf::from(DEFAULT_SECRETS_DIR), PathBuf::from);
        if problems.is_empty() {
            Ok(ChainConfig {
                environment,
                secret_manager,
                secrets_dir,
                refresh_interval,
                dev_defaults,
            })
        } else {
            Err(problems)
        }
    }
}

/// Project ids are lower-case letters, digits and `-`; numbers are digits; domain-scoped
/// ids (`example.com:project`) add `.` and `:`.
fn is_project_id(project: &str) -> bool {
    !project.is_empty()
        && project.len() <= 100
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':'))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_catalog_says_the_defaults_the_code_uses() {
        let shown = |var: EnvVar| var.defaults.production.trim_matches('`').to_owned();
        assert_eq!(
            shown(SECRET_MANAGER_BASE_URL),
            DEFAULT_SECRET_MANAGER_BASE_URL
        );
        assert_eq!(shown(GCE_METADATA_HOST), DEFAULT_METADATA_HOST);
        assert_eq!(shown(SECRETS_DIR), DEFAULT_SECRETS_DIR);
        let duration = |var: EnvVar| humantime::parse_duration(&shown(var)).expect("a duration");
        assert_eq!(
            duration(SECRET_MANAGER_TIMEOUT),
            DEFAULT_SECRET_MANAGER_TIMEOUT
        );
        assert_eq!(duration(SECRETS_REFRESH_INTERVAL), DEFAULT_REFRESH_INTERVAL);
    }

    #[test]
    fn defaults_without_a_project() {
        let config = ChainConfig::from_vars(&HashMap::<String, String>::new(), Environment::Dev)
            .expect("valid");
        assert_eq!(config.secret_manager, None);
        assert_eq!(config.secrets_dir, PathBuf::from("/run/secrets"));
        assert_eq!(config.refresh_interval, Duration::from_secs(60));
        assert!(config.dev_defaults);
    }

    #[test]
    fn development_defaults_only_in_dev_and_can_be_turned_off() {
        let off: HashMap<&str, &str> = HashMap::from([("SECRETS_DEV_DEFAULTS", "off")]);
        assert!(
            !ChainConfig::from_vars(&off, Environment::Dev)
                .expect("valid")
                .dev_defaults
        );
        let none: HashMap<&str, &str> = HashMap::new();
        for environment in [Environment::Staging, Environment::Production] {
            assert!(
                !ChainConfig::from_vars(&none, environment)
                    .expect("valid")
                    .dev_defaults
            );
        }
        let bad: HashMap<&str, &str> = HashMap::from([("SECRETS_DEV_DEFAULTS", "maybe")]);
        assert!(ChainConfig::from_vars(&bad, Environment::Dev).is_err());
    }

    #[test]
    fn secret_manager_project_wins_and_urls_are_read() {
        let vars: HashMap<&str, &str> = HashMap::from([
            ("GOOGLE_CLOUD_PROJECT", "from-google"),
            ("SECRET_MANAGER_PROJECT", "from-gardien"),
            ("SECRET_MANAGER_BASE_URL", "http://127.0.0.1:9/"),
            ("GCE_METADATA_HOST", "127.0.0.1:8"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/keys/sa.json"),
            ("SECRETS_DIR", "/etc/gardien/secrets"),
            ("SECRETS_REFRESH_INTERVAL", "500ms"),
        ]);
        let config = ChainConfig::from_vars(&vars, Environment::Production).expect("valid");
        let sm = config.secret_manager.expect("enabled");
        assert_eq!(sm.project, "from-gardien");
        assert_eq!(sm.base_url, "http://127.0.0.1:9");
        assert_eq!(sm.metadata_host, "127.0.0.1:8");
        assert_eq!(sm.credentials_file, Some(PathBuf::from("/keys/sa.json")));
        assert_eq!(sm.timeout, Duration::from_secs(5));
        assert_eq!(config.secrets_dir, PathBuf::from("/etc/gardien/secrets"));
        assert_eq!(config.refresh_interval, Duration::from_millis(500));
    }

    #[test]
    fn every_problem_is_listed() {
        let vars: HashMap<&str, &str> = HashMap::from([
            ("GOOGLE_CLOUD_PROJECT", "Bad Project"),
            ("SECRET_MANAGER_BASE_URL", "secretmanager"),
            ("SECRETS_REFRESH_INTERVAL", "often"),
            ("SECRET_MANAGER_TIMEOUT", "0s"),
        ]);
        let problems = ChainConfig::from_vars(&vars, Environment::Production).expect_err("bad");
        let names: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            vec![
                "SECRETS_REFRESH_INTERVAL",
                "SECRET_MANAGER_TIMEOUT",
                "SECRET_MANAGER_PROJECT/GOOGLE_CLOUD_PROJECT",
                "SECRET_MANAGER_BASE_URL"
            ],
            "{problems:?}"
        );
    }
}
