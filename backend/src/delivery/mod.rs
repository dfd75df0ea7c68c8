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

use crate::db::Db;
use crate::metrics::Metrics;
use circuit::Circuits;
use config::DeliveryOptions;
use registry::Providers;
use worker::{Worker, WorkerSettings};

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

/// A name for this process's workers, unique across replicas and restarts.
fn process_tag() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "backend".to_owned());
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
