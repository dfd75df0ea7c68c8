//! Delivery settings: the mode, the provider list of each channel, the workers, retries and
//! circuits. Every option also reads an environment variable (`NOTIFY_*`); the providers'
//! own settings (base URLs, senders, SMTP host) are read by `providers::config`.

use std::time::Duration;

use clap::{Args, ValueEnum};
use gardien_secrets::catalog::EnvVar;

use crate::config::{parse_duration, Environment};
use crate::delivery::backoff::Backoff;
use crate::delivery::fallback::RetryPolicy;
use crate::delivery::provider::Channel;
use crate::delivery::providers::declaration;

/// What delivery does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NotifyMode {
    /// Real providers, real messages.
    Live,
    /// Real providers in their test modes: SendGrid `sandbox_mode` (validated, not
    /// delivered), Twilio test credentials with `From=+15005550006`.
    Sandbox,
    /// Nothing leaves the process: the rendered message is recorded in the outbox and
    /// logged (recipients masked).
    Log,
}

impl NotifyMode {
    pub const fn name(self) -> &'static str {
        match self {
            NotifyMode::Live => "live",
            NotifyMode::Sandbox => "sandbox",
            NotifyMode::Log => "log",
        }
    }
}

/// The variables [`DeliveryOptions`] reads (each option's `env`), for `gardien-backend env-docs`.
pub const NOTIFY_MODE: EnvVar = EnvVar::plain("NOTIFY_MODE", "", "`live`, `sandbox` (the providers' test modes) or `log` (nothing leaves the process) ([DELIVERY.md](DELIVERY.md#configuration))")
    .per_environment("`log`", "`sandbox`", "`live`");
pub const NOTIFY_EMAIL_PROVIDERS: EnvVar = EnvVar::plain("NOTIFY_EMAIL_PROVIDERS", "those configured, SendGrid first", "email providers in order of preference (`sendgrid`, `smtp`), comma-separated, or `none` to turn email off (`EMAIL_FROM` configures SendGrid, `SMTP_HOST` SMTP)");
pub const NOTIFY_SMS_PROVIDERS: EnvVar = EnvVar::plain("NOTIFY_SMS_PROVIDERS", "those configured", "sms providers in order of preference (`twilio`, `twilio-secondary`), or `none` to turn sms off (a sender configures each; in sandbox `twilio` needs none)");
pub const NOTIFY_WORKERS: EnvVar = EnvVar::plain("NOTIFY_WORKERS", "`1`", "delivery workers in this process (`0`: this replica only accepts); SQLite takes one, PostgreSQL any number on any number of replicas");
pub const NOTIFY_BATCH: EnvVar =
    EnvVar::plain("NOTIFY_BATCH", "`32`", "rows a worker claims at once");
pub const NOTIFY_CONCURRENCY: EnvVar = EnvVar::plain(
    "NOTIFY_CONCURRENCY",
    "`8`",
    "messages a worker hands to providers at the same time",
);
pub const NOTIFY_POLL_INTERVAL: EnvVar = EnvVar::plain(
    "NOTIFY_POLL_INTERVAL",
    "`1s`",
    "how often an idle worker looks for due rows (new notifications wake it at once)",
);
pub const NOTIFY_LEASE: EnvVar = EnvVar::plain("NOTIFY_LEASE", "`60s`", "how long a claimed row is a worker's; a row whose worker died is claimed again after it (longer than the provider timeout)");
pub const NOTIFY_PROVIDER_TIMEOUT: EnvVar = EnvVar::plain(
    "NOTIFY_PROVIDER_TIMEOUT",
    "`10s`",
    "longest wait for one provider call",
);
pub const NOTIFY_ATTEMPTS_PER_PROVIDER: EnvVar = EnvVar::plain(
    "NOTIFY_ATTEMPTS_PER_PROVIDER",
    "`3`",
    "attempts on one provider before the next one is tried",
);
pub const NOTIFY_RETRY_BASE: EnvVar = EnvVar::plain(
    "NOTIFY_RETRY_BASE",
    "`2s`",
    "first retry delay; it doubles with each failure",
);
pub const NOTIFY_RETRY_MAX: EnvVar =
    EnvVar::plain("NOTIFY_RETRY_MAX", "`5m`", "longest retry delay");
pub const NOTIFY_MAX_RETRY_AFTER: EnvVar = EnvVar::plain("NOTIFY_MAX_RETRY_AFTER", "`10m`", "a provider asking to wait longer than this (`Retry-After`, `X-RateLimit-Reset`) is passed over for the next one");
pub const NOTIFY_CIRCUIT_COOLDOWN: EnvVar = EnvVar::plain(
    "NOTIFY_CIRCUIT_COOLDOWN",
    "`60s`",
    "how long a provider's circuit stays open",
);
pub const NOTIFY_CIRCUIT_FAILURES: EnvVar = EnvVar::plain(
    "NOTIFY_CIRCUIT_FAILURES",
    "`5`",
    "retryable failures in a row that open a provider's circuit",
);

/// Every `NOTIFY_*` variable, in the order docs/ENVIRONMENT.md lists them.
pub const DELIVERY_VARS: [EnvVar; 15] = [
    NOTIFY_MODE,
    NOTIFY_EMAIL_PROVIDERS,
    NOTIFY_SMS_PROVIDERS,
    NOTIFY_WORKERS,
    NOTIFY_BATCH,
    NOTIFY_CONCURRENCY,
    NOTIFY_POLL_INTERVAL,
    NOTIFY_LEASE,
    NOTIFY_PROVIDER_TIMEOUT,
    NOTIFY_ATTEMPTS_PER_PROVIDER,
    NOTIFY_RETRY_BASE,
    NOTIFY_RETRY_MAX,
    NOTIFY_MAX_RETRY_AFTER,
    NOTIFY_CIRCUIT_COOLDOWN,
    NOTIFY_CIRCUIT_FAILURES,
];

/// The one name in a channel's list that turns the channel off: its notifications are
/// skipped (`channel_off`) instead of failing for want of a provider.
pub const OFF: &str = "none";

/// The variable holding `channel`'s provider list.
pub const fn list_variable(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => NOTIFY_EMAIL_PROVIDERS.name,
        Channel::Sms => NOTIFY_SMS_PROVIDERS.name,
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// `NOTIFY_*`.
#[derive(Debug, Clone, Args)]
pub struct DeliveryOptions {
    /// `live`, `sandbox` or `log`. Default: `log` in dev, `sandbox` in staging, `live` in
    /// production.
    #[arg(long = "notify-mode", env = NOTIFY_MODE.name, value_enum)]
    pub mode: Option<NotifyMode>,
    /// Email providers, in order of preference (`sendgrid`, `smtp`), or `none` to turn
    /// email off. Default: those configured, SendGrid first (`EMAIL_FROM` configures
    /// SendGrid, `SMTP_HOST` SMTP).
    #[arg(
        long = "notify-email-providers",
        env = NOTIFY_EMAIL_PROVIDERS.name,
        value_delimiter = ','
    )]
    pub email_providers: Option<Vec<String>>,
    /// SMS providers, in order of preference (`twilio`, `twilio-secondary`), or `none` to
    /// turn sms off. Default: those
    /// configured (a sender — `TWILIO_FROM` or `TWILIO_MESSAGING_SERVICE_SID`, and the
    /// `TWILIO_SECONDARY_` ones — configures each; in sandbox `twilio` needs none).
    #[arg(
        long = "notify-sms-providers",
        env = NOTIFY_SMS_PROVIDERS.name,
        value_delimiter = ','
    )]
    pub sms_providers: Option<Vec<String>>,
    /// Delivery workers in this process (0: none, this replica only accepts). SQLite takes
    /// one; on PostgreSQL any number, on any number of replicas.
    #[arg(long = "notify-workers", env = NOTIFY_WORKERS.name, default_value_t = 1)]
    pub workers: usize,
    /// Rows a worker claims at once.
    #[arg(long = "notify-batch", env = NOTIFY_BATCH.name, default_value_t = 32)]
    pub batch: usize,
    /// Messages a worker hands to providers at the same time.
    #[arg(
        long = "notify-concurrency",
        env = NOTIFY_CONCURRENCY.name,
        default_value_t = 8
    )]
    pub concurrency: usize,
    /// How often an idle worker looks for due rows (new notifications wake it at once).
    #[arg(long = "notify-poll-interval", env = NOTIFY_POLL_INTERVAL.name, default_value = "1s", value_parser = duration)]
    pub poll_interval: Duration,
    /// How long a claimed row is a worker's; a row whose worker died is claimed again
    /// after it. Longer than the provider timeout.
    #[arg(long = "notify-lease", env = NOTIFY_LEASE.name, default_value = "60s", value_parser = duration)]
    pub lease: Duration,
    /// Longest wait for one provider call.
    #[arg(long = "notify-provider-timeout", env = NOTIFY_PROVIDER_TIMEOUT.name, default_value = "10s", value_parser = duration)]
    pub provider_timeout: Duration,
    /// Attempts on one provider before the next one is tried.
    #[arg(
        long = "notify-attempts-per-provider",
        env = NOTIFY_ATTEMPTS_PER_PROVIDER.name,
        default_value_t = 3
    )]
    pub attempts_per_provider: u32,
    /// First retry delay; it doubles with each failure.
    #[arg(long = "notify-retry-base", env = NOTIFY_RETRY_BASE.name, default_value = "2s", value_parser = duration)]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[arg(long = "notify-retry-max", env = NOTIFY_RETRY_MAX.name, default_value = "5m", value_parser = duration)]
    pub retry_max: Duration,
    /// A provider asking to wait longer than this (`Retry-After`, `X-RateLimit-Reset`) is
    /// passed over for the next one.
    #[arg(long = "notify-max-retry-after", env = NOTIFY_MAX_RETRY_AFTER.name, default_value = "10m", value_parser = duration)]
    pub max_retry_after: Duration,
    /// How long a provider's circuit stays open.
    #[arg(long = "notify-circuit-cooldown", env = NOTIFY_CIRCUIT_COOLDOWN.name, default_value = "60s", value_parser = duration)]
    pub circuit_cooldown: Duration,
    /// Retryable failures in a row that open a provider's circuit.
    #[arg(
        long = "notify-circuit-failures",
        env = NOTIFY_CIRCUIT_FAILURES.name,
        default_value_t = 5
    )]
    pub circuit_failures: u32,
}

impl DeliveryOptions {
    /// The mode: the one set, else the environment's default.
    pub fn mode_for(&self, environment: Environment) -> NotifyMode {
        self.mode.unwrap_or(match environment {
            Environment::Dev => NotifyMode::Log,
            Environment::Staging => NotifyMode::Sandbox,
            Environment::Production => NotifyMode::Live,
        })
    }

    /// The provider names of `channel` the options set, in order (`None`: the default).
    pub fn providers(&self, channel: Channel) -> Option<&[String]> {
        match channel {
            Channel::Email => self.email_providers.as_deref(),
            Channel::Sms => self.sms_providers.as_deref(),
        }
    }

    /// Whether the operator turned `channel` off (`NOTIFY_<CHANNEL>_PROVIDERS=none`).
    pub fn channel_off(&self, channel: Channel) -> bool {
        self.providers(channel)
            .is_some_and(|names| names.iter().any(|n| n.trim() == OFF))
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts_per_provider: self.attempts_per_provider,
            backoff: Backoff {
                base: self.retry_base,
                max: self.retry_max,
            },
            max_retry_after: self.max_retry_after,
        }
    }

    /// Every problem, by variable name.
    pub fn problems(&self, sqlite: bool) -> Vec<String> {
        let mut problems = Vec::new();
        for channel in Channel::ALL {
            let variable = list_variable(channel);
            let known = declaration::listable_names(channel);
            let Some(names) = self.providers(channel) else {
                continue;
            };
            if names.iter().all(|n| n.trim().is_empty()) {
                problems.push(format!(
                    "{variable}: name at least one of {}, or `{OFF}` to turn {} off",
                    known.join(", "),
                    channel.name()
                ));
            }
            if self.channel_off(channel) && names.len() > 1 {
                problems.push(format!(
                    "{variable}: `{OFF}` turns {} off and stands alone",
                    channel.name()
                ));
                continue;
            }
            for (i, name) in names.iter().enumerate() {
                let name = name.trim();
                if name == OFF {
                    continue;
                }
                if !known.contains(&name) {
                    problems.push(format!(
                        "{variable}: unknown provider `{name}`; known: {}",
                        known.join(", ")
                    ));
                } else if names[..i].iter().any(|n| n.trim() == name) {
                    problems.push(format!("{variable}: `{name}` is named twice"));
                }
            }
        }
        if sqlite && self.workers > 1 {
            problems.push(
                "NOTIFY_WORKERS: SQLite has one writer, so one delivery worker; use PostgreSQL for more"
                    .into(),
            );
        }
        for (value, variable) in [
            (self.batch, "NOTIFY_BATCH"),
            (self.concurrency, "NOTIFY_CONCURRENCY"),
        ] {
            if value == 0 {
                problems.push(format!("{variable}: must be at least 1"));
            }
        }
        if self.attempts_per_provider == 0 {
            problems.push("NOTIFY_ATTEMPTS_PER_PROVIDER: must be at least 1".into());
        }
        if self.poll_interval.is_zero() {
            problems.push("NOTIFY_POLL_INTERVAL: must be more than 0".into());
        }
        if self.provider_timeout.is_zero() {
            problems.push("NOTIFY_PROVIDER_TIMEOUT: must be more than 0".into());
        }
        if self.lease <= self.provider_timeout {
            problems.push(format!(
                "NOTIFY_LEASE: {:?} must be longer than NOTIFY_PROVIDER_TIMEOUT ({:?}), or a slow send would be claimed again while in flight",
                self.lease, self.provider_timeout
            ));
        }
        if self.retry_base.is_zero() || self.retry_max < self.retry_base {
            problems.push(
                "NOTIFY_RETRY_BASE / NOTIFY_RETRY_MAX: base more than 0 and at most the max".into(),
            );
        }
        problems
    }
}
