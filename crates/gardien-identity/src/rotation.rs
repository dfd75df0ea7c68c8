//! How long each side of `X-Gardien-Identity` honours the value before a rotation of the
//! internal secret, so a rotation refuses no request (docs/IDENTITY.md#rotating-the-secret).
//!
//! Every process looks its secrets up again every refresh interval `R`, so after a new
//! value is published each one sees it at its own time, up to `R` later than another.
//!
//! - The **signer** (gardien) keeps signing with the value it held before for a rotation
//!   delay `D` after it saw the new one, so every verifier has refreshed before the first
//!   signature under the new value: `D` must cover one interval of the verifiers' refresh,
//!   plus the lookup time. Default `D = 2 × R`.
//! - A **verifier** (gardien-backend) accepts the value it held before for a rotation
//!   window `P` after it saw the new one: the signer may see the change up to `R` after
//!   it, then signs with the old value for `D`, and a signature made then is valid for the
//!   identity window `W`. So `P ≥ R + D + W`; with the default delay,
//!   `P = 3 × R + W`.

use std::time::Duration;

/// The signer's default rotation delay for a refresh interval: `2 × refresh_interval`.
pub fn default_signing_delay(refresh_interval: Duration) -> Duration {
    refresh_interval.saturating_mul(2)
}

/// The verifier's default rotation window: long enough for a signer refreshing every
/// `refresh_interval` with the default delay, plus the identity window:
/// `3 × refresh_interval + identity_window`.
pub fn default_verifying_window(refresh_interval: Duration, identity_window: Duration) -> Duration {
    minimum_verifying_window(
        refresh_interval,
        default_signing_delay(refresh_interval),
        identity_window,
    )
}

/// The shortest verifier window that covers a signer refreshing every `refresh_interval`
/// and delaying by `signing_delay`: `refresh_interval + signing_delay + identity_window`.
pub fn minimum_verifying_window(
    refresh_interval: Duration,
    signing_delay: Duration,
    identity_window: Duration,
) -> Duration {
    refresh_interval
        .saturating_add(signing_delay)
        .saturating_add(identity_window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_follow_the_rule() {
        let minute = Duration::from_secs(60);
        let window = Duration::from_secs(30);
        assert_eq!(default_signing_delay(minute), Duration::from_secs(120));
        assert_eq!(
            default_verifying_window(minute, window),
            Duration::from_secs(210)
        );
        // The default window covers the default delay exactly.
        assert_eq!(
            default_verifying_window(minute, window),
            minimum_verifying_window(minute, default_signing_delay(minute), window)
        );
    }
}
