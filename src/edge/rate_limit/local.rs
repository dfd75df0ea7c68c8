//! The in-process store: governor's GCRA over a bounded map of keys.
//!
//! governor keeps one theoretical-arrival time per key; the map holding them is
//! `quick_cache` with a fixed capacity, so a flood of distinct keys (a million spoofed client
//! addresses) evicts the least recently used instead of growing memory. An evicted key
//! starts again with a full burst — a bounded over-admission, never unbounded memory.
//!
//! Rates are scaled by the adaptive factor through the request's *cost*: a request costs
//! `SCALE / factor` cells of a bucket holding `burst × SCALE` cells that refills at
//! `rate × SCALE` cells per period. At factor 1 that is exactly `rate` with `burst`. What
//! an answer tells the client comes from [`Bucket`], as for the Redis store.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use quick_cache::sync::Cache;

use super::quota::Bucket;
use super::{Decision, Rate};

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

type Limiter<C> = RateLimiter<String, BoundedStore, C, StateInformationMiddleware>;

/// One rule's local limiter. The clock is governor's real one, or its fake one in tests.
pub struct LocalLimiter<C: Clock = DefaultClock> {
    limiter: Limiter<C>,
    store: BoundedStore,
    bucket: Bucket,
}

impl<C: Clock> std::fmt::Debug for LocalLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("keys", &self.keys())
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl LocalLimiter {
    /// `None` when the bucket cannot be expressed (see [`Bucket::new`]).
    pub fn new(rate: Rate, burst: u32, max_keys: usize) -> Option<Self> {
        Self::with_clock(rate, burst, max_keys, DefaultClock::default())
    }
}

impl<C: Clock> LocalLimiter<C> {
    pub fn with_clock(rate: Rate, burst: u32, max_keys: usize, clock: C) -> Option<Self> {
        let bucket = Bucket::new(rate, burst)?;
        let quota =
            Quota::with_period(bucket.cell())?.allow_burst(NonZeroU32::new(bucket.capacity())?);
        let store = BoundedStore::new(max_keys);
        Some(LocalLimiter {
            limiter: RateLimiter::new(quota, store.clone(), clock),
            store,
            bucket,
        })
    }

    /// Keys currently tracked (never more than `max_keys`).
    pub fn keys(&self) -> usize {
        self.store.len()
    }

    /// One request for `key` at adaptive `factor` (0 < factor ≤ 1).
    pub fn check(&self, key: &String, factor: f64) -> Decision {
        let bucket = &self.bucket;
        let cost = bucket.cost(factor);
        let n = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        // Read before the decision: a wait measured from here is never shorter than the
        // one governor decided with, so `Retry-After` stays honest.
        let before = self.limiter.clock().now();
        match self.limiter.check_key_n(key, n) {
            // governor's remaining capacity is `capacity − ceil(used / cell)` cells: the
            // state rounded up to cells, as `Bucket` rounds it.
            Ok(Ok(snapshot)) => {
                let free = snapshot.remaining_burst_capacity().min(bucket.capacity());
                bucket.allowed(bucket.cells_ns(bucket.capacity() - free), cost)
            }
            // Refused when `used + cost > capacity`: `used` is the wait plus what must
            // stay free for this request.
            Ok(Err(not_until)) => {
                let wait =
                    u64::try_from(not_until.wait_time_from(before).as_nanos()).unwrap_or(u64::MAX);
                let kept = bucket.cells_ns(bucket.capacity().saturating_sub(cost));
                bucket.refused(wait.saturating_add(kept), cost)
            }
            // `cost` never exceeds the capacity; refuse rather than panic if it did.
            Err(_) => bucket.refused(bucket.cells_ns(bucket.capacity()), cost),
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    use super::*;
    use std::time::Duration;

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
            Decision::Refused { retry_after, reset } => {
                assert!(
                    retry_after > Duration::from_secs(11) && retry_after <= Duration::from_secs(12),
                    "{retry_after:?}"
                );
                assert!(reset > Duration::from_secs(59) && reset <= Duration::from_secs(60));
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
    fn a_large_burst_never_promises_more_than_its_quota() {
        // The policy of issue 10: `rate: 200/s, burst: 400` answered r=399 against q=200.
        let l = limiter(200, Duration::from_secs(1), 400, 10);
        let Decision::Allowed { remaining, reset } = l.check(&"k".to_owned(), 1.0) else {
            panic!("allowed")
        };
        assert_eq!(remaining, 399);
        assert_eq!(reset, Duration::from_millis(5));
        assert_eq!(
            Bucket::new(
                Rate {
                    count: 200,
                    period: Duration::from_secs(1)
                },
                400
            )
            .expect("bucket")
            .policy_item("ip"),
            "\"ip\";q=400;w=2"
        );
    }

    /// What one answer promised: `q`, and `r` / `t` when allowed.
    fn promise(decision: Decision, quota: u32) -> Option<(u32, Duration)> {
        match decision {
            Decision::Allowed { remaining, reset } => {
                assert!(remaining <= quota, "r={remaining} > q={quota}");
                Some((
                    remaining,
                    Duration::from_secs(reset.as_secs() + u64::from(reset.subsec_nanos() > 0)),
                ))
            }
            Decision::Refused { .. } => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Over random rates, bursts, factors and request timings (governor's fake clock):
        /// every answer has `r ≤ q`, and after every allowed answer a client that sends its
        /// `r` requests at random moments within `t` is never refused; a refusal's
        /// `Retry-After` (whole seconds) is long enough.
        #[test]
        fn answers_keep_their_promise(
            count in 1u32..2_000,
            period_ms in prop::sample::select(vec![1u64, 10, 1_000, 10_000, 60_000, 3_600_000]),
            burst in 1u32..300,
            factor in prop_oneof![Just(1.0f64), 0.05f64..1.0],
            seed in any::<u64>(),
            steps in 1usize..40,
        ) {
            let rate = Rate { count, period: Duration::from_millis(period_ms) };
            let clock = FakeRelativeClock::default();
            let Some(l) = LocalLimiter::with_clock(rate, burst, 10, clock.clone()) else {
                return Ok(()); // a bucket the policy refuses
            };
            let bucket = Bucket::new(rate, burst).expect("bucket");
            // `q` as the `RateLimit-Policy` header says it.
            let item = bucket.policy_item("k");
            let quota: u32 = item
                .split(";q=")
                .nth(1)
                .and_then(|rest| rest.split(';').next())
                .and_then(|q| q.parse().ok())
                .expect("q in the policy item");
            let window = Duration::from_nanos(u64::try_from(bucket.capacity_ns()).unwrap_or(u64::MAX));
            let key = "k".to_owned();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for _ in 0..steps {
                // A random pause, from nothing to twice the time the bucket takes to refill.
                clock.advance(window.mul_f64(rng.random_range(0.0..2.0)) * u32::from(rng.random_bool(0.7)));
                match l.check(&key, factor) {
                    decision @ Decision::Allowed { .. } => {
                        let (r, t) = promise(decision, quota).expect("allowed");
                        // The client spends its `r` at random moments within `t`.
                        let mut at: Vec<Duration> = (0..r).map(|_| t.mul_f64(rng.random_range(0.0..=1.0))).collect();
                        at.sort();
                        let mut now = Duration::ZERO;
                        for moment in at {
                            clock.advance(moment - now);
                            now = moment;
                            let answer = l.check(&key, factor);
                            prop_assert!(
                                promise(answer, quota).is_some(),
                                "refused at {moment:?} after r={r}, t={t:?}: {answer:?}"
                            );
                        }
                    }
                    Decision::Refused { retry_after, reset } => {
                        prop_assert!(reset <= window + bucket.cell());
                        if rng.random_bool(0.5) {
                            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                            clock.advance(Duration::from_secs(secs.max(1)));
                            let answer = l.check(&key, factor);
                            prop_assert!(
                                promise(answer, quota).is_some(),
                                "refused again after Retry-After {secs}s: {answer:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
