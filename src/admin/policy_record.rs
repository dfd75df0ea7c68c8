//! Which policy file serves, since when, and how the last reload went: what `/status`
//! shows of the policy. Written at start and by each reload, read by the admin app.

use parking_lot::Mutex;
use serde::Serialize;

/// Problems of a refused reload kept for the page (the log has all of them).
const MAX_PROBLEMS: usize = 5;
/// Longest problem message kept, in characters.
const MAX_PROBLEM_CHARS: usize = 300;

/// The serving policy and the last reload's outcome.
#[derive(Debug)]
pub struct PolicyRecord {
    file: String,
    state: Mutex<PolicyState>,
}

/// A copy of the record, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyState {
    /// The content hash of `gardien_policy_info`.
    pub hash: String,
    /// Unix time the serving policy was loaded (start or last applied reload).
    pub loaded_unix_seconds: f64,
    /// `None` until the first reload after start.
    pub last_reload: Option<ReloadOutcome>,
}

/// How one reload ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadOutcome {
    /// `applied` or `refused`, as `gardien_policy_reloads_total` counts them.
    pub result: &'static str,
    pub unix_seconds: f64,
    /// With `refused`: the first problems, `field: message`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// With `refused`: how many problems there were in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem_count: Option<usize>,
}

/// A snapshot of the whole record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    pub file: String,
    #[serde(flatten)]
    pub state: PolicyState,
}

impl PolicyRecord {
    /// The policy `file` (content `hash`) started serving at `unix_seconds`.
    pub fn new(file: String, hash: String, unix_seconds: f64) -> Self {
        PolicyRecord {
            file,
            state: Mutex::new(PolicyState {
                hash,
                loaded_unix_seconds: unix_seconds,
                last_reload: None,
            }),
        }
    }

    /// A reload swapped in the policy of content `hash`.
    pub fn applied(&self, hash: String, unix_seconds: f64) {
        let mut state = self.state.lock();
        state.hash = hash;
        state.loaded_unix_seconds = unix_seconds;
        state.last_reload = Some(ReloadOutcome {
            result: "applied",
            unix_seconds,
            problems: Vec::new(),
            problem_count: None,
        });
    }

    /// A reload was refused for `problems` (`field: message`); the policy serving stays.
    pub fn refused(&self, problems: impl IntoIterator<Item = String>, unix_seconds: f64) {
        let mut count = 0;
        let mut kept = Vec::new();
        for problem in problems {
            count += 1;
            if kept.len() < MAX_PROBLEMS {
                kept.push(shorten(problem));
            }
        }
        self.state.lock().last_reload = Some(ReloadOutcome {
            result: "refused",
            unix_seconds,
            problems: kept,
            problem_count: Some(count),
        });
    }

    pub fn report(&self) -> PolicyReport {
        PolicyReport {
            file: self.file.clone(),
            state: self.state.lock().clone(),
        }
    }
}

fn shorten(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_PROBLEM_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reload_keeps_the_serving_policy_and_the_first_problems() {
        let record = PolicyRecord::new("p.yaml".into(), "aaaa".into(), 10.0);
        assert_eq!(record.report().state.last_reload, None);
        record.applied("bbbb".into(), 20.0);
        let problems = (0..8).map(|i| format!("routes[{i}].prefix: {}", "x".repeat(400)));
        record.refused(problems, 30.0);
        let report = record.report();
        assert_eq!(report.file, "p.yaml");
        assert_eq!(report.state.hash, "bbbb");
        assert_eq!(report.state.loaded_unix_seconds, 20.0);
        let last = report.state.last_reload.expect("a reload");
        assert_eq!((last.result, last.unix_seconds), ("refused", 30.0));
        assert_eq!(last.problem_count, Some(8));
        assert_eq!(last.problems.len(), MAX_PROBLEMS);
        assert!(last.problems[0].starts_with("routes[0].prefix: xxx"));
        assert_eq!(last.problems[0].chars().count(), MAX_PROBLEM_CHARS + 1);
    }
}
