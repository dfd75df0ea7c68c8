//! Exponential backoff with jitter between retries on one provider.
//!
//! The delay doubles with each failure (`base`, `2 × base`, `4 × base`…) up to `max`, and
//! "equal jitter" spreads it: half of it fixed, the other half random. The fixed half keeps
//! a struggling provider from being hit again at once; the random half keeps messages that
//! failed together from coming back together.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (1 for the first), with `jitter`
    /// drawn uniformly from `[0, 1)`.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let full = self
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.max)
            .max(self.base.min(self.max));
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    #[test]
    fn doubles_up_to_the_cap() {
        assert_eq!(BACKOFF.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(BACKOFF.delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(BACKOFF.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(BACKOFF.delay(7, 1.0), Duration::from_secs(60));
        assert_eq!(BACKOFF.delay(1000, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn jitter_keeps_half() {
        assert_eq!(BACKOFF.delay(3, 0.0), Duration::from_secs(2));
        let middle = BACKOFF.delay(3, 0.5);
        assert!(middle > Duration::from_secs(2) && middle < Duration::from_secs(4));
    }
}
