//! Delivery of notifications: the outbox workers, the fallback between a channel's
//! providers (retries with backoff, circuits), and the providers themselves.
//!
//! `POST /api/notifications` writes outbox rows (`crate::notifications`); workers started
//! by [`start_workers`] claim them (`outbox`), call a provider (`providers`), and decide
//! what comes next (`fallback`, `circuit`). See docs/DELIVERY.md for the guarantees.

pub mod backoff;
pub mod circuit;
pub mod config;
pub mod fallback;
pub mod outbox;
pub mod provider;
pub mod providers;
pub mod registry;
pub mod worker;

use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use gardien_secrets::Requirement;

use crate::config::Environment;
use crate::db::Db;
use crate::metrics::Metrics;
use circuit::Circuits;
use config::{DeliveryOptions, NotifyMode};
use provider::Channel;
use registry::Providers;
use worker::{Worker, WorkerSettings};

/// The secrets the providers read, for the store to resolve, report and refresh. Each is
/// required when the provider needs it to send at all and the service runs `live` in
/// production (a missing one refuses the start); otherwise it is reported if missing, and
/// a send without it fails over to the next provider.
pub fn secret_requirements(
    providers: &Providers,
    mode: NotifyMode,
    environment: Environment,
) -> Vec<Requirement> {
    let strict = mode == NotifyMode::Live && environment == Environment::Production;
    let mut requirements: Vec<Requirement> = Vec::new();
    for secret in providers.secrets() {
        let required = secret.needed && strict;
        // Two providers may read one secret: list it once, required if either needs it.
        if let Some(existing) = requirements.iter_mut().find(|r| r.name == secret.name) {
            existing.required |= required;
            continue;
        }
        let purpose = format!("a credential of the {} delivery provider", secret.provider);
        requirements.push(if required {
            Requirement::required(&secret.name, purpose)
        } else {
            Requirement::optional(&secret.name, purpose)
        });
    }
    requirements
}

/// What a channel will send through: off by the operator, nothing configured, or its
/// providers in the order they are tried. Both `check` lines are written from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelState<'a> {
    /// `NOTIFY_<CHANNEL>_PROVIDERS=none`.
    Off,
    /// No provider is configured and the channel is not off.
    Unconfigured,
    Providers(Vec<&'a str>),
}

impl ChannelState<'_> {
    /// `NOTIFY_EMAIL_PROVIDERS=none`, for the words that say a channel is off.
    pub fn off_setting(channel: Channel) -> String {
        format!("{}={}", config::list_variable(channel), config::OFF)
    }
}

/// The state of `channel` under these options and providers.
pub fn channel_state<'a>(
    options: &DeliveryOptions,
    providers: &'a Providers,
    channel: Channel,
) -> ChannelState<'a> {
    if options.channel_off(channel) {
        return ChannelState::Off;
    }
    let names: Vec<&str> = providers
        .for_channel(channel)
        .iter()
        .map(|p| p.name())
        .collect();
    if names.is_empty() {
        ChannelState::Unconfigured
    } else {
        ChannelState::Providers(names)
    }
}

/// Each channel's line for `check` and the start log: its providers, `off` when the
/// operator turned it off, or that it has none.
pub fn channel_report(
    options: &DeliveryOptions,
    providers: &Providers,
    channel: Channel,
) -> String {
    let name = channel.name();
    match channel_state(options, providers, channel) {
        ChannelState::Off => format!("{name}: off ({})", ChannelState::off_setting(channel)),
        ChannelState::Unconfigured => format!("{name}: no provider (not configured)"),
        ChannelState::Providers(names) => format!("{name}: {}", names.join(", ")),
    }
}

/// Outside `dev`, a channel with no provider that the operator did not turn off: every
/// notification on it would fail (`providers_exhausted`), so `check` and the start refuse,
/// naming what to set.
pub fn channel_problems(
    options: &DeliveryOptions,
    providers: &Providers,
    environment: Environment,
) -> Vec<String> {
    if environment == Environment::Dev {
        return Vec::new();
    }
    Channel::ALL
        .into_iter()
        .filter(|c| !options.channel_off(*c) && providers.for_channel(*c).is_empty())
        .map(|channel| {
            format!(
                "{}: no {} provider is configured, so every {} would fail in {environment}; set {}; or turn {} off with {}={}",
                config::list_variable(channel),
                channel.name(),
                channel.name(),
                providers::declaration::setup_hint(channel),
                channel.name(),
                config::list_variable(channel),
                config::OFF,
            )
        })
        .collect()
}

/// Running workers; [`Workers::stop`] asks them to finish their current attempts and waits.
#[derive(Debug)]
pub struct Workers {
    shutdown: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// The host part of the workers' name (Kubernetes sets it to the pod's name).
pub const HOSTNAME: gardien_secrets::catalog::EnvVar = gardien_secrets::catalog::EnvVar::plain(
    "HOSTNAME",
    "`backend`",
    "the host part of each delivery worker's id (`<host>-<pid>-<random>-<n>`, the claim on an outbox row); Kubernetes sets it to the pod's name",
);

/// A name for this process's workers, unique across replicas and restarts.
fn process_tag() -> String {
    let host = std::env::var(HOSTNAME.name).unwrap_or_else(|_| "backend".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// Starts `options.workers` workers over `db`.
pub fn start_workers(
    options: &DeliveryOptions,
    db: &Db,
    providers: Arc<Providers>,
    circuits: Arc<Circuits>,
    metrics: Arc<Metrics>,
    wakeup: Arc<Notify>,
) -> Workers {
    let (shutdown, receiver) = watch::channel(false);
    let settings = WorkerSettings {
        batch: options.batch,
        concurrency: options.concurrency,
        poll_interval: options.poll_interval,
        lease: options.lease,
        provider_timeout: options.provider_timeout,
        retry: options.retry_policy(),
    };
    let tag = process_tag();
    let handles = (0..options.workers)
        .map(|n| {
            let worker = Worker {
                id: format!("{tag}-{n}"),
                db: db.clone(),
                providers: Arc::clone(&providers),
                circuits: Arc::clone(&circuits),
                metrics: Arc::clone(&metrics),
                wakeup: Arc::clone(&wakeup),
                settings: settings.clone(),
            };
            tokio::spawn(worker.run(receiver.clone()))
        })
        .collect();
    Workers { shutdown, handles }
}
