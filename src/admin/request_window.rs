//! Request rate and 5xx ratio over the last minute and the last fifteen minutes, kept in
//! the process for `/status` (Prometheus has the long history; a person looking at one
//! replica wants "now" without a query).
//!
//! A ring of one slot per second, [`SECONDS`] of them. Each slot is one `AtomicU64` per
//! counter holding the second it counts (high 32 bits, seconds since the window was
//! created) and the count (low 32 bits), so starting a new second and counting its first
//! request is one compare-and-swap, and every other request one relaxed `fetch_add`: no
//! lock, no allocation on the hot path. A slot whose second is older than the window is
//! ignored when read, so an idle gateway needs no sweeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// Seconds the ring covers: the longest window read from it (fifteen minutes).
pub const SECONDS: usize = 900;

const COUNT_BITS: u32 = 32;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Requests and 5xx answers of the last [`SECONDS`] seconds, per second.
#[derive(Debug)]
pub struct RequestWindow {
    started: Instant,
    requests: Box<[AtomicU64]>,
    errors: Box<[AtomicU64]>,
}

/// What the window says about the last `seconds` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowTotals {
    /// The span read: the window, or the process's uptime when it is shorter.
    pub seconds: u64,
    pub requests: u64,
    /// Answers with a 5xx status (from the upstream or the gateway itself).
    pub errors_5xx: u64,
    pub requests_per_second: f64,
    /// `errors_5xx / requests`; `None` without requests.
    pub error_ratio: Option<f64>,
}

impl Default for RequestWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestWindow {
    pub fn new() -> Self {
        let ring = || (0..SECONDS).map(|_| AtomicU64::new(0)).collect();
        RequestWindow {
            started: Instant::now(),
            requests: ring(),
            errors: ring(),
        }
    }

    /// Counts one answered request with `status`.
    pub fn record(&self, status: u16) {
        self.record_at(self.now(), status >= 500);
    }

    /// The last `seconds` seconds (at most [`SECONDS`]), this one included.
    pub fn totals(&self, seconds: u64) -> WindowTotals {
        self.totals_at(self.now(), seconds)
    }

    /// Seconds since the window was created; the slot tag.
    fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn record_at(&self, second: u64, error: bool) {
        bump(&self.requests, second);
        if error {
            bump(&self.errors, second);
        }
    }

    fn totals_at(&self, now: u64, seconds: u64) -> WindowTotals {
        let seconds = seconds.clamp(1, SECONDS as u64);
        // Seconds `now - seconds + 1 ..= now`, fewer while the process is younger.
        let oldest = now.saturating_sub(seconds - 1);
        let span = now - oldest + 1;
        let requests = sum(&self.requests, oldest, now);
        let errors_5xx = sum(&self.errors, oldest, now);
        WindowTotals {
            seconds: span,
            requests,
            errors_5xx,
            requests_per_second: requests as f64 / span as f64,
            error_ratio: (requests > 0).then(|| errors_5xx as f64 / requests as f64),
        }
    }
}

/// Adds one to the slot of `second`, starting the slot over when it still counts an older
/// second. A late caller whose second the slot has already moved past counts nothing.
fn bump(ring: &[AtomicU64], second: u64) {
    let Some(slot) = ring.get((second % SECONDS as u64) as usize) else {
        return;
    };
    let mut current = slot.load(Ordering::Relaxed);
    loop {
        let tag = current >> COUNT_BITS;
        if tag == second {
            // The count stays far below 2^32 a second: it never carries into the tag.
            slot.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if tag > second {
            return;
        }
        match slot.compare_exchange_weak(
            current,
            (second << COUNT_BITS) | 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// The counts of the slots whose second is in `oldest..=newest`.
fn sum(ring: &[AtomicU64], oldest: u64, newest: u64) -> u64 {
    ring.iter()
        .map(|slot| slot.load(Ordering::Relaxed))
        .filter(|value| (oldest..=newest).contains(&(value >> COUNT_BITS)))
        .map(|value| value & COUNT_MASK)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_and_5xx_over_the_window() {
        let window = RequestWindow::new();
        for second in [0, 0, 1, 30, 59] {
            window.record_at(second, false);
        }
        window.record_at(59, true);
        let minute = window.totals_at(59, 60);
        assert_eq!(minute.seconds, 60);
        assert_eq!(minute.requests, 6);
        assert_eq!(minute.errors_5xx, 1);
        assert!((minute.requests_per_second - 0.1).abs() < 1e-9);
        assert_eq!(minute.error_ratio, Some(1.0 / 6.0));
        // One second later the two requests of second 0 have left the minute.
        let later = window.totals_at(60, 60);
        assert_eq!((later.requests, later.errors_5xx), (4, 1));
        assert_eq!(window.totals_at(60, 900).requests, 6);
    }

    #[test]
    fn a_young_process_divides_by_its_uptime() {
        let window = RequestWindow::new();
        for _ in 0..10 {
            window.record_at(4, false);
        }
        let totals = window.totals_at(4, 900);
        assert_eq!(totals.seconds, 5);
        assert!((totals.requests_per_second - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_reused_slot_starts_over_and_old_seconds_are_ignored() {
        let window = RequestWindow::new();
        window.record_at(3, true);
        window.record_at(3, false);
        // Second 903 lands on the slot of second 3.
        window.record_at(903, false);
        let totals = window.totals_at(903, 900);
        assert_eq!((totals.requests, totals.errors_5xx), (1, 0));
        // The error slot still says second 3, which is outside the window.
        assert_eq!(window.totals_at(903, 60).errors_5xx, 0);
        // A caller late by a whole ring counts nothing rather than corrupting the slot.
        window.record_at(3, false);
        assert_eq!(window.totals_at(903, 900).requests, 1);
        // Long idle: nothing is left in either window.
        let idle = window.totals_at(5000, 900);
        assert_eq!((idle.requests, idle.error_ratio), (0, None));
    }

    #[test]
    fn concurrent_requests_are_all_counted() {
        let window = std::sync::Arc::new(RequestWindow::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let window = std::sync::Arc::clone(&window);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        window.record_at(i / 1000, i % 10 == 0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a counting thread");
        }
        let totals = window.totals_at(9, 60);
        assert_eq!((totals.requests, totals.errors_5xx), (40_000, 4_000));
    }

    #[test]
    fn record_uses_the_status_class() {
        let window = RequestWindow::new();
        window.record(200);
        window.record(404);
        window.record(503);
        let totals = window.totals(60);
        assert_eq!((totals.requests, totals.errors_5xx), (3, 1));
    }
}
