//! The in-process store: governor's GCRA over a bounded map of keys.
//!
//! governor keeps one theoretical-arrival time per key; the map holding them is
//! `quick_cache` with a fixed capacity, so a flood of distinct keys (a million spoofed client
//! addresses) evicts the least recently used instead of growing memory. An evicted key
//! starts again with a full burst — a bounded over-admission, never unbounded memory.
//!
//! Rates are scaled by the adaptive factor through the request's *cost*: a request costs
//! `SCALE / factor` cells of a bucket holding `burst × SCALE` cells that refills at
//! `rate × SCALE` cells per period. At factor 1 that is exactly `rate` with `burst`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use quick_cache::sync::Cache;

use super::{Decision, Rate};

/// Cells per request at factor 1: the resolution of the adaptive factor (1%).
pub const SCALE: u32 = 100;

/// A governor state store with a bounded number of keys. Cloning gives another handle on
/// the same map (the limiter owns one, `LocalLimiter` keeps one to report its size).
#[derive(Clone)]
pub struct BoundedStore {
    states: Arc<Cache<String, Arc<InMemoryState>>>,
}

impl BoundedStore {
    pub fn new(max_keys: usize) -> Self {
        BoundedStore {
            states: Arc::new(Cache::new(max_keys.max(1))),
        }
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }
}

impl StateStore for BoundedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let state = match self.states.get(key.as_str()) {
            Some(state) => state,
            None => {
                let state = Arc::new(InMemoryState::default());
                self.states.insert(key.clone(), Arc::clone(&state));
                state
            }
        };
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

type Limiter = RateLimiter<String, BoundedStore, DefaultClock, StateInformationMiddleware>;

/// One rule's local limiter.
pub struct LocalLimiter {
    limiter: Limiter,
    store: BoundedStore,
    capacity: u32,
    cell: Duration,
    burst: u32,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("keys", &self.keys())
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl LocalLimiter {
    /// `None` when the rate is too high to express (over 10 million a second).
    pub fn new(rate: Rate, burst: u32, max_keys: usize) -> Option<Self> {
        let cells = u64::from(rate.count) * u64::from(SCALE);
        let cell =
            Duration::from_nanos(u64::try_from(rate.period.as_nanos() / u128::from(cells)).ok()?);
        let capacity = burst.checked_mul(SCALE)?;
        let quota = Quota::with_period(cell)?.allow_burst(NonZeroU32::new(capacity)?);
        let store = BoundedStore::new(max_keys);
        Some(LocalLimiter {
            limiter: RateLimiter::new(quota, store.clone(), DefaultClock::default()),
            store,
            capacity,
            cell,
            burst,
        })
    }

    /// Keys currently tracked (never more than `max_keys`).
    pub fn keys(&self) -> usize {
        self.store.len()
    }

    /// One request for `key` at adaptive `factor` (0 < factor ≤ 1).
    pub fn check(&self, key: &String, factor: f64) -> Decision {
        let cost = cost(factor, self.capacity);
        let n = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_key_n(key, n) {
            Ok(Ok(snapshot)) => {
                let remaining_cells = snapshot.remaining_burst_capacity();
                let missing = u64::from(self.capacity.saturating_sub(remaining_cells));
                Decision::Allowed {
                    remaining: remaining_cells / cost,
                    reset: self
                        .cell
                        .saturating_mul(u32::try_from(missing).unwrap_or(u32::MAX)),
                }
            }
            Ok(Err(not_until)) => Decision::Refused {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            },
            // `cost` never exceeds the capacity; refuse rather than panic if it did.
            Err(_) => Decision::Refused {
                retry_after: self.cell.saturating_mul(self.capacity),
            },
        }
    }
}

/// Cells one request costs at `factor`, between `SCALE` and the bucket's capacity.
pub fn cost(factor: f64, capacity: u32) -> u32 {
    let factor = if factor.is_finite() {
        factor.clamp(0.01, 1.0)
    } else {
        1.0
    };
    let raw = (f64::from(SCALE) / factor).round();
    // `raw` is between SCALE and 100×SCALE: it fits a u32.
    (raw as u32).clamp(SCALE, capacity.max(SCALE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(count: u32, period: Duration, burst: u32, max_keys: usize) -> LocalLimiter {
        LocalLimiter::new(Rate { count, period }, burst, max_keys).expect("limiter")
    }

    #[test]
    fn allows_the_burst_then_refuses_with_an_honest_retry_after() {
        let l = limiter(5, Duration::from_secs(60), 5, 100);
        let key = "1.2.3.4".to_owned();
        for expected_remaining in (0..5).rev() {
            match l.check(&key, 1.0) {
                Decision::Allowed { remaining, .. } => assert_eq!(remaining, expected_remaining),
                Decision::Refused { .. } => panic!("within the burst"),
            }
        }
        match l.check(&key, 1.0) {
            Decision::Refused { retry_after } => {
                assert!(
                    retry_after > Duration::from_secs(11) && retry_after <= Duration::from_secs(12),
                    "{retry_after:?}"
                );
            }
            Decision::Allowed { .. } => panic!("over the burst"),
        }
        assert!(
            matches!(
                l.check(&"5.6.7.8".to_owned(), 1.0),
                Decision::Allowed { .. }
            ),
            "keys are separate"
        );
    }

    #[test]
    fn the_factor_scales_rate_and_burst() {
        let l = limiter(10, Duration::from_secs(60), 10, 100);
        let key = "k".to_owned();
        let allowed = (0..20)
            .filter(|_| matches!(l.check(&key, 0.5), Decision::Allowed { .. }))
            .count();
        assert_eq!(allowed, 5, "half the burst at factor 0.5");
    }

    #[test]
    fn a_flood_of_keys_stays_within_the_cap() {
        let l = limiter(100, Duration::from_secs(1), 10, 1_000);
        for i in 0..50_000u32 {
            l.check(
                &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                1.0,
            );
        }
        assert!(l.keys() <= 1_100, "{} keys tracked", l.keys());
    }

    #[test]
    fn cost_is_bounded() {
        assert_eq!(cost(1.0, 1000), SCALE);
        assert_eq!(cost(0.5, 1000), 2 * SCALE);
        assert_eq!(cost(0.2, 300), 300, "never more than the bucket");
        assert_eq!(cost(f64::NAN, 1000), SCALE);
        assert_eq!(cost(7.0, 1000), SCALE);
    }
}
