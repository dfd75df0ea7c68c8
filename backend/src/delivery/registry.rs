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

/// One built provider and the secrets it reads.
#[derive(Debug, Clone)]
pub struct Entry {
    pub provider: Arc<dyn Provider>,
    /// `(name, required by the provider)`.
    pub secrets: Vec<(String, bool)>,
}

/// Each channel's ordered provider list.
#[derive(Debug, Default, Clone)]
pub struct Providers {
    email: Vec<Entry>,
    sms: Vec<Entry>,
    email_list: Vec<Arc<dyn Provider>>,
    sms_list: Vec<Arc<dyn Provider>>,
}

fn uses(secrets: Vec<SecretUse<'_>>) -> Vec<(String, bool)> {
    secrets
        .into_iter()
        .map(|s| (s.name.to_owned(), s.required))
        .collect()
}

impl Providers {
    /// Lists without secrets to report (tests, the log mode).
    pub fn new(email: Vec<Arc<dyn Provider>>, sms: Vec<Arc<dyn Provider>>) -> Self {
        let entries = |list: &[Arc<dyn Provider>]| {
            list.iter()
                .map(|p| Entry {
                    provider: Arc::clone(p),
                    secrets: Vec::new(),
                })
                .collect()
        };
        Providers {
            email: entries(&email),
            sms: entries(&sms),
            email_list: email,
            sms_list: sms,
        }
    }

    fn from_entries(email: Vec<Entry>, sms: Vec<Entry>) -> Self {
        Providers {
            email_list: email.iter().map(|e| Arc::clone(&e.provider)).collect(),
            sms_list: sms.iter().map(|e| Arc::clone(&e.provider)).collect(),
            email,
            sms,
        }
    }

    /// Builds every channel's list for `mode`; every problem at once, by variable.
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
        let mut problems = Vec::new();
        let email_names: Vec<String> = match options.providers(Channel::Email) {
            Some(names) => names.iter().map(|n| n.trim().to_owned()).collect(),
            None => [
                config.sendgrid.as_ref().map(|_| "sendgrid"),
                config.smtp.as_ref().map(|_| "smtp"),
            ]
            .into_iter()
            .flatten()
            .map(str::to_owned)
            .collect(),
        };
        let sms_names: Vec<String> = match options.providers(Channel::Sms) {
            Some(names) => names.iter().map(|n| n.trim().to_owned()).collect(),
            None => {
                let primary_configured = sandbox
                    || config.twilio.messaging_service_sid.is_some()
                    || config.twilio.from.is_some();
                [
                    primary_configured.then_some("twilio"),
                    config.twilio_secondary.as_ref().map(|_| "twilio-secondary"),
                ]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect()
            }
        };
        let mut email = Vec::new();
        for name in &email_names {
            let built = match name.as_str() {
                "sendgrid" => match &config.sendgrid {
                    Some(c) => SendGrid::new(c.clone(), Arc::clone(secrets), sandbox)
                        .map(|p| Entry {
                            secrets: uses(p.secrets()),
                            provider: Arc::new(p),
                        })
                        .map_err(|e| e.to_string()),
                    None => Err("sendgrid: EMAIL_FROM is not set".to_owned()),
                },
                "smtp" => match &config.smtp {
                    Some(c) => Smtp::new(c.clone(), Arc::clone(secrets))
                        .map(|p| Entry {
                            secrets: uses(p.secrets()),
                            provider: Arc::new(p),
                        })
                        .map_err(|e| e.to_string()),
                    None => Err("smtp: SMTP_HOST is not set".to_owned()),
                },
                other => Err(format!("unknown email provider `{other}`")),
            };
            match built {
                Ok(entry) => email.push(entry),
                Err(message) => problems.push(format!("NOTIFY_EMAIL_PROVIDERS: {message}")),
            }
        }
        let mut sms = Vec::new();
        for name in &sms_names {
            let config = match name.as_str() {
                "twilio" => Some(config.twilio.clone()),
                "twilio-secondary" => match (&config.twilio_secondary, sandbox) {
                    (Some(c), _) => Some(c.clone()),
                    (None, true) => Some(TwilioConfig {
                        base_url: config.twilio.base_url.clone(),
                        timeout: config.twilio.timeout,
                        ..TwilioConfig::secondary()
                    }),
                    (None, false) => {
                        problems.push("NOTIFY_SMS_PROVIDERS: twilio-secondary: set TWILIO_SECONDARY_FROM or TWILIO_SECONDARY_MESSAGING_SERVICE_SID".into());
                        None
                    }
                },
                other => {
                    problems.push(format!(
                        "NOTIFY_SMS_PROVIDERS: unknown sms provider `{other}`"
                    ));
                    None
                }
            };
            if let Some(config) = config {
                match Twilio::new(config, Arc::clone(secrets), sandbox) {
                    Ok(p) => sms.push(Entry {
                        secrets: uses(p.secrets()),
                        provider: Arc::new(p),
                    }),
                    Err(e) => problems.push(format!(
                        "NOTIFY_SMS_PROVIDERS: {e} (TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID)"
                    )),
                }
            }
        }
        if problems.is_empty() {
            Ok(Providers::from_entries(email, sms))
        } else {
            Err(problems)
        }
    }

    /// `channel`'s providers, first choice first.
    pub fn for_channel(&self, channel: Channel) -> &[Arc<dyn Provider>] {
        match channel {
            Channel::Email => &self.email_list,
            Channel::Sms => &self.sms_list,
        }
    }

    /// Every provider's name, each once.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for entry in self.email.iter().chain(&self.sms) {
            let name = entry.provider.name();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Every secret a provider reads, `(name, required by the provider)`, each once.
    pub fn secrets(&self) -> Vec<(String, bool)> {
        let mut all: Vec<(String, bool)> = Vec::new();
        for (name, required) in self
            .email
            .iter()
            .chain(&self.sms)
            .flat_map(|e| e.secrets.iter())
        {
            match all.iter_mut().find(|(n, _)| n == name) {
                Some(existing) => existing.1 |= *required,
                None => all.push((name.clone(), *required)),
            }
        }
        all
    }
}
