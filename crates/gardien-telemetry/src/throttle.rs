//! Rate limits for what attackers or an outage can trigger many times a second: warning logs
//! (refused origins, bad tokens) and error reports to Sentry. At most one permit per key per
//! window, and at most a fixed number per window in all, so varying the key cannot flood the
//! logs or the Sentry project either. What was held back is counted and reported with the
//! next permit.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    max_lines_per_window: u32,
    max_keys: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    last_logged: HashMap<Box<str>, Instant>,
    window_start: Instant,
    lines_in_window: u32,
    suppressed: u64,
}

/// Permission to log one line; `suppressed` lines were held back since the last one.
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    pub suppressed: u64,
}

impl Throttle {
    pub fn new(window: Duration, max_lines_per_window: u32, max_keys: usize) -> Self {
        Throttle {
            window,
            max_lines_per_window,
            max_keys,
            state: Mutex::new(State {
                last_logged: HashMap::new(),
                window_start: Instant::now(),
                lines_in_window: 0,
                suppressed: 0,
            }),
        }
    }

    /// One line per origin per minute, 100 lines a minute in all, 10,000 origins tracked.
    pub fn per_minute() -> Self {
        Self::new(Duration::from_secs(60), 100, 10_000)
    }

    /// Whether a line about `key` may be logged now.
    pub fn permit(&self, key: &str) -> Option<Permit> {
        self.permit_at(key, Instant::now())
    }

    pub fn permit_at(&self, key: &str, now: Instant) -> Option<Permit> {
        let mut state = self.state.lock();
        if now.duration_since(state.window_start) >= self.window {
            state.window_start = now;
            state.lines_in_window = 0;
        }
        let recent = state
            .last_logged
            .get(key)
            .is_some_and(|&at| now.duration_since(at) < self.window);
        if recent || state.lines_in_window >= self.max_lines_per_window {
            state.suppressed += 1;
            return None;
        }
        if state.last_logged.len() >= self.max_keys {
            let window = self.window;
            state
                .last_logged
                .retain(|_, at| now.duration_since(*at) < window);
            if state.last_logged.len() >= self.max_keys {
                state.suppressed += 1;
                return None;
            }
        }
        state.last_logged.insert(key.into(), now);
        state.lines_in_window += 1;
        Some(Permit {
            suppressed: std::mem::take(&mut state.suppressed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_window() {
        let throttle = Throttle::new(Duration::from_secs(60), 100, 100);
        let t0 = Instant::now();
        assert_eq!(throttle.permit_at("a", t0), Some(Permit { suppressed: 0 }));
        assert_eq!(throttle.permit_at("a", t0 + Duration::from_secs(30)), None);
        assert_eq!(throttle.permit_at("a", t0 + Duration::from_secs(59)), None);
        assert_eq!(
            throttle.permit_at("a", t0 + Duration::from_secs(61)),
            Some(Permit { suppressed: 2 })
        );
    }

    #[test]
    fn distinct_keys_are_capped_per_window() {
        let throttle = Throttle::new(Duration::from_secs(60), 3, 1000);
        let t0 = Instant::now();
        let allowed = (0..50)
            .filter(|i| throttle.permit_at(&format!("origin-{i}"), t0).is_some())
            .count();
        assert_eq!(allowed, 3);
        let next = throttle
            .permit_at("late", t0 + Duration::from_secs(60))
            .expect("new window");
        assert_eq!(next.suppressed, 47);
    }

    #[test]
    fn tracked_keys_are_bounded() {
        let throttle = Throttle::new(Duration::from_secs(60), u32::MAX, 10);
        let t0 = Instant::now();
        for i in 0..1000 {
            throttle.permit_at(&format!("k{i}"), t0);
        }
        assert!(throttle.state.lock().last_logged.len() <= 10);
    }
}
