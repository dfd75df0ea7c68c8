//! Log settings, read under the same names as gardien's: `GARDIEN_LOG` (a `tracing`
//! filter, default `info`) and `GARDIEN_LOG_FORMAT` (`json` for JSON lines, anything else
//! text). The backend's former names, `RUST_LOG` and `LOG_FORMAT`, are still read when the
//! new ones are unset, so existing deployments keep their logs.

use gardien_secrets::catalog::EnvVar;
use gardien_secrets::Vars;
use tracing_subscriber::EnvFilter;

/// The backend's former names, read when the new ones are unset.
pub const RUST_LOG: EnvVar = EnvVar::plain(
    "RUST_LOG",
    "unset",
    "the former name of `GARDIEN_LOG`, read when it is unset",
);
pub const LOG_FORMAT: EnvVar = EnvVar::plain(
    "LOG_FORMAT",
    "unset",
    "the former name of `GARDIEN_LOG_FORMAT`, read when it is unset",
);
/// Every variable this module reads besides gardien-telemetry's.
pub const FALLBACK_VARS: [EnvVar; 2] = [RUST_LOG, LOG_FORMAT];

/// The filter variable, and the one read when it is unset.
pub const FILTER: &str = gardien_telemetry::LOG_FILTER;
pub const FILTER_FALLBACK: &str = RUST_LOG.name;
/// The format variable, and the one read when it is unset.
pub const FORMAT: &str = gardien_telemetry::LOG_FORMAT;
pub const FORMAT_FALLBACK: &str = LOG_FORMAT.name;

/// What to log and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A `tracing` filter; `info` when none is set or the one set does not parse (as
    /// gardien does).
    pub filter: String,
    pub json: bool,
}

/// `name`, else `fallback`; an empty value counts as unset.
fn first(vars: &dyn Vars, name: &str, fallback: &str) -> Option<String> {
    [name, fallback]
        .into_iter()
        .filter_map(|n| vars.var(n))
        .find(|v| !v.trim().is_empty())
}

impl LogSettings {
    pub fn from_vars(vars: &dyn Vars) -> LogSettings {
        let filter = first(vars, FILTER, FILTER_FALLBACK)
            .filter(|f| EnvFilter::try_new(f).is_ok())
            .unwrap_or_else(|| "info".to_owned());
        let json = first(vars, FORMAT, FORMAT_FALLBACK).as_deref() == Some("json");
        LogSettings { filter, json }
    }
}

/// Logs to stderr with the process environment's settings: the same subscriber as
/// gardien's (`gardien-telemetry`), Cloud Logging's JSON lines with `json`. Returns the
/// settings it used.
pub fn init() -> LogSettings {
    let settings = LogSettings::from_vars(&gardien_secrets::ProcessVars);
    gardien_telemetry::init(&settings.filter, settings.json);
    settings
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(pairs: &[(&'static str, &'static str)]) -> LogSettings {
        let vars: HashMap<&'static str, &'static str> = pairs.iter().copied().collect();
        LogSettings::from_vars(&vars)
    }

    #[test]
    fn the_gardien_names_win_over_the_old_ones() {
        assert_eq!(
            settings(&[]),
            LogSettings {
                filter: "info".into(),
                json: false
            }
        );
        let s = settings(&[("GARDIEN_LOG", "warn"), ("RUST_LOG", "debug")]);
        assert_eq!(s.filter, "warn");
        assert_eq!(settings(&[("RUST_LOG", "debug")]).filter, "debug");
        assert!(settings(&[("GARDIEN_LOG_FORMAT", "json")]).json);
        assert!(settings(&[("LOG_FORMAT", "json")]).json);
        assert!(!settings(&[("GARDIEN_LOG_FORMAT", "text"), ("LOG_FORMAT", "json")]).json);
        assert!(!settings(&[("GARDIEN_LOG_FORMAT", "JSON")]).json);
    }

    #[test]
    fn a_filter_that_does_not_parse_is_info() {
        assert_eq!(settings(&[("GARDIEN_LOG", "info,[=")]).filter, "info");
    }
}
