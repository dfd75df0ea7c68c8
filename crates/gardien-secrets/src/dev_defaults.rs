//! Development defaults: the last source, used only when the environment is `dev`, so a
//! laptop runs both binaries with no secret configured. Every value says it is for
//! development; provider credentials (SendGrid, Twilio, SMTP), `SENTRY_DSN` and
//! `DATABASE_URL` have none. docs/SECRETS.md carries the same table.

use async_trait::async_trait;

use crate::source::{Fetched, Origin, SecretSource};
use crate::Secret;

/// Name → development value. Public and committed: anything keyed with them proves nothing.
pub const DEV_DEFAULTS: [(&str, &str); 2] = [
    (
        "GARDIEN_INTERNAL_SECRET",
        "dev-only-gardien-internal-secret-never-use-in-production",
    ),
    (
        "JWT_SECRET",
        "dev-only-jwt-hs256-secret-never-use-in-production",
    ),
];

/// The table above as a source.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevDefaults;

#[async_trait]
impl SecretSource for DevDefaults {
    fn describe(&self) -> String {
        "development defaults".to_owned()
    }

    fn location(&self, _name: &str) -> String {
        "development default".to_owned()
    }

    async fn fetch(&self, name: &str) -> Fetched {
        match DEV_DEFAULTS.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => Fetched::Found(Secret::new(*value), Origin::DevelopmentDefault),
            None => Fetched::Absent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_documented_names_have_a_default() {
        assert!(matches!(
            DevDefaults.fetch("GARDIEN_INTERNAL_SECRET").await,
            Fetched::Found(_, Origin::DevelopmentDefault)
        ));
        for name in [
            "SENDGRID_API_KEY",
            "TWILIO_AUTH_TOKEN",
            "SMTP_PASSWORD",
            "DATABASE_URL",
        ] {
            assert!(
                matches!(DevDefaults.fetch(name).await, Fetched::Absent),
                "{name}"
            );
        }
        for (_, value) in DEV_DEFAULTS {
            assert!(
                value.starts_with("dev-only-") && value.len() >= 32,
                "{value}"
            );
        }
    }
}
