//! The verified-token cache: a bounded map from a whole token to what its verification
//! produced, so a client that sends the same token many times pays for the signature check
//! once. An entry is used only until the token's `exp` and only while its issuer's key set
//! is the one it was verified against (a rotated-out key invalidates its tokens at once).
//!
//! `quick_cache` (CLOCK-Pro eviction, sharded) does the bounding; nothing home-made.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use quick_cache::sync::Cache;

/// What a successful verification yields, and what the cache stores.
#[derive(Debug)]
pub struct VerifiedToken {
    /// Index of the issuer in `jwt.issuers`.
    pub issuer: usize,
    /// The issuer's key-set version the signature was checked against.
    pub key_version: u64,
    /// `exp`, in Unix seconds.
    pub expires_at: u64,
    pub subject: Option<String>,
    pub roles: Vec<Box<str>>,
    /// The identity headers to send upstream, from the claims.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A bounded cache of verified tokens; capacity 0 disables it.
pub struct TokenCache {
    cache: Option<Cache<Box<str>, Arc<VerifiedToken>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys: they are bearer tokens.
        f.debug_struct("TokenCache")
            .field("entries", &self.cache.as_ref().map_or(0, Cache::len))
            .finish()
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    /// The entry for `token` if it is still usable at `now` with the issuer's current
    /// key-set version (`current_version(issuer)`).
    pub fn get(
        &self,
        token: &str,
        now: u64,
        current_version: impl Fn(usize) -> u64,
    ) -> Option<Arc<VerifiedToken>> {
        let cache = self.cache.as_ref()?;
        let entry = cache.get(token)?;
        if entry.expires_at > now && entry.key_version == current_version(entry.issuer) {
            Some(entry)
        } else {
            cache.remove(token);
            None
        }
    }

    pub fn insert(&self, token: &str, verified: Arc<VerifiedToken>) {
        if let Some(cache) = &self.cache {
            cache.insert(token.into(), verified);
        }
    }

    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(issuer: usize, key_version: u64, expires_at: u64) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            issuer,
            key_version,
            expires_at,
            subject: Some("u1".into()),
            roles: vec![],
            headers: vec![],
        })
    }

    #[test]
    fn hits_until_exp_and_while_the_key_set_is_unchanged() {
        let cache = TokenCache::new(100);
        cache.insert("t1", verified(0, 3, 1_000));
        assert!(cache.get("t1", 999, |_| 3).is_some());
        assert!(cache.get("t1", 1_000, |_| 3).is_none(), "expired at exp");
        cache.insert("t2", verified(0, 3, 1_000));
        assert!(cache.get("t2", 10, |_| 4).is_none(), "key set changed");
        assert!(
            cache.get("t2", 10, |_| 3).is_none(),
            "and the entry is gone"
        );
    }

    #[test]
    fn is_bounded() {
        let cache = TokenCache::new(50);
        for i in 0..10_000 {
            cache.insert(&format!("token-{i}"), verified(0, 0, u64::MAX));
        }
        assert!(cache.len() <= 60, "{} entries", cache.len());
    }

    #[test]
    fn capacity_zero_disables() {
        let cache = TokenCache::new(0);
        cache.insert("t", verified(0, 0, u64::MAX));
        assert!(cache.get("t", 0, |_| 0).is_none());
    }

    #[test]
    fn debug_never_shows_tokens() {
        let cache = TokenCache::new(10);
        cache.insert("secret.token.value", verified(0, 0, u64::MAX));
        assert!(!format!("{cache:?}").contains("secret.token"));
    }
}
