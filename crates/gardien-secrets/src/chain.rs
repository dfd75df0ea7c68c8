//! The chain: sources asked in order until one has the secret. A source that fails does not
//! stop the lookup — the next one is asked — but its failure is recorded, so the report can
//! say that a value came from a file *because* Secret Manager was down.

use std::fmt;
use std::sync::Arc;

use crate::config::ChainConfig;
use crate::dev_defaults::DevDefaults;
use crate::env::EnvSource;
use crate::file::FileSource;
use crate::google::SecretManagerSource;
use crate::source::{Fetched, Origin, SecretSource};
use crate::{Environment, Secret, Vars};

/// What one source answered for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Found,
    Absent,
    Failed(String),
}

/// One source tried for one name. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The source's place in the chain (0 = first).
    pub source: usize,
    /// Where it looked: `file /run/secrets/JWT_SECRET`.
    pub location: String,
    pub outcome: AttemptOutcome,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            AttemptOutcome::Found => write!(f, "{}: found", self.location),
            AttemptOutcome::Absent => write!(f, "{}: absent", self.location),
            AttemptOutcome::Failed(reason) => write!(f, "{}: failed: {reason}", self.location),
        }
    }
}

/// A secret looked up through the chain: its value and origin when a source had it, and
/// every source tried on the way.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub name: String,
    /// The value, where it came from, and that source's place in the chain.
    pub found: Option<(Secret, Origin, usize)>,
    pub attempts: Vec<Attempt>,
}

impl Resolution {
    /// The outcome of the source at `index`, if it was asked.
    pub fn outcome_at(&self, index: usize) -> Option<&AttemptOutcome> {
        self.attempts
            .iter()
            .find(|a| a.source == index)
            .map(|a| &a.outcome)
    }

    /// The failures on the way, for the report.
    pub fn failures(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(|a| matches!(a.outcome, AttemptOutcome::Failed(_)))
    }
}

/// The ordered sources.
#[derive(Debug)]
pub struct Chain {
    sources: Vec<Arc<dyn SecretSource>>,
    environment: Environment,
}

impl Chain {
    /// A chain of exactly `sources`, in that order (tests build their own).
    pub fn new(sources: Vec<Arc<dyn SecretSource>>, environment: Environment) -> Self {
        Chain {
            sources,
            environment,
        }
    }

    /// The documented chain: Secret Manager when a project is configured, files, the
    /// environment (read through `vars`), and development defaults in `dev` only (unless
    /// turned off).
    pub fn from_config(config: &ChainConfig, vars: Arc<dyn Vars>) -> Result<Self, String> {
        let mut sources: Vec<Arc<dyn SecretSource>> = Vec::with_capacity(4);
        if let Some(sm) = &config.secret_manager {
            sources.push(Arc::new(SecretManagerSource::new(sm)?));
        }
        sources.push(Arc::new(FileSource::new(config.secrets_dir.clone())));
        sources.push(Arc::new(EnvSource::new(vars)));
        if config.dev_defaults {
            sources.push(Arc::new(DevDefaults));
        }
        Ok(Chain::new(sources, config.environment))
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The sources, described in order: what the report's header lists.
    pub fn describe(&self) -> Vec<String> {
        self.sources.iter().map(|s| s.describe()).collect()
    }

    /// Asks each source in order until one has `name`.
    pub async fn resolve(&self, name: &str) -> Resolution {
        let mut attempts = Vec::with_capacity(self.sources.len());
        for (index, source) in self.sources.iter().enumerate() {
            let location = source.location(name);
            match source.fetch(name).await {
                Fetched::Found(value, origin) => {
                    attempts.push(Attempt {
                        source: index,
                        location,
                        outcome: AttemptOutcome::Found,
                    });
                    return Resolution {
                        name: name.to_owned(),
                        found: Some((value, origin, index)),
                        attempts,
                    };
                }
                Fetched::Absent => attempts.push(Attempt {
                    source: index,
                    location,
                    outcome: AttemptOutcome::Absent,
                }),
                Fetched::Failed(reason) => attempts.push(Attempt {
                    source: index,
                    location,
                    outcome: AttemptOutcome::Failed(reason),
                }),
            }
        }
        Resolution {
            name: name.to_owned(),
            found: None,
            attempts,
        }
    }
}
