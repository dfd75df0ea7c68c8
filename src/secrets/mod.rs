//! Secret values: read through the environment for now (Google Secret Manager and mounted
//! files come with the secrets issue), and wrapped so they never reach a log, an error or
//! `Debug` output.

use crate::policy::Env;

pub use gardien_secrets::Secret;

/// Reads the secret named `name` (an environment variable for now). Empty counts as unset.
pub fn read(name: &str, env: &dyn Env) -> Option<Secret> {
    env.var(name).filter(|v| !v.is_empty()).map(Secret::new)
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
    }
}
