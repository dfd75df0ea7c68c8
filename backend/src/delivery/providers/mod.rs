//! One module per provider. Each turns a [`Message`](super::provider::Message) into the
//! service's request, reads the answer, and classifies failures
//! ([`FailureKind`](super::provider::FailureKind)).
//!
//! Providers hold no credential: they read their secrets by name through a
//! [`SecretLookup`](gardien_secrets::SecretLookup) at each send, so a rotated key is used on
//! the next send, and a provider's `Debug` output has nothing to leak.

pub mod config;
pub mod declaration;
mod http;
pub mod log;
pub mod mask;
mod secret;
pub mod sendgrid;
pub mod smtp;
pub mod twilio;
pub mod variables;

use std::time::Duration;

pub use config::{ConfigProblems, EmailSender, EnvLookup, ProcessEnv, ProvidersConfig};
pub use declaration::{ProviderDeclaration, SecretDeclaration, Variable};
pub use log::LogProvider;
pub use sendgrid::{SendGrid, SendGridConfig};
pub use smtp::{Smtp, SmtpConfig, SmtpTls};
pub use twilio::{Twilio, TwilioConfig};

/// How long a send may take when the configuration does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A provider could not be built from its configuration (an invalid timeout, a TLS
/// back-end that would not start). Never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct SetupError {
    pub provider: String,
    pub message: String,
}

impl SetupError {
    pub(crate) fn new(provider: &str, message: impl Into<String>) -> Self {
        SetupError {
            provider: provider.to_owned(),
            message: message.into(),
        }
    }
}

/// A secret a provider reads at each send, for `check` and `/readyz` to list what must be
/// resolvable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretUse<'a> {
    /// The name looked up in the [`SecretLookup`](gardien_secrets::SecretLookup).
    pub name: &'a str,
    /// `false` for secrets the provider works without (SMTP credentials).
    pub required: bool,
}
