//! Hot reload of the policy, on `SIGHUP` (which also looks the secrets up again), when the
//! policy file changes, and when a secret it compiles with rotates (the secret store
//! publishes each change).
//!
//! A new policy is loaded and validated in full before it replaces the running one (one
//! atomic swap; requests in flight finish on the policy they started with). An invalid file
//! is refused: the problems are logged, `gardien_policy_reloads_total{result="refused"}`
//! counts it, and the last good policy stays. Listen addresses and thread counts are bound
//! at start; a reload that changes them keeps the running ones and says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::admin::metrics::{policy_hash, unix_seconds, Metrics};
use crate::admin::policy_record::PolicyRecord;
use crate::policy::{self, Policy, ProcessEnv};
use crate::secrets::{self, SecretStore};
use crate::warm_up::warm_up;

/// Editors and Kubernetes write a file in several steps; wait this long for quiet.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Why a reload happened, for the log line.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Signal,
    FileChanged,
    SecretRotated,
}

/// The background task that reloads the policy.
#[derive(Debug)]
pub struct PolicyReloader {
    path: PathBuf,
    policy: Arc<ArcSwap<Policy>>,
    metrics: Arc<Metrics>,
    watch_file: bool,
    secrets: Arc<SecretStore>,
    record: Arc<PolicyRecord>,
}

impl PolicyReloader {
    pub fn new(
        path: PathBuf,
        policy: Arc<ArcSwap<Policy>>,
        metrics: Arc<Metrics>,
        watch_file: bool,
        secrets: Arc<SecretStore>,
        record: Arc<PolicyRecord>,
    ) -> Self {
        PolicyReloader {
            path,
            policy,
            metrics,
            watch_file,
            secrets,
            record,
        }
    }

    /// Refuses the reload: logs why and counts it; the running policy stays.
    fn refuse(&self, problems: &[policy::Problem]) -> bool {
        for problem in problems {
            tracing::error!(field = problem.path.as_str(), "{}", problem.message);
        }
        tracing::error!(
            policy = %self.path.display(),
            problems = problems.len(),
            "policy reload refused; the running policy stays"
        );
        self.metrics.policy_reload("refused");
        let lines: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        crate::error_reports::reload_refused(&self.path.display().to_string(), &lines);
        self.record.refused(lines, unix_seconds());
        false
    }

    /// Loads the file again — the secrets it names resolved through the store first — and
    /// swaps it in when valid. Returns whether it was applied.
    pub async fn reload(&self) -> bool {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        if let Some((environment, requirements)) = secrets::policy_requirements(&text, &ProcessEnv)
        {
            // The chain (development defaults or not) was built for the environment the
            // gateway started with.
            let running = self.secrets.chain().environment();
            if environment != running {
                return self.refuse(&[policy::Problem {
                    path: "environment".into(),
                    message: format!("changes from {running} to {} only on restart", environment),
                }]);
            }
            let report = self.secrets.require(requirements).await;
            for line in report.error_lines() {
                tracing::warn!("{line}");
            }
        }
        let loaded = match policy::load_file_with_secrets(&self.path, &ProcessEnv, &*self.secrets) {
            Ok(loaded) => loaded,
            Err(error) => return self.refuse(&error.problems),
        };
        for warning in &loaded.warnings {
            tracing::warn!(field = warning.path.as_str(), "{}", warning.message);
        }
        let current = self.policy.load_full();
        let mut next = loaded.policy;
        keep_process_bound_settings(&current, &mut next);
        warm_up(&next, Some(&current), &self.metrics).await;
        tracing::info!(policy = %self.path.display(), "policy reloaded: {}", next.summary());
        self.policy.store(Arc::new(next));
        self.metrics.policy_reload("applied");
        let (hash, loaded) = (policy_hash(&text), unix_seconds());
        self.metrics.set_policy(&hash, loaded);
        self.record.applied(hash, loaded);
        true
    }
}

/// Listeners and worker threads cannot change in a running process.
fn keep_process_bound_settings(current: &Policy, next: &mut Policy) {
    if next.listen != current.listen || next.admin_listen != current.admin_listen {
        tracing::warn!(
            running = %current.listen,
            admin = %current.admin_listen,
            "listen addresses change only on restart; keeping the running ones"
        );
        next.listen = current.listen;
        next.admin_listen = current.admin_listen;
    }
    if next.server.threads != current.server.threads {
        tracing::warn!(
            running = current.server.threads,
            "server.threads changes only on restart"
        );
        next.server.threads = current.server.threads;
    }
    if next.server.work_stealing != current.server.work_stealing {
        tracing::warn!(
            running = current.server.work_stealing,
            "server.work_stealing changes only on restart"
        );
        next.server.work_stealing = current.server.work_stealing;
    }
}

/// Watches the policy file's directory (editors and Kubernetes replace files by rename, so
/// watching the file itself would lose it) and reports changes to the file.
fn watch(path: &Path, tx: mpsc::Sender<Trigger>) -> notify::Result<notify::RecommendedWatcher> {
    let file_name = path.file_name().map(ToOwned::to_owned);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        // Kubernetes ConfigMaps swap a `..data` symlink; any change in the directory may
        // change what the file resolves to.
        let relevant = event.paths.iter().any(|p| {
            p.file_name() == file_name.as_deref()
                || p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".."))
        });
        if relevant {
            let _ = tx.try_send(Trigger::FileChanged);
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[async_trait]
impl BackgroundService for PolicyReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = mpsc::channel::<Trigger>(16);
        let _watcher = if self.watch_file {
            match watch(&self.path, tx.clone()) {
                Ok(watcher) => Some(watcher),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the policy file; reload with SIGHUP");
                    None
                }
            }
        } else {
            None
        };
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        let mut rotated = self.secrets.subscribe();
        rotated.borrow_and_update();
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Trigger::Signal,
                Some(trigger) = rx.recv() => trigger,
                Ok(()) = rotated.changed() => Trigger::SecretRotated,
            };
            // Let a burst of file events settle, then reload once.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            if matches!(trigger, Trigger::Signal) {
                // SIGHUP also looks every secret up again, without waiting for the interval.
                self.secrets.refresh().await;
            }
            rotated.borrow_and_update();
            tracing::info!(trigger = ?trigger, "reloading the policy");
            self.reload().await;
        }
    }
}
