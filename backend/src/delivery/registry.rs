//! The providers of each channel, in the order they are tried, built from the mode, the
//! `NOTIFY_*_PROVIDERS` lists (or, by default, every configured provider) and the
//! providers' own settings, through the declarations each provider module makes
//! (`providers::declaration`).

use std::sync::Arc;

use gardien_secrets::SecretLookup;

use crate::delivery::config::{list_variable, DeliveryOptions, NotifyMode};
use crate::delivery::provider::{Channel, Provider};
use crate::delivery::providers::declaration::{self, ProviderDeclaration};
use crate::delivery::providers::ProvidersConfig;

/// A secret a provider reads, for the store to resolve and `check` to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSecret {
    pub name: String,
    /// The provider that reads it (`sendgrid`, `twilio-secondary`…).
    pub provider: String,
    /// Whether the provider cannot send without it.
    pub needed: bool,
}

/// Each channel's ordered provider list, and the secrets they read.
#[derive(Debug, Default, Clone)]
pub struct Providers {
    email: Vec<Arc<dyn Provider>>,
    sms: Vec<Arc<dyn Provider>>,
    secrets: Vec<ProviderSecret>,
}

impl Providers {
    /// Lists without secrets to report (tests).
    pub fn new(email: Vec<Arc<dyn Provider>>, sms: Vec<Arc<dyn Provider>>) -> Self {
        Providers {
            email,
            sms,
            secrets: Vec::new(),
        }
    }

    /// Adds `provider`, declared by `declaration`, to `channel`'s list with the secrets
    /// it declares.
    fn add(
        &mut self,
        channel: Channel,
        declaration: &ProviderDeclaration,
        provider: Arc<dyn Provider>,
    ) {
        for secret in declaration.secrets {
            let known = self
                .secrets
                .iter()
                .any(|s| s.name == secret.name && s.provider == declaration.name);
            if !known {
                self.secrets.push(ProviderSecret {
                    name: secret.name.to_owned(),
                    provider: declaration.name.to_owned(),
                    needed: secret.needed,
                });
            }
        }
        match channel {
            Channel::Email => self.email.push(provider),
            Channel::Sms => self.sms.push(provider),
        }
    }

    /// Builds every channel's list for `mode` from the providers' declarations; every
    /// problem at once, by variable. Names the lists do not know, or name twice, are left
    /// to `DeliveryOptions::problems`, which reports them alongside these. A channel turned
    /// off (`none`) gets no provider.
    pub fn build(
        options: &DeliveryOptions,
        mode: NotifyMode,
        config: &ProvidersConfig,
        secrets: &Arc<dyn SecretLookup>,
    ) -> Result<Providers, Vec<String>> {
        let mut providers = Providers::default();
        let mut problems = Vec::new();
        for channel in Channel::ALL {
            if options.channel_off(channel) {
                continue;
            }
            let chosen: Vec<&'static ProviderDeclaration> = match options.providers(channel) {
                // The log mode logs every channel, whatever the lists name.
                Some(names) if mode != NotifyMode::Log => {
                    let mut chosen: Vec<&'static ProviderDeclaration> = Vec::new();
                    for name in names {
                        if let Some(d) = declaration::listable(channel, name.trim()) {
                            if !chosen.iter().any(|c| c.name == d.name) {
                                chosen.push(d);
                            }
                        }
                    }
                    chosen
                }
                _ => declaration::ALL
                    .iter()
                    .copied()
                    .filter(|d| {
                        d.carries(channel) && d.runs_in(mode) && (d.configured)(config, mode)
                    })
                    .collect(),
            };
            for declared in chosen {
                match (declared.build)(channel, config, Arc::clone(secrets), mode) {
                    Ok(provider) => providers.add(channel, declared, provider),
                    Err(message) => problems.push(format!("{}: {message}", list_variable(channel))),
                }
            }
        }
        if problems.is_empty() {
            Ok(providers)
        } else {
            Err(problems)
        }
    }

    /// `channel`'s providers, first choice first.
    pub fn for_channel(&self, channel: Channel) -> &[Arc<dyn Provider>] {
        match channel {
            Channel::Email => &self.email,
            Channel::Sms => &self.sms,
        }
    }

    /// Every provider's name, each once.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for provider in self.email.iter().chain(&self.sms) {
            if !names.contains(&provider.name()) {
                names.push(provider.name());
            }
        }
        names
    }

    /// Every secret the providers read.
    pub fn secrets(&self) -> &[ProviderSecret] {
        &self.secrets
    }
}
