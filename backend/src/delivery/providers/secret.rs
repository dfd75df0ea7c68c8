//! Reading a provider's secrets at send time, and keeping their values out of failure
//! details.

use gardien_secrets::{Secret, SecretLookup};

use crate::delivery::provider::{Failure, FailureKind};

/// The current value of secret `name`. Missing or empty is [`FailureKind::Rejected`]: this
/// provider cannot send until the secret is resolved, the next provider may.
pub(crate) fn read(
    secrets: &dyn SecretLookup,
    provider: &str,
    name: &str,
) -> Result<Secret, Failure> {
    let Some(secret) = secrets.get(name) else {
        return Err(missing(provider, name, "is not set"));
    };
    match text_of(&secret) {
        Some("") => Err(missing(provider, name, "is empty")),
        Some(_) => Ok(secret),
        None => Err(missing(provider, name, "is not valid UTF-8")),
    }
}

/// The secret as text, without the surrounding whitespace a mounted file often carries.
pub(crate) fn text<'a>(secret: &'a Secret, provider: &str, name: &str) -> Result<&'a str, Failure> {
    text_of(secret).ok_or_else(|| missing(provider, name, "is not valid UTF-8"))
}

fn text_of(secret: &Secret) -> Option<&str> {
    std::str::from_utf8(secret.expose()).ok().map(str::trim)
}

fn missing(provider: &str, name: &str, why: &str) -> Failure {
    Failure::new(
        FailureKind::Rejected,
        format!("{provider}: secret {name} {why}"),
    )
}

/// `detail` with every occurrence of a secret's value replaced by `[redacted]`, for text
/// that came from a server (an error message that might echo what it was sent).
pub(crate) fn scrub(detail: String, secrets: &[&str]) -> String {
    let mut detail = detail;
    for value in secrets {
        // Short values would redact ordinary words; no credential is that short.
        if value.len() >= 6 && detail.contains(value) {
            detail = detail.replace(value, "[redacted]");
        }
    }
    detail
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn missing_blank_and_present_secrets() {
        let mut map: HashMap<String, Secret> = HashMap::new();
        map.insert("EMPTY".into(), Secret::new(""));
        map.insert("BLANK".into(), Secret::new("  \n"));
        map.insert("KEY".into(), Secret::new("SG.value\n"));
        let missing = read(&map, "sendgrid", "NOPE").expect_err("missing");
        assert_eq!(missing.kind, FailureKind::Rejected);
        assert_eq!(missing.detail, "sendgrid: secret NOPE is not set");
        assert!(read(&map, "sendgrid", "EMPTY").is_err());
        assert!(read(&map, "sendgrid", "BLANK").is_err());
        let key = read(&map, "sendgrid", "KEY").expect("present");
        assert_eq!(text(&key, "sendgrid", "KEY").expect("utf-8"), "SG.value");
    }

    #[test]
    fn scrub_removes_values() {
        assert_eq!(
            scrub("bad key SG.abcdef given".into(), &["SG.abcdef"]),
            "bad key [redacted] given"
        );
        assert_eq!(scrub("a b".into(), &["a"]), "a b");
    }
}
