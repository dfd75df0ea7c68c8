//! Secrets, shared by gardien and gardien-backend: values wrapped so they never reach a
//! log, an error message or `Debug` output ([`Secret`]), and the one chain of sources both
//! binaries read them from, in a documented order (docs/SECRETS.md):
//!
//! 1. Google Secret Manager ([`google::SecretManagerSource`]), when a project is configured;
//! 2. files ([`FileSource`], `/run/secrets/<NAME>` as Cloud Run and Kubernetes mount them);
//! 3. environment variables ([`EnvSource`]);
//! 4. development defaults ([`DevDefaults`]), only when the environment is `dev`.
//!
//! A [`Chain`] resolves one name and records every source it tried ([`Resolution`]); a
//! [`SecretStore`] keeps the resolved values of a set of [`Requirement`]s, refreshes them on
//! an interval so a rotated value is picked up without a restart, and answers
//! [`SecretLookup::get`] from its cache, remembering for each name the value before its
//! last change ([`PreviousValue`], for rotations); a [`Report`] says where each came from — never the
//! value — in the format both binaries' `check` print.

use std::collections::HashMap;
use std::fmt;

pub mod catalog;
pub mod catalog_check;
mod chain;
mod config;
mod dev_defaults;
mod env;
mod environment;
mod file;
pub mod google;
mod previous;
mod report;
mod requirement;
mod source;
mod store;
mod vars;

pub use chain::{Attempt, AttemptOutcome, Chain, Resolution};
pub use config::{
    ChainConfig, SecretManagerConfig, CHAIN_VARS, DEFAULT_REFRESH_INTERVAL, GOOGLE_CLOUD_PROJECT,
};
pub use dev_defaults::{DevDefaults, DEV_DEFAULTS};
pub use env::EnvSource;
pub use environment::Environment;
pub use file::FileSource;
pub use previous::PreviousValue;
pub use report::{Report, ReportEntry};
pub use requirement::Requirement;
pub use source::{Fetched, Origin, SecretSource};
pub use store::{RefreshSummary, SecretStore};
pub use vars::{ProcessVars, Vars};

/// A secret's bytes. `Debug` and `Display` print `[redacted]`; only [`Secret::expose`]
/// gives the value, so every use is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into().into_boxed_slice())
    }

    /// The value, for the one place that needs it (a MAC key, a signature check).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a binary reads a secret's current value by name. The chain of sources (Google
/// Secret Manager, files, environment, development defaults) implements it with a cache
/// refreshed in the background; tests can pass a map. `get` never blocks: it answers from
/// what was last resolved, so a rotated value is seen on the next call after a refresh.
pub trait SecretLookup: Send + Sync {
    /// The current value of the secret `name`, if one was resolved.
    fn get(&self, name: &str) -> Option<Secret>;

    /// The value `name` had before its last change, and when it changed; `None` when it
    /// never changed (or the lookup does not refresh). A rotation reads it: the signer
    /// keeps it for its delay, verifiers accept it for their window.
    fn previous(&self, _name: &str) -> Option<PreviousValue> {
        None
    }

    /// How often values are looked up again (a rotated value may take this long to be
    /// seen); `None` when they never are.
    fn refresh_interval(&self) -> Option<std::time::Duration> {
        None
    }
}

impl SecretLookup for HashMap<String, Secret> {
    fn get(&self, name: &str) -> Option<Secret> {
        HashMap::get(self, name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), b"hunter2-hunter2-hunter2");
    }
}
