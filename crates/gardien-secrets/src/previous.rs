//! The value a secret had before its last change, and when it changed: what a rotation
//! needs so that a signer can keep the old value a little longer and a verifier can accept
//! both for a while (`gardien_identity::rotation` has the rule). The store remembers one
//! previous value per name; each reader decides how long to honour it.

use std::time::{Duration, Instant};

use crate::Secret;

/// A value replaced by a rotation. `Debug` never shows the value (it is a [`Secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousValue {
    value: Secret,
    replaced_at: Instant,
}

impl PreviousValue {
    pub fn new(value: Secret, replaced_at: Instant) -> Self {
        PreviousValue { value, replaced_at }
    }

    /// The value before the change.
    pub fn value(&self) -> &Secret {
        &self.value
    }

    /// When this process saw the new value replace it.
    pub fn replaced_at(&self) -> Instant {
        self.replaced_at
    }

    /// Whether the change happened at most `window` before `now`.
    pub fn replaced_within(&self, window: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.replaced_at) <= window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_window_and_after_it() {
        let at = Instant::now();
        let previous = PreviousValue::new(Secret::new("old-value-0123456789"), at);
        let window = Duration::from_secs(10);
        assert!(previous.replaced_within(window, at));
        assert!(previous.replaced_within(window, at + window));
        assert!(!previous.replaced_within(window, at + window + Duration::from_millis(1)));
        assert_eq!(format!("{previous:?}").matches("[redacted]").count(), 1);
        assert!(!format!("{previous:?}").contains("old-value"));
    }
}
