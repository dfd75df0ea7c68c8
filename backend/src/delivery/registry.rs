//! The providers of each channel, in the order they are tried, built from the mode, the
//! `NOTIFY_*_PROVIDERS` lists (or, by default, every configured provider) and the
//! providers' own settings.

use std::sync::Arc;

use gardien_secrets::SecretLookup;

use crate::delivery::config::{DeliveryOptions, NotifyMode};
use crate::delivery::provider::{Channel, Provider};
use crate::delivery::providers::{
    LogProvider, ProvidersConfig, SecretUse, SendGrid, Smtp, Twilio, TwilioConfig,
};

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
    /// Lists without secrets to report (tests, the log mode).
    pub fn new(email: Vec<Arc<dyn Provider>>, sms: Vec<Arc<dyn Provider>>) -> Self {
        Providers {
            email,
            sms,
            secrets: Vec::new(),
        }
    }

    /// Adds `provider` to `channel`'s list with the secrets it reads (`(name, needed)`).
    fn add<P: Provider + 'static>(
        &mut self,
        channel: Channel,
        provider: P,
        secrets: Vec<(String, bool)>,
    ) {
        for (name, needed) in secrets {
            self.secrets.push(ProviderSecret {
                name,
                provider: provider.name().to_owned(),
                needed,
            });
        }
        match channel {
            Channel::Email => self.email.push(Arc::new(provider)),
            Channel::Sms => self.sms.push(Arc::new(provider)),
        }
    }

    /// Builds every channel's list for `mode`; every problem at once, by variable. Names
    /// the lists do not know, or name twice, are left to `DeliveryOptions::problems`, which
    /// reports them alongside these.
    pub fn build(
        options: &DeliveryOptions,
        mode: NotifyMode,
        config: &ProvidersConfig,
        secrets: &Arc<dyn SecretLookup>,
    ) -> Result<Providers, Vec<String>> {
        if mode == NotifyMode::Log {
            return Ok(Providers::new(
                vec![Arc::new(LogProvider::new(Channel::Email))],
                vec![Arc::new(LogProvider::new(Channel::Sms))],
            ));
        }
        let sandbox = mode == NotifyMode::Sandbox;
        let mut providers = Providers::default();
        let mut problems = Vec::new();
        let configured_email = [
            config.sendgrid.as_ref().map(|_| "sendgrid"),
            config.smtp.as_ref().map(|_| "smtp"),
        ];
        let primary_sms = sandbox
            || config.twilio.messaging_service_sid.is_some()
            || config.twilio.from.is_some();
        let configured_sms = [
            primary_sms.then_some("twilio"),
            config.twilio_secondary.as_ref().map(|_| "twilio-secondary"),
        ];
        for channel in Channel::ALL {
            let names: Vec<String> = match options.providers(channel) {
                Some(names) => names.iter().map(|n| n.trim().to_owned()).collect(),
                None => match channel {
                    Channel::Email => &configured_email,
                    Channel::Sms => &configured_sms,
                }
                .iter()
                .flatten()
                .map(|n| (*n).to_owned())
                .collect(),
            };
            for (i, name) in names.iter().enumerate() {
                if names[..i].contains(name) {
                    continue;
                }
                let built = providers.build_one(channel, name, config, secrets, sandbox);
                if let Err(message) = built {
                    let variable = match channel {
                        Channel::Email => "NOTIFY_EMAIL_PROVIDERS",
                        Channel::Sms => "NOTIFY_SMS_PROVIDERS",
                    };
                    problems.push(format!("{variable}: {message}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(providers)
        } else {
            Err(problems)
        }
    }

    /// Builds the provider `name` of `channel` and adds it to its list.
    fn build_one(
        &mut self,
        channel: Channel,
        name: &str,
        config: &ProvidersConfig,
        secrets: &Arc<dyn SecretLookup>,
        sandbox: bool,
    ) -> Result<(), String> {
        let secrets = Arc::clone(secrets);
        match (channel, name) {
            (Channel::Email, "sendgrid") => {
                let config = config
                    .sendgrid
                    .clone()
                    .ok_or("sendgrid: EMAIL_FROM is not set")?;
                let provider =
                    SendGrid::new(config, secrets, sandbox).map_err(|e| e.to_string())?;
                let uses = owned(provider.secrets());
                self.add(channel, provider, uses);
            }
            (Channel::Email, "smtp") => {
                let config = config.smtp.clone().ok_or("smtp: SMTP_HOST is not set")?;
                let provider = Smtp::new(config, secrets).map_err(|e| e.to_string())?;
                let uses = owned(provider.secrets());
                self.add(channel, provider, uses);
            }
            (Channel::Sms, "twilio" | "twilio-secondary") => {
                let account = if name == "twilio" {
                    config.twilio.clone()
                } else {
                    match (&config.twilio_secondary, sandbox) {
                        (Some(c), _) => c.clone(),
                        // In sandbox the sender is Twilio's test number: no setting needed.
                        (None, true) => TwilioConfig {
                            base_url: config.twilio.base_url.clone(),
                            timeout: config.twilio.timeout,
                            ..TwilioConfig::secondary()
                        },
                        (None, false) => {
                            return Err("twilio-secondary: set TWILIO_SECONDARY_FROM or TWILIO_SECONDARY_MESSAGING_SERVICE_SID".into())
                        }
                    }
                };
                let provider = Twilio::new(account, secrets, sandbox)
                    .map_err(|e| format!("{e} (TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID)"))?;
                let uses = owned(provider.secrets());
                self.add(channel, provider, uses);
            }
            // Reported by `DeliveryOptions::problems`.
            _ => {}
        }
        Ok(())
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

fn owned(uses: Vec<SecretUse<'_>>) -> Vec<(String, bool)> {
    uses.into_iter()
        .map(|u| (u.name.to_owned(), u.required))
        .collect()
}
