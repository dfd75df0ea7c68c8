//! Secret values: read through the environment for now (Google Secret Manager and mounted
//! files come with the secrets issue), and wrapped so they never reach a log, an error or
//! `Debug` output.

use std::fmt;

use crate::policy::Env;

/// A secret's bytes. `Debug` and `Display` print `[redacted]`; only
/// [`Secret::expose`] gives the value, so every use is easy to find.
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

/// Reads the secret named `name` (an environment variable for now). Empty counts as unset.
pub fn read(name: &str, env: &dyn Env) -> Option<Secret> {
    env.var(name).filter(|v| !v.is_empty()).map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), b"hunter2-hunter2-hunter2");
    }

    #[test]
    fn empty_is_unset() {
        let env: HashMap<String, String> = HashMap::from([
            ("EMPTY".to_owned(), String::new()),
            ("SET".to_owned(), "x".to_owned()),
        ]);
        assert!(read("EMPTY", &env).is_none());
        assert!(read("MISSING", &env).is_none());
        assert_eq!(read("SET", &env).map(|s| s.len()), Some(1));
    }
}
