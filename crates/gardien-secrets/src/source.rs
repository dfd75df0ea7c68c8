//! One place a secret can come from, and what it answers for a name.

use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::Secret;

/// Where a value was found, as the report prints it. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The full version name Secret Manager answered, `projects/p/secrets/X/versions/4`.
    SecretManager { version: String },
    /// A mounted file.
    File(PathBuf),
    /// An environment variable, by name.
    Environment(String),
    /// The documented development default (only in `dev`).
    DevelopmentDefault,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::SecretManager { version } => write!(f, "Google Secret Manager ({version})"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Environment(name) => write!(f, "environment variable {name}"),
            Origin::DevelopmentDefault => f.write_str("development default"),
        }
    }
}

/// A source's answer for one name.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// The value, and where exactly it came from.
    Found(Secret, Origin),
    /// This source has no such secret (a 404, no file, an unset variable): the next source
    /// is asked.
    Absent,
    /// This source could not answer (down, refused, corrupt): the next source is asked,
    /// and the reason is reported. The reason never contains the value.
    Failed(String),
}

/// One source of secrets. Implementations bound their own time (a network source times
/// out), never put a value in a reason, and never panic on what they read.
#[async_trait]
pub trait SecretSource: Send + Sync + fmt::Debug {
    /// The source as a whole, for the report's header: `files in /run/secrets`.
    fn describe(&self) -> String;

    /// Where this source looks for `name`: `file /run/secrets/JWT_SECRET`.
    fn location(&self, name: &str) -> String;

    /// The current value of `name` in this source.
    async fn fetch(&self, name: &str) -> Fetched;
}
