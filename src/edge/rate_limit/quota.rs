//! A rule's GCRA bucket and what its state promises a client, in the quota model of
//! draft-ietf-httpapi-ratelimit-headers. One pure function of the state, so the local store
//! (governor) and the Redis store (the Lua script) answer alike for the same state.
//!
//! The bucket holds `burst × SCALE` cells of `period / (count × SCALE)` each; a request at
//! adaptive factor `f` costs `SCALE / f` cells. The state of a key is `used`: how long
//! until its bucket is empty of requests again (the GCRA's theoretical arrival time minus
//! now). From it:
//!
//! - `q = burst`, `w = ceil(burst × period / count)` seconds: the whole bucket, and the time
//!   it takes to refill from nothing;
//! - `r = floor((capacity − used) / cost)`: requests that fit in the bucket right now, so
//!   `r ≤ burst = q`, and `r` requests sent at any time from now on are all allowed (the
//!   bucket only drains while the client waits);
//! - `t = ceil(used)` seconds: when the bucket is full again (`q` requests available).
//!
//! `used` is rounded **up** to whole cells first, so both stores (nanoseconds in governor,
//! the microseconds of Redis's clock in Lua) agree and every rounding errs on the side of
//! promising less.

use std::time::Duration;

use super::{Decision, Rate};

/// Cells per request at factor 1: the resolution of the adaptive factor (1%).
pub const SCALE: u32 = 100;

/// Longest bucket (`burst × period / count`): the Redis script does its arithmetic in Lua
/// numbers (doubles), exact in nanoseconds up to 2^53 ns, about 104 days.
pub const MAX_BUCKET: Duration = Duration::from_secs(100 * 86_400);

/// The bucket of one rule (or of its local share while Redis is unreachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Nanoseconds per cell (at least 1).
    cell_ns: u64,
    /// Cells the bucket holds: `burst × SCALE`.
    capacity: u32,
    burst: u32,
}

impl Bucket {
    /// `None` when the rate is too high to express (a cell under 1 ns: over 10 million
    /// requests a second), the burst too large, or the bucket longer than [`MAX_BUCKET`].
    pub fn new(rate: Rate, burst: u32) -> Option<Bucket> {
        let cells = u128::from(rate.count) * u128::from(SCALE);
        let cell_ns = u64::try_from(rate.period.as_nanos() / cells)
            .ok()
            .filter(|c| *c > 0)?;
        let capacity = burst.checked_mul(SCALE)?;
        let bucket = Bucket {
            cell_ns,
            capacity,
            burst,
        };
        (bucket.capacity_ns() <= MAX_BUCKET.as_nanos()).then_some(bucket)
    }

    /// One cell.
    pub fn cell(&self) -> Duration {
        Duration::from_nanos(self.cell_ns)
    }

    /// Cells the bucket holds.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The whole bucket as time, in nanoseconds.
    pub fn capacity_ns(&self) -> u128 {
        u128::from(self.cell_ns) * u128::from(self.capacity)
    }

    /// `cells` cells as nanoseconds.
    pub fn cells_ns(&self, cells: u32) -> u64 {
        self.cell_ns.saturating_mul(u64::from(cells))
    }

    /// Cells one request costs at `factor`, between `SCALE` and the bucket's capacity.
    pub fn cost(&self, factor: f64) -> u32 {
        let factor = if factor.is_finite() {
            factor.clamp(0.01, 1.0)
        } else {
            1.0
        };
        let raw = (f64::from(SCALE) / factor).round();
        // `raw` is between SCALE and 100×SCALE: it fits a u32.
        (raw as u32).clamp(SCALE, self.capacity.max(SCALE))
    }

    /// `used` rounded up to whole cells, at most the capacity.
    fn used_cells(&self, used_ns: u64) -> u32 {
        let cells = used_ns.div_ceil(self.cell_ns);
        u32::try_from(cells).unwrap_or(u32::MAX).min(self.capacity)
    }

    /// The answer to an allowed request that left the bucket `used_after_ns` from empty.
    pub fn allowed(&self, used_after_ns: u64, cost: u32) -> Decision {
        let used = self.used_cells(used_after_ns);
        Decision::Allowed {
            remaining: (self.capacity - used) / cost.max(1),
            reset: Duration::from_nanos(self.cells_ns(used)),
        }
    }

    /// The answer to a refused request, the bucket `used_before_ns` from empty.
    pub fn refused(&self, used_before_ns: u64, cost: u32) -> Decision {
        let used = self.used_cells(used_before_ns);
        // Cells that must drain before `cost` fits; at least one (it did not fit).
        let missing = (u64::from(used) + u64::from(cost))
            .saturating_sub(u64::from(self.capacity))
            .max(1);
        Decision::Refused {
            retry_after: Duration::from_nanos(self.cell_ns.saturating_mul(missing)),
            reset: Duration::from_nanos(self.cells_ns(used)),
        }
    }

    /// `"name";q=<burst>;w=<seconds to refill the whole bucket>`.
    pub fn policy_item(&self, name: &str) -> String {
        let window = self.capacity_ns().div_ceil(1_000_000_000).max(1);
        format!("\"{name}\";q={};w={window}", self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(count: u32, secs: u64, burst: u32) -> Bucket {
        Bucket::new(
            Rate {
                count,
                period: Duration::from_secs(secs),
            },
            burst,
        )
        .expect("bucket")
    }

    #[test]
    fn the_policy_is_the_burst_over_the_time_to_refill_it() {
        assert_eq!(bucket(200, 1, 400).policy_item("ip"), "\"ip\";q=400;w=2");
        assert_eq!(bucket(5, 60, 5).policy_item("login"), "\"login\";q=5;w=60");
        assert_eq!(bucket(20, 60, 10).policy_item("l"), "\"l\";q=10;w=30");
        assert_eq!(bucket(3, 1, 1).policy_item("x"), "\"x\";q=1;w=1");
    }

    #[test]
    fn the_first_answer_of_a_large_burst_promises_less_than_the_quota() {
        let b = bucket(200, 1, 400);
        // One request taken: 5 ms of the 2 s bucket used.
        let answer = b.allowed(5_000_000, b.cost(1.0));
        assert_eq!(
            answer,
            Decision::Allowed {
                remaining: 399,
                reset: Duration::from_millis(5)
            }
        );
    }

    #[test]
    fn used_time_is_rounded_up_to_cells() {
        let b = bucket(1, 1, 3); // cells of 10 ms
        let Decision::Allowed { remaining, reset } = b.allowed(1_000_000_001, SCALE) else {
            panic!("allowed")
        };
        assert_eq!(remaining, 1, "1.01 s of 3 s used: one more whole request");
        assert_eq!(reset, Duration::from_millis(1010));
        let Decision::Refused { retry_after, reset } = b.refused(2_500_000_000, SCALE) else {
            panic!("refused")
        };
        assert_eq!(retry_after, Duration::from_millis(500));
        assert_eq!(reset, Duration::from_millis(2500));
    }

    #[test]
    fn buckets_past_the_limits_are_refused() {
        let rate = |count, secs| Rate {
            count,
            period: Duration::from_secs(secs),
        };
        assert!(
            Bucket::new(rate(20_000_000, 1), 1).is_none(),
            "cell under 1 ns"
        );
        assert!(Bucket::new(rate(1, 86_400), 101).is_none(), "101 days");
        assert!(Bucket::new(rate(1, 86_400), 100).is_some());
        assert!(Bucket::new(rate(1, 1), u32::MAX).is_none());
    }

    #[test]
    fn cost_is_bounded() {
        let b = bucket(1, 1, 10);
        assert_eq!(b.cost(1.0), SCALE);
        assert_eq!(b.cost(0.5), 2 * SCALE);
        assert_eq!(bucket(1, 1, 3).cost(0.2), 300, "never more than the bucket");
        assert_eq!(b.cost(f64::NAN), SCALE);
        assert_eq!(b.cost(7.0), SCALE);
    }
}
