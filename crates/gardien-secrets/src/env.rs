//! Environment variables as a source: `JWT_SECRET=…`. Empty counts as unset.

use std::sync::Arc;

use async_trait::async_trait;

use crate::source::{Fetched, Origin, SecretSource};
use crate::{Secret, Vars};

/// Reads the variable named like the secret.
pub struct EnvSource {
    vars: Arc<dyn Vars>,
}

impl EnvSource {
    pub fn new(vars: Arc<dyn Vars>) -> Self {
        EnvSource { vars }
    }
}

impl std::fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvSource")
    }
}

#[async_trait]
impl SecretSource for EnvSource {
    fn describe(&self) -> String {
        "environment variables".to_owned()
    }

    fn location(&self, name: &str) -> String {
        format!("environment variable {name}")
    }

    async fn fetch(&self, name: &str) -> Fetched {
        match self.vars.non_empty(name) {
            Some(value) => Fetched::Found(Secret::new(value), Origin::Environment(name.to_owned())),
            None => Fetched::Absent,
        }
    }
}
