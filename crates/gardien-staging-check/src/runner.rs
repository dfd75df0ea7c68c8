//! Runs flows one after another and prints one line per flow, so an operator reads the
//! result of a deployment at a glance and a script reads the exit code.

use std::future::Future;
use std::time::{Duration, Instant};

/// What a passing flow may add to its `ok` line (the load run's measurements).
pub trait Detail {
    fn detail(&self) -> String;
}

impl Detail for () {
    fn detail(&self) -> String {
        String::new()
    }
}

impl Detail for String {
    fn detail(&self) -> String {
        format!("  {self}")
    }
}

/// The lines printed so far and whether any flow failed.
#[derive(Debug, Default)]
pub struct Runner {
    failed: usize,
    passed: usize,
    skipped: usize,
}

/// Longest time one flow may take before it counts as failed: every wait is bounded.
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

impl Runner {
    /// Runs `flow` (`Err` carries the reason printed on its `FAIL` line), bounded by [`FLOW_TIMEOUT`], and prints `ok`/`FAIL` with its time.
    pub async fn run<F, T>(&mut self, name: &str, flow: F) -> bool
    where
        F: Future<Output = Result<T, String>>,
        T: Detail,
    {
        let started = Instant::now();
        let result = match tokio::time::timeout(FLOW_TIMEOUT, flow).await {
            Ok(result) => result,
            Err(_) => Err(format!("did not finish within {FLOW_TIMEOUT:?}")),
        };
        let ms = started.elapsed().as_millis();
        match result {
            Ok(detail) => {
                self.passed += 1;
                println!("ok   {name:<24} {ms}ms{}", detail.detail());
                true
            }
            Err(reason) => {
                self.failed += 1;
                println!("FAIL {name:<24} {ms}ms  {reason}");
                false
            }
        }
    }

    /// Prints `skip` for a flow this run cannot do, and why.
    pub fn skip(&mut self, name: &str, why: &str) {
        self.skipped += 1;
        println!("skip {name:<24} {why}");
    }

    /// Prints the summary line; true when nothing failed.
    pub fn finish(&self) -> bool {
        println!(
            "staging-check: {} ok, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        );
        self.failed == 0
    }
}
