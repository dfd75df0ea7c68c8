//! The secrets report both binaries' `check` print (and `run` logs): for each requirement,
//! where its value came from, or — for a missing required one — an `error:` line naming it
//! and every source tried. Never a value: a report is built from names, origins and
//! reasons only.
//!
//! ```text
//! secrets: looked up in Google Secret Manager (project p, …), then files in /run/secrets, then environment variables
//! secret GARDIEN_INTERNAL_SECRET: Google Secret Manager (projects/p/secrets/GARDIEN_INTERNAL_SECRET/versions/4)
//! secret JWT_SECRET: file /run/secrets/JWT_SECRET (after Google Secret Manager projects/p/secrets/JWT_SECRET/versions/latest: failed: 503 UNAVAILABLE: …)
//! secret SENTRY_DSN: not set (optional: error reporting)
//! error: secret DATABASE_URL: missing (required: the database); tried Google Secret Manager …: absent; file /run/secrets/DATABASE_URL: absent; environment variable DATABASE_URL: absent
//! error: 1 required secret(s) missing: DATABASE_URL
//! ```

use std::fmt;

use crate::chain::{Attempt, AttemptOutcome};
use crate::source::Origin;

/// One requirement's line.
#[derive(Debug, Clone)]
pub struct ReportEntry {
    pub name: String,
    pub required: bool,
    pub purpose: String,
    /// `None`: no source had it.
    pub origin: Option<Origin>,
    /// The sources tried at the last lookup.
    pub attempts: Vec<Attempt>,
    /// Set when the last refresh failed and an earlier value is still used.
    pub stale: Option<String>,
}

/// The report over a set of requirements.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The chain's sources, in order.
    pub sources: Vec<String>,
    pub entries: Vec<ReportEntry>,
}

fn joined(attempts: &[&Attempt]) -> String {
    attempts
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Report {
    /// The required secrets no source had, by name.
    pub fn missing(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| e.required && e.origin.is_none())
            .map(|e| e.name.as_str())
            .collect()
    }

    /// Every required secret was found.
    pub fn is_complete(&self) -> bool {
        self.missing().is_empty()
    }

    /// The lines for standard output: the sources, and one line per secret found or
    /// optional.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.entries.len() + 1);
        if !self.sources.is_empty() {
            lines.push(format!(
                "secrets: looked up in {}",
                self.sources.join(", then ")
            ));
        }
        for entry in &self.entries {
            let failures: Vec<&Attempt> = entry
                .attempts
                .iter()
                .filter(|a| matches!(a.outcome, AttemptOutcome::Failed(_)))
                .collect();
            let after = if failures.is_empty() {
                String::new()
            } else {
                format!(" (after {})", joined(&failures))
            };
            match (&entry.origin, &entry.stale) {
                (Some(origin), Some(reason)) => lines.push(format!(
                    "secret {}: {origin} (kept from an earlier lookup; the last refresh failed: {reason})",
                    entry.name
                )),
                (Some(origin), None) => {
                    lines.push(format!("secret {}: {origin}{after}", entry.name))
                }
                (None, _) if !entry.required => lines.push(format!(
                    "secret {}: not set (optional{}){after}",
                    entry.name,
                    if entry.purpose.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", entry.purpose)
                    }
                )),
                (None, _) => {}
            }
        }
        lines
    }

    /// The lines for standard error: one `error:` line per missing required secret, and a
    /// last line listing them all. Empty when nothing is missing.
    pub fn error_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for entry in self
            .entries
            .iter()
            .filter(|e| e.required && e.origin.is_none())
        {
            let tried: Vec<&Attempt> = entry.attempts.iter().collect();
            lines.push(format!(
                "error: secret {}: missing (required{}); tried {}",
                entry.name,
                if entry.purpose.is_empty() {
                    String::new()
                } else {
                    format!(": {}", entry.purpose)
                },
                if tried.is_empty() {
                    "no source".to_owned()
                } else {
                    joined(&tried)
                }
            ));
        }
        let missing = self.missing();
        if !missing.is_empty() {
            lines.push(format!(
                "error: {} required secret(s) missing: {}",
                missing.len(),
                missing.join(", ")
            ));
        }
        lines
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.lines().iter().chain(self.error_lines().iter()) {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}
