//! Which key signs `X-Gardien-Identity` now. After the internal secret rotates, gardien
//! keeps signing with the value before it for `jwt.identity_rotation_delay`, so every
//! verifier has looked the new value up before it sees a signature under it (the rule is
//! in `gardien_identity::rotation`; docs/IDENTITY.md#rotating-the-secret).
//!
//! The switch time is the store's time of the change plus the delay, not the time the
//! policy was compiled: a rotated secret recompiles the policy (`reload.rs`), and so may a
//! `SIGHUP` or an edited file during the delay; every compile reads the same change time
//! from the store, so the switch happens once, on time, whatever reloads in between.

use std::time::{Duration, Instant};

use gardien_identity::Signer;

use crate::secrets::{PreviousValue, Secret};

/// Longest `jwt.identity_rotation_delay` accepted: the old secret stays in use that long.
pub const MAX_ROTATION_DELAY: Duration = Duration::from_secs(3600);

/// Which secret a signature was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningSecret {
    Current,
    /// The value before a rotation, during the rotation delay.
    Previous,
}

/// The current key, and during a rotation delay the previous one with the instant it stops
/// signing.
#[derive(Debug)]
pub struct SigningKeys {
    current: Signer,
    previous: Option<(Signer, Instant)>,
}

impl SigningKeys {
    /// Keys for `current`; `previous` (the store's value before its last change) signs
    /// until `delay` after that change, if that is still ahead of `now`.
    pub fn new(
        current: &Secret,
        previous: Option<&PreviousValue>,
        delay: Duration,
        now: Instant,
    ) -> SigningKeys {
        let previous = previous
            .filter(|p| p.value() != current && !p.value().is_empty())
            .and_then(|p| {
                let until = p.replaced_at().checked_add(delay)?;
                (until > now).then(|| (Signer::new(p.value().expose()), until))
            });
        SigningKeys {
            current: Signer::new(current.expose()),
            previous,
        }
    }

    /// The key that signs at `now`.
    pub fn at(&self, now: Instant) -> (&Signer, SigningSecret) {
        match &self.previous {
            Some((signer, until)) if now < *until => (signer, SigningSecret::Previous),
            _ => (&self.current, SigningSecret::Current),
        }
    }

    /// While the previous value still signs: until when.
    pub fn previous_until(&self) -> Option<Instant> {
        self.previous.as_ref().map(|(_, until)| *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "the-old-internal-secret-0123456789abcdef";
    const NEW: &str = "the-new-internal-secret-fedcba9876543210";

    fn signed_with(keys: &SigningKeys, now: Instant) -> &'static str {
        let (signer, which) = keys.at(now);
        let mac = signer.mac("GET", "/api/me", 1, &[]);
        let expected = |key: &str| gardien_identity::mac(key.as_bytes(), "GET", "/api/me", 1, &[]);
        match which {
            SigningSecret::Previous => assert_eq!(mac, expected(OLD)),
            SigningSecret::Current => assert_eq!(mac, expected(NEW)),
        }
        if which == SigningSecret::Previous {
            "old"
        } else {
            "new"
        }
    }

    #[test]
    fn the_previous_value_signs_until_the_delay_after_the_change() {
        let changed = Instant::now();
        let delay = Duration::from_secs(120);
        let previous = PreviousValue::new(Secret::new(OLD), changed);
        let keys = SigningKeys::new(&Secret::new(NEW), Some(&previous), delay, changed);
        assert_eq!(signed_with(&keys, changed), "old");
        assert_eq!(
            signed_with(&keys, changed + delay - Duration::from_millis(1)),
            "old"
        );
        assert_eq!(signed_with(&keys, changed + delay), "new");
        assert_eq!(keys.previous_until(), Some(changed + delay));

        // Compiled again during the delay (a reload): the same switch time.
        let later = changed + Duration::from_secs(100);
        let again = SigningKeys::new(&Secret::new(NEW), Some(&previous), delay, later);
        assert_eq!(again.previous_until(), Some(changed + delay));
        assert_eq!(signed_with(&again, later), "old");
        // Compiled after the delay: the new value only.
        let after = SigningKeys::new(&Secret::new(NEW), Some(&previous), delay, changed + delay);
        assert_eq!(after.previous_until(), None);
        assert_eq!(signed_with(&after, changed + delay), "new");
    }

    #[test]
    fn no_rotation_or_no_delay_signs_with_the_current_value() {
        let now = Instant::now();
        let none = SigningKeys::new(&Secret::new(NEW), None, Duration::from_secs(60), now);
        assert_eq!(signed_with(&none, now), "new");
        let previous = PreviousValue::new(Secret::new(OLD), now);
        let zero = SigningKeys::new(&Secret::new(NEW), Some(&previous), Duration::ZERO, now);
        assert_eq!(signed_with(&zero, now), "new");
        assert!(!format!("{zero:?}").contains("secret-"), "never printed");
    }
}
