//! The cache both binaries read secrets from: the resolved values of a set of
//! requirements, looked up again on an interval so a rotated value is picked up without a
//! restart, and published to subscribers (a `watch` of a version number).
//!
//! A refresh never loses a value: when the source a value came from fails (Secret Manager
//! down, a bad checksum), the last good value stays — the failure is logged and counted —
//! rather than silently falling back to an older copy in a file or variable. A value
//! moves to a later source only when its own source says the secret is gone (a 404, a
//! removed file), and to an earlier one as soon as that one has it.
//!
//! A requirement marked `forget_when_removed` is the exception: once every source says it
//! is gone (none failing), its value is dropped.
//!
//! When a refresh changes a value, the value before is kept with the time of the change
//! ([`PreviousValue`], one per name: the next change replaces it), so a rotation can be
//! honoured on both sides for a while (`SecretLookup::previous`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::chain::{Attempt, AttemptOutcome, Chain, Resolution};
use crate::report::{Report, ReportEntry};
use crate::requirement::{dedupe, Requirement};
use crate::source::Origin;
use crate::{ChainConfig, Environment, PreviousValue, ProcessVars, Secret, SecretLookup, Vars};

#[derive(Debug, Default)]
struct Entry {
    value: Option<Secret>,
    origin: Option<Origin>,
    /// The place in the chain of the source `value` came from.
    source: Option<usize>,
    attempts: Vec<Attempt>,
    /// Why the last refresh kept an earlier value.
    stale: Option<String>,
    /// The value before the last change, and when it changed.
    previous: Option<PreviousValue>,
}

#[derive(Debug, Default)]
struct State {
    requirements: Vec<Requirement>,
    entries: HashMap<String, Entry>,
}

/// What one refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshSummary {
    /// Names whose value changed (rotated, or found for the first time).
    pub changed: Vec<String>,
    /// Names whose refresh failed; their last good value stays.
    pub failed: Vec<String>,
}

/// What a refresh does with a new resolution.
enum Applied {
    Changed,
    Unchanged,
    Kept(String),
}

/// Resolved secrets, refreshed in the background. Implements [`SecretLookup`].
#[derive(Debug)]
pub struct SecretStore {
    chain: Chain,
    refresh_interval: Duration,
    state: RwLock<State>,
    changes: watch::Sender<u64>,
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
}

impl SecretStore {
    /// The store a process runs with: the chain configured from the process environment
    /// for `environment` (docs/SECRETS.md). `Err` lists every configuration problem.
    pub fn for_process(environment: Environment) -> Result<std::sync::Arc<Self>, Vec<String>> {
        let vars: std::sync::Arc<dyn Vars> = std::sync::Arc::new(ProcessVars);
        let config = ChainConfig::from_vars(&*vars, environment)?;
        let chain = Chain::from_config(&config, vars).map_err(|e| vec![e])?;
        Ok(std::sync::Arc::new(SecretStore::new(
            chain,
            config.refresh_interval,
        )))
    }

    pub fn new(chain: Chain, refresh_interval: Duration) -> Self {
        let (changes, _) = watch::channel(0);
        SecretStore {
            chain,
            refresh_interval,
            state: RwLock::new(State::default()),
            changes,
            refreshes: AtomicU64::new(0),
            refresh_failures: AtomicU64::new(0),
        }
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    pub fn refresh_interval(&self) -> Duration {
        self.refresh_interval
    }

    /// Adds `requirements` to the set kept fresh, looks up the ones not seen before (all at
    /// once: each source bounds its own time), and reports on exactly these requirements.
    pub async fn require(&self, requirements: impl IntoIterator<Item = Requirement>) -> Report {
        let requirements = dedupe(requirements);
        let new: Vec<String> = {
            let mut state = self.state.write();
            let mut new = Vec::new();
            for requirement in &requirements {
                match state
                    .requirements
                    .iter_mut()
                    .find(|r| r.name == requirement.name)
                {
                    Some(existing) => existing.merge(requirement),
                    None => {
                        state.requirements.push(requirement.clone());
                        new.push(requirement.name.clone());
                    }
                }
            }
            new
        };
        let resolutions = join_all(new.iter().map(|name| self.chain.resolve(name))).await;
        let mut changed = false;
        {
            let mut state = self.state.write();
            for resolution in resolutions {
                let entry = state.entries.entry(resolution.name.clone()).or_default();
                if entry.value.is_none() {
                    changed |= resolution.found.is_some();
                    *entry = fresh_entry(resolution);
                }
            }
        }
        if changed {
            self.changes.send_modify(|v| *v += 1);
        }
        self.report_on(&requirements)
    }

    /// The report over every requirement so far.
    pub fn report(&self) -> Report {
        let requirements = self.state.read().requirements.clone();
        self.report_on(&requirements)
    }

    fn report_on(&self, requirements: &[Requirement]) -> Report {
        let state = self.state.read();
        let mut entries = Vec::with_capacity(requirements.len());
        for requirement in requirements {
            // The merged requirement: required if any caller needs it.
            let merged = state
                .requirements
                .iter()
                .find(|r| r.name == requirement.name)
                .unwrap_or(requirement);
            let entry = state.entries.get(&requirement.name);
            entries.push(ReportEntry {
                name: merged.name.clone(),
                required: merged.required,
                purpose: merged.purpose.clone(),
                origin: entry.and_then(|e| e.origin.clone()),
                attempts: entry.map(|e| e.attempts.clone()).unwrap_or_default(),
                stale: entry.and_then(|e| e.stale.clone()),
            });
        }
        Report {
            sources: self.chain.describe(),
            entries,
        }
    }

    /// Looks every requirement up again; publishes a new version when a value changed.
    pub async fn refresh(&self) -> RefreshSummary {
        let (names, forget): (Vec<String>, Vec<bool>) = self
            .state
            .read()
            .requirements
            .iter()
            .map(|r| (r.name.clone(), r.forget_when_removed))
            .unzip();
        let resolutions = join_all(names.iter().map(|name| self.chain.resolve(name))).await;
        let mut summary = RefreshSummary::default();
        {
            let mut state = self.state.write();
            for (resolution, forget) in resolutions.into_iter().zip(forget) {
                let name = resolution.name.clone();
                let entry = state.entries.entry(name.clone()).or_default();
                if forget && forgets(entry, &resolution) {
                    tracing::info!(
                        secret = name.as_str(),
                        "secret removed from every source; it is no longer in use"
                    );
                    *entry = Entry {
                        attempts: resolution.attempts,
                        ..Entry::default()
                    };
                    summary.changed.push(name);
                    continue;
                }
                match apply(entry, resolution) {
                    Applied::Changed => {
                        tracing::info!(
                            secret = name.as_str(),
                            origin = %entry.origin.as_ref().map(ToString::to_string).unwrap_or_default(),
                            "secret changed; the new value is in use"
                        );
                        summary.changed.push(name);
                    }
                    Applied::Unchanged => {}
                    Applied::Kept(reason) => {
                        tracing::warn!(
                            secret = name.as_str(),
                            reason = reason.as_str(),
                            "secret refresh failed; keeping the last good value"
                        );
                        summary.failed.push(name);
                    }
                }
            }
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        self.refresh_failures
            .fetch_add(summary.failed.len() as u64, Ordering::Relaxed);
        if !summary.changed.is_empty() {
            self.changes.send_modify(|v| *v += 1);
        }
        summary
    }

    /// Refreshes every `refresh_interval`, forever: run it in a task, or `select!` it with
    /// a shutdown signal.
    pub async fn keep_fresh(&self) {
        let mut ticker = tokio::time::interval(self.refresh_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; the values are fresh already
        loop {
            ticker.tick().await;
            self.refresh().await;
        }
    }

    /// A receiver whose value changes each time a secret's value does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Refreshes done so far.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Secret refreshes that failed and kept a last good value, so far.
    pub fn refresh_failures(&self) -> u64 {
        self.refresh_failures.load(Ordering::Relaxed)
    }
}

fn fresh_entry(resolution: Resolution) -> Entry {
    match resolution.found {
        Some((value, origin, source)) => Entry {
            value: Some(value),
            origin: Some(origin),
            source: Some(source),
            attempts: resolution.attempts,
            stale: None,
            previous: None,
        },
        None => Entry {
            attempts: resolution.attempts,
            ..Entry::default()
        },
    }
}

/// Whether a value to forget when removed is gone: every source answered, none has it,
/// and the one it came from says so (not a failure).
fn forgets(entry: &Entry, resolution: &Resolution) -> bool {
    let Some(source) = entry.source else {
        return false;
    };
    entry.value.is_some()
        && resolution.found.is_none()
        && matches!(resolution.outcome_at(source), Some(AttemptOutcome::Absent))
        && resolution.failures().next().is_none()
}

/// The refresh rule (see the module's documentation).
fn apply(entry: &mut Entry, resolution: Resolution) -> Applied {
    let (Some(current_source), Some(current)) = (entry.source, entry.value.clone()) else {
        let found = resolution.found.is_some();
        *entry = fresh_entry(resolution);
        return if found {
            Applied::Changed
        } else {
            Applied::Unchanged
        };
    };
    let takes_over = match &resolution.found {
        Some((_, _, index)) if *index <= current_source => Ok(()),
        Some(_) | None => match resolution.outcome_at(current_source) {
            Some(AttemptOutcome::Absent) if resolution.found.is_some() => Ok(()),
            Some(AttemptOutcome::Failed(reason)) => Err(reason.clone()),
            _ => Err(format!(
                "no source has it any more (tried {})",
                resolution
                    .attempts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        },
    };
    match takes_over {
        Ok(()) => {
            let changed = resolution.found.as_ref().is_some_and(|(value, origin, _)| {
                *value != current || Some(origin) != entry.origin.as_ref()
            });
            let rotated = resolution
                .found
                .as_ref()
                .is_some_and(|(value, _, _)| *value != current);
            let previous = if rotated {
                Some(PreviousValue::new(current, Instant::now()))
            } else {
                entry.previous.take()
            };
            *entry = fresh_entry(resolution);
            entry.previous = previous;
            if changed {
                Applied::Changed
            } else {
                Applied::Unchanged
            }
        }
        Err(reason) => {
            let location = resolution
                .attempts
                .iter()
                .find(|a| a.source == current_source)
                .map(|a| a.location.clone())
                .unwrap_or_default();
            let reason = if location.is_empty() {
                reason
            } else {
                format!("{location}: {reason}")
            };
            entry.attempts = resolution.attempts;
            entry.stale = Some(reason.clone());
            Applied::Kept(reason)
        }
    }
}

impl SecretStore {
    /// Every value resolved now, for the one use that needs them all: scrubbing them out of
    /// error reports before they leave the process (`gardien-telemetry`).
    pub fn values(&self) -> Vec<Secret> {
        self.state
            .read()
            .entries
            .values()
            .flat_map(|e| {
                let previous = e.previous.as_ref().map(|p| p.value().clone());
                e.value.clone().into_iter().chain(previous)
            })
            .collect()
    }
}

impl SecretLookup for SecretStore {
    fn get(&self, name: &str) -> Option<Secret> {
        self.state
            .read()
            .entries
            .get(name)
            .and_then(|e| e.value.clone())
    }

    fn previous(&self, name: &str) -> Option<PreviousValue> {
        self.state
            .read()
            .entries
            .get(name)
            .and_then(|e| e.previous.clone())
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(self.refresh_interval)
    }
}
