//! What each provider says about itself, in its own module: its name, its channels, the
//! modes it runs in, the variables and secrets it reads, how it is configured and built.
//! The registry, `NOTIFY_*_PROVIDERS` validation, the secret requirements and `check`
//! read [`ALL`], so adding a provider is one module and one line here.

use std::sync::Arc;

use gardien_secrets::SecretLookup;

use super::ProvidersConfig;
use crate::delivery::config::NotifyMode;
use crate::delivery::provider::{Channel, Provider};

/// A plain variable a provider reads: its catalog entry ([`super::variables`]).
pub type Variable = gardien_secrets::catalog::EnvVar;

/// A secret a provider reads at each send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretDeclaration {
    pub name: &'static str,
    /// Whether the provider cannot send without it (SMTP works without credentials).
    pub needed: bool,
    /// What it is, for `gardien-backend env-docs`.
    pub meaning: &'static str,
}

/// Builds a provider of one of its channels from the validated settings, for a mode it
/// runs in. The error names
/// the provider and what to set.
pub type Build = fn(
    Channel,
    &ProvidersConfig,
    Arc<dyn SecretLookup>,
    NotifyMode,
) -> Result<Arc<dyn Provider>, String>;

/// One provider, as it declares itself.
#[derive(Debug, Clone, Copy)]
pub struct ProviderDeclaration {
    /// The name in `NOTIFY_*_PROVIDERS`, attempts, metrics and `/readyz`.
    pub name: &'static str,
    pub channels: &'static [Channel],
    /// `live` and `sandbox` for the services (they may be named in `NOTIFY_*_PROVIDERS`),
    /// `log` for the log provider.
    pub modes: &'static [NotifyMode],
    pub variables: &'static [Variable],
    pub secrets: &'static [SecretDeclaration],
    /// What an operator sets to configure it, for the error when a channel has no
    /// provider (`EMAIL_FROM + SENDGRID_API_KEY`).
    pub setup: &'static str,
    /// Whether the settings configure it: the default list of a channel is every
    /// configured provider, in the order of [`ALL`].
    pub configured: fn(&ProvidersConfig, NotifyMode) -> bool,
    pub build: Build,
}

impl ProviderDeclaration {
    pub fn carries(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }

    pub fn runs_in(&self, mode: NotifyMode) -> bool {
        self.modes.contains(&mode)
    }

    /// Whether `NOTIFY_<channel>_PROVIDERS` may name it.
    pub fn listable(&self, channel: Channel) -> bool {
        self.carries(channel)
            && (self.runs_in(NotifyMode::Live) || self.runs_in(NotifyMode::Sandbox))
    }
}

/// Every provider, in the default order of preference.
pub const ALL: &[&ProviderDeclaration] = &[
    &super::sendgrid::DECLARATION,
    &super::smtp::DECLARATION,
    &super::twilio::PRIMARY,
    &super::twilio::SECONDARY,
    &super::log::DECLARATION,
];

/// The provider named `name` that `NOTIFY_<channel>_PROVIDERS` may name.
pub fn listable(channel: Channel, name: &str) -> Option<&'static ProviderDeclaration> {
    ALL.iter()
        .copied()
        .find(|d| d.name == name && d.listable(channel))
}

/// The names `NOTIFY_<channel>_PROVIDERS` may hold, in order.
pub fn listable_names(channel: Channel) -> Vec<&'static str> {
    ALL.iter()
        .filter(|d| d.listable(channel))
        .map(|d| d.name)
        .collect()
}

/// Every variable the providers read, each once (the first meaning given).
pub fn variables() -> Vec<Variable> {
    let mut all: Vec<Variable> = Vec::new();
    for variable in ALL.iter().flat_map(|d| d.variables) {
        if !all.iter().any(|v| v.name == variable.name) {
            all.push(*variable);
        }
    }
    all
}

/// Every secret the providers read, each once, as catalog entries: `unset` by default
/// (`check` says which ones the providers in use need).
pub fn secrets() -> Vec<Variable> {
    let mut all: Vec<Variable> = Vec::new();
    for secret in ALL.iter().flat_map(|d| d.secrets) {
        if !all.iter().any(|v| v.name == secret.name) {
            all.push(Variable::secret(secret.name, "unset", secret.meaning));
        }
    }
    all
}

/// How to give `channel` a provider: each listable provider's setup, for the error when
/// it has none.
pub fn setup_hint(channel: Channel) -> String {
    ALL.iter()
        .filter(|d| d.listable(channel))
        .map(|d| format!("{} ({})", d.setup, d.name))
        .collect::<Vec<_>>()
        .join(", or ")
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use super::*;
    use crate::delivery::providers::EnvLookup;

    #[test]
    fn names_are_unique_and_lists_follow_the_declarations() {
        let names: HashSet<&str> = ALL.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), ALL.len());
        assert_eq!(listable_names(Channel::Email), ["sendgrid", "smtp"]);
        assert_eq!(listable_names(Channel::Sms), ["twilio", "twilio-secondary"]);
        assert!(listable(Channel::Email, "log").is_none());
        assert!(listable(Channel::Sms, "sendgrid").is_none());
    }

    /// Records every variable read.
    struct Recorder(Mutex<Vec<String>>, HashMap<String, String>);

    impl EnvLookup for Recorder {
        fn var(&self, name: &str) -> Option<String> {
            if let Ok(mut read) = self.0.lock() {
                read.push(name.to_owned());
            }
            self.1.get(name).cloned()
        }
    }

    #[test]
    fn every_variable_the_settings_read_is_declared() {
        let set: HashMap<String, String> = [
            ("EMAIL_FROM", "a@b.example"),
            ("SMTP_HOST", "localhost"),
            ("TWILIO_FROM", "+15005550006"),
            ("TWILIO_SECONDARY_FROM", "+15005550006"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let recorder = Recorder(Mutex::new(Vec::new()), set);
        ProvidersConfig::from_env(&recorder).expect("valid");
        let declared: Vec<&str> = variables().iter().map(|v| v.name).collect();
        let read = recorder.0.lock().expect("lock").clone();
        assert!(!read.is_empty());
        for name in read {
            assert!(
                declared.contains(&name.as_str()),
                "{name} is read but not declared"
            );
        }
    }
}
