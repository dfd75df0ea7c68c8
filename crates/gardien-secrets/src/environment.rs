//! Which kind of deployment a binary runs as: it decides whether development defaults may
//! fill a missing secret, and whether a missing required secret refuses a start.

use std::fmt;
use std::str::FromStr;

/// `dev`, `staging` or `production` (the gateway's policy `environment:`, the backend's
/// `GARDIEN_ENVIRONMENT`). One type for both binaries, so they cannot disagree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Dev,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "dev" | "development" => Ok(Environment::Dev),
            "staging" => Ok(Environment::Staging),
            "production" | "prod" => Ok(Environment::Production),
            other => Err(format!(
                "`{other}` is not an environment: use dev, staging or production"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_names() {
        assert_eq!("dev".parse(), Ok(Environment::Dev));
        assert_eq!(" Production ".parse(), Ok(Environment::Production));
        assert_eq!("staging".parse(), Ok(Environment::Staging));
        assert!("qa".parse::<Environment>().is_err());
    }
}
