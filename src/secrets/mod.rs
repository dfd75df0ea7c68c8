//! The gateway's secrets: the chain shared with gardien-backend (`gardien-secrets`: Google
//! Secret Manager, files, environment, development defaults in `dev`), resolved for what
//! the policy needs before it compiles, and kept fresh while the gateway runs — a rotated
//! value recompiles the policy through the reload path (see `reload.rs`).
//!
//! The policy reads secrets through [`SecretLookup`]: the [`SecretStore`] when the binary
//! runs, [`EnvSecrets`] for `policy::parse` (tests pass a map of variables).

mod requirements;

use crate::policy::Env;

pub use gardien_secrets::{PreviousValue, Report, Requirement, Secret, SecretLookup, SecretStore};
pub use requirements::{policy_requirements, SENTRY_DSN};

/// Reads the secret named `name` from a map of variables. Empty counts as unset.
pub fn read(name: &str, env: &dyn Env) -> Option<Secret> {
    env.var(name).filter(|v| !v.is_empty()).map(Secret::new)
}

/// Secrets read straight from variables (`JWT_SECRET=…`): what the policy compiles with
/// when no store is given.
pub struct EnvSecrets<'a>(pub &'a dyn Env);

impl SecretLookup for EnvSecrets<'_> {
    fn get(&self, name: &str) -> Option<Secret> {
        read(name, self.0)
    }
}

impl std::fmt::Debug for EnvSecrets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvSecrets")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn empty_is_unset() {
        let env: HashMap<String, String> = HashMap::from([
            ("EMPTY".to_owned(), String::new()),
            ("SET".to_owned(), "x".to_owned()),
        ]);
        assert!(read("EMPTY", &env).is_none());
        assert!(read("MISSING", &env).is_none());
        assert_eq!(read("SET", &env).map(|s| s.len()), Some(1));
        assert_eq!(EnvSecrets(&env).get("SET").map(|s| s.len()), Some(1));
    }
}
