//! Secret values, shared by gardien and gardien-backend: wrapped so they never reach a log,
//! an error message or `Debug` output. Where secrets come from (environment, mounted files,
//! Google Secret Manager) is the concern of each binary's configuration.

use std::collections::HashMap;
use std::fmt;

/// A secret's bytes. `Debug` and `Display` print `[redacted]`; only [`Secret::expose`]
/// gives the value, so every use is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into().into_boxed_slice())
    }

    /// The value, for the one place that needs it (a MAC key, a signature check).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a binary reads a secret's current value by name. The chain of sources (Google
/// Secret Manager, files, environment, development defaults) implements it with a cache
/// refreshed in the background; tests can pass a map. `get` never blocks: it answers from
/// what was last resolved, so a rotated value is seen on the next call after a refresh.
pub trait SecretLookup: Send + Sync {
    /// The current value of the secret `name`, if one was resolved.
    fn get(&self, name: &str) -> Option<Secret>;
}

impl SecretLookup for HashMap<String, Secret> {
    fn get(&self, name: &str) -> Option<Secret> {
        HashMap::get(self, name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), b"hunter2-hunter2-hunter2");
    }
}
