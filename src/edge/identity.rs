//! Identity headers: what an upstream may trust about the caller.
//!
//! Client-sent copies of the identity headers (and of the signature header) are removed
//! from **every** request, public routes included, before anything else; after a token is
//! verified, its claims are forwarded as headers per `jwt.forward_claims`. Every request
//! forwarded also carries `X-Gardien-Identity: v1;<unix-ts>;<hex HMAC-SHA256>` keyed by the
//! internal secret, so a service behind gardien can prove the request came through it and
//! that the identity headers are gardien's. The format is specified in `docs/IDENTITY.md`.
//! After that secret rotates, the value before it keeps signing for
//! `jwt.identity_rotation_delay` (`identity_signing.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use serde_json::{Map, Value};

use crate::edge::identity_signing::{SigningKeys, SigningSecret, MAX_ROTATION_DELAY};
use crate::policy::{Diagnostics, Environment};
use crate::secrets::SecretLookup;

/// The header carrying gardien's signature.
pub const SIGNATURE_HEADER: &str = gardien_identity::HEADER;
/// Default name of the secret keying the signature.
pub const DEFAULT_SECRET_NAME: &str = crate::env_docs::GARDIEN_INTERNAL_SECRET.name;
/// Shortest internal secret accepted in production.
pub const MIN_SECRET_BYTES: usize = 32;

const DEFAULT_FORWARD: [(&str, &str); 3] = [
    ("sub", "x-user-id"),
    ("email", "x-user-email"),
    ("roles", "x-user-roles"),
];

/// The validated identity settings.
#[derive(Debug)]
pub struct IdentityPolicy {
    /// Claim → header, sorted by header name (the signing order).
    forward: Vec<(String, HeaderName)>,
    roles_claim: String,
    /// Removed from every incoming request.
    strip: Vec<HeaderName>,
    signer: Option<SigningKeys>,
    /// `jwt.identity_rotation_delay`, or its default.
    rotation_delay: Duration,
}

impl IdentityPolicy {
    /// Builds the identity settings from `jwt.forward_claims`, `jwt.roles_claim`, the
    /// internal secret (required outside `dev`) and `jwt.identity_rotation_delay` (default
    /// twice the secrets' refresh interval: `gardien_identity::rotation`).
    #[allow(clippy::too_many_arguments)]
    pub fn compile(
        forward_claims: Option<&BTreeMap<String, String>>,
        roles_claim: Option<&str>,
        secret_name: Option<&str>,
        rotation_delay: Option<Duration>,
        environment: Environment,
        secrets: &dyn SecretLookup,
        diag: &mut Diagnostics,
    ) -> IdentityPolicy {
        let pairs: Vec<(String, String)> = match forward_claims {
            Some(map) => map.iter().map(|(c, h)| (c.clone(), h.clone())).collect(),
            None => DEFAULT_FORWARD
                .iter()
                .map(|(c, h)| ((*c).to_owned(), (*h).to_owned()))
                .collect(),
        };
        let mut forward = Vec::with_capacity(pairs.len());
        for (claim, header) in pairs {
            match HeaderName::from_bytes(header.trim().as_bytes()) {
                Ok(name) if forward.iter().any(|(_, n)| *n == name) => diag.error(
                    format!("jwt.forward_claims.{claim}"),
                    format!("header `{header}` is already used by another claim"),
                ),
                Ok(name) if is_reserved(&name) => diag.error(
                    format!("jwt.forward_claims.{claim}"),
                    format!("`{header}` cannot carry a claim: gardien sets it itself"),
                ),
                Ok(name) => forward.push((claim, name)),
                Err(_) => diag.error(
                    format!("jwt.forward_claims.{claim}"),
                    format!("`{header}` is not a valid header name"),
                ),
            }
        }
        forward.sort_by(|a, b| a.1.as_str().cmp(b.1.as_str()));
        let mut strip: Vec<HeaderName> = forward.iter().map(|(_, h)| h.clone()).collect();
        strip.push(HeaderName::from_static(SIGNATURE_HEADER));

        let name = secret_name.unwrap_or(DEFAULT_SECRET_NAME);
        let signer = secrets.get(name).filter(|s| !s.is_empty());
        match (&signer, environment) {
            (None, Environment::Dev) => diag.warn(
                "jwt.identity_secret",
                format!("secret {name} is not set: requests go upstream without X-Gardien-Identity (dev only)"),
            ),
            (None, _) => diag.error(
                "jwt.identity_secret",
                format!("secret {name} is not set: upstreams could not tell gardien's requests from forged ones"),
            ),
            (Some(secret), Environment::Production) if secret.len() < MIN_SECRET_BYTES => diag.error(
                "jwt.identity_secret",
                format!("secret {name} is {} bytes; production needs at least {MIN_SECRET_BYTES}", secret.len()),
            ),
            (Some(secret), _) if secret.len() < MIN_SECRET_BYTES => diag.warn(
                "jwt.identity_secret",
                format!("secret {name} is shorter than {MIN_SECRET_BYTES} bytes (refused in production)"),
            ),
            _ => {}
        }
        let refresh_interval = secrets
            .refresh_interval()
            .unwrap_or(gardien_secrets::DEFAULT_REFRESH_INTERVAL);
        let default_delay = gardien_identity::rotation::default_signing_delay(refresh_interval);
        let rotation_delay = match rotation_delay {
            None => default_delay,
            Some(delay) if delay > MAX_ROTATION_DELAY => {
                diag.error(
                    "jwt.identity_rotation_delay",
                    format!(
                        "`{}` is longer than {}: the old secret would stay in use that long",
                        humantime::format_duration(delay),
                        humantime::format_duration(MAX_ROTATION_DELAY)
                    ),
                );
                default_delay
            }
            Some(delay) if delay.is_zero() => {
                diag.warn(
                    "jwt.identity_rotation_delay",
                    "0: a rotated secret signs at once, and a verifier that has not refreshed yet refuses requests for up to a refresh interval",
                );
                delay
            }
            Some(delay) if delay > default_delay => {
                diag.warn(
                    "jwt.identity_rotation_delay",
                    format!(
                        "`{}` is longer than twice SECRETS_REFRESH_INTERVAL ({}), which gardien-backend's default rotation window covers: set its IDENTITY_ROTATION_WINDOW to at least {} plus its IDENTITY_WINDOW",
                        humantime::format_duration(delay),
                        humantime::format_duration(default_delay),
                        humantime::format_duration(refresh_interval.saturating_add(delay)),
                    ),
                );
                delay
            }
            Some(delay) => delay,
        };
        let now = Instant::now();
        let signer = signer.map(|secret| {
            let previous = secrets.previous(name);
            let keys = SigningKeys::new(&secret, previous.as_ref(), rotation_delay, now);
            if let Some(until) = keys.previous_until() {
                tracing::info!(
                    secret = name,
                    for_ms = u64::try_from(until.saturating_duration_since(now).as_millis())
                        .unwrap_or(u64::MAX),
                    "identity secret rotated: X-Gardien-Identity stays signed with the previous value until every verifier has refreshed (jwt.identity_rotation_delay)"
                );
            }
            keys
        });
        IdentityPolicy {
            forward,
            roles_claim: roles_claim.unwrap_or("roles").to_owned(),
            strip,
            signer,
            rotation_delay,
        }
    }

    /// Removes client-sent identity and signature headers: only gardien sets them.
    pub fn strip_spoofed(&self, request: &mut RequestHeader) {
        for name in &self.strip {
            while request.remove_header(name).is_some() {}
        }
    }

    /// The roles a token carries: its roles claim as an array of strings, or a string of
    /// roles separated by spaces or commas.
    pub fn roles(&self, claims: &Map<String, Value>) -> Vec<Box<str>> {
        let valid = |r: &str| !r.is_empty() && r.bytes().all(|b| b.is_ascii_graphic() && b != b',');
        match claims.get(&self.roles_claim) {
            Some(Value::String(s)) => s
                .split([' ', ','])
                .filter(|r| valid(r))
                .map(Into::into)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|r| valid(r))
                .map(Into::into)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The identity headers for a verified token's claims. The roles claim is sent as the
    /// normalised comma-separated list; other arrays are joined with `,`; a value that
    /// cannot be a header (control characters) is left out.
    pub fn headers(
        &self,
        claims: &Map<String, Value>,
        roles: &[Box<str>],
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(self.forward.len());
        for (claim, header) in &self.forward {
            let text = if *claim == self.roles_claim {
                if roles.is_empty() && !claims.contains_key(claim) {
                    continue;
                }
                roles.join(",")
            } else {
                match claims.get(claim) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => b.to_string(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => continue,
                }
            };
            match HeaderValue::from_str(&text) {
                Ok(value) => out.push((header.clone(), value)),
                Err(_) => tracing::debug!(
                    claim = claim.as_str(),
                    "claim not forwarded: not a valid header value"
                ),
            }
        }
        out
    }

    /// `X-Gardien-Identity` for a request, or `None` without a secret.
    pub fn signature(
        &self,
        method: &str,
        path: &str,
        unix_ts: u64,
        identity: &[(HeaderName, HeaderValue)],
    ) -> Option<HeaderValue> {
        self.signature_at(method, path, unix_ts, identity, Instant::now())
            .map(|(header, _)| header)
    }

    /// [`Self::signature`] at `now`, and which secret made it (the previous one during
    /// the rotation delay).
    pub fn signature_at(
        &self,
        method: &str,
        path: &str,
        unix_ts: u64,
        identity: &[(HeaderName, HeaderValue)],
        now: Instant,
    ) -> Option<(HeaderValue, SigningSecret)> {
        let (signer, which) = self.signer.as_ref()?.at(now);
        let pairs: Vec<(&str, &[u8])> = identity
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        // From the `String` itself: no copy of the value.
        let header = HeaderValue::try_from(signer.sign(method, path, unix_ts, &pairs)).ok()?;
        Some((header, which))
    }

    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }

    /// How long a rotated secret waits before it signs.
    pub fn rotation_delay(&self) -> Duration {
        self.rotation_delay
    }
}

/// Headers gardien sets itself and a claim may not take over.
fn is_reserved(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        SIGNATURE_HEADER
            | "x-request-id"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "host"
            | "authorization"
            | "content-length"
            | "transfer-encoding"
            | "connection"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn policy(env: &[(&str, &str)], environment: Environment) -> (IdentityPolicy, Diagnostics) {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let mut diag = Diagnostics::default();
        (
            IdentityPolicy::compile(
                None,
                None,
                None,
                None,
                environment,
                &crate::secrets::EnvSecrets(&env),
                &mut diag,
            ),
            diag,
        )
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn claims(json: serde_json::Value) -> Map<String, Value> {
        json.as_object().expect("object").clone()
    }

    #[test]
    fn spoofed_headers_are_stripped() {
        let (p, _) = policy(&[(DEFAULT_SECRET_NAME, SECRET)], Environment::Dev);
        let mut request = RequestHeader::build("GET", b"/api/x", None).expect("request");
        request.append_header("X-User-Id", "admin").expect("h");
        request.append_header("x-user-id", "root").expect("h");
        request.append_header("X-User-Roles", "admin").expect("h");
        request
            .append_header("X-Gardien-Identity", "v1;1;00")
            .expect("h");
        request.append_header("X-Other", "kept").expect("h");
        p.strip_spoofed(&mut request);
        let names: Vec<_> = request
            .headers
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        assert_eq!(names, vec!["x-other"]);
    }

    #[test]
    fn claims_become_headers_and_roles_are_normalised() {
        let (p, _) = policy(&[], Environment::Dev);
        let c = claims(
            serde_json::json!({"sub": "u-1", "email": "a@b.co", "roles": ["admin", "bad,role", "ops"]}),
        );
        let roles = p.roles(&c);
        assert_eq!(roles, vec!["admin".into(), "ops".into()] as Vec<Box<str>>);
        let headers = p.headers(&c, &roles);
        let find = |n: &str| {
            headers
                .iter()
                .find(|(h, _)| h == n)
                .map(|(_, v)| v.to_str().expect("ascii").to_owned())
        };
        assert_eq!(find("x-user-id").as_deref(), Some("u-1"));
        assert_eq!(find("x-user-email").as_deref(), Some("a@b.co"));
        assert_eq!(find("x-user-roles").as_deref(), Some("admin,ops"));
        let c = claims(serde_json::json!({"sub": "u\r\nx", "roles": "admin editor"}));
        assert_eq!(p.roles(&c).len(), 2);
        assert!(
            p.headers(&c, &p.roles(&c))
                .iter()
                .all(|(h, _)| h != "x-user-id"),
            "CR/LF never forwarded"
        );
    }

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let (p, diag) = policy(&[(DEFAULT_SECRET_NAME, SECRET)], Environment::Production);
        assert!(!diag.has_errors());
        let identity = vec![
            (
                HeaderName::from_static("x-user-id"),
                HeaderValue::from_static("u-1"),
            ),
            (
                HeaderName::from_static("x-user-roles"),
                HeaderValue::from_static("admin"),
            ),
        ];
        let header = p
            .signature("GET", "/api/me", 1_700_000_000, &identity)
            .expect("signed");
        let header = header.to_str().expect("ascii");
        assert!(header.starts_with("v1;1700000000;"));
        // Tampering and staleness are covered by gardien-identity's own tests; here: the
        // policy signs the headers it forwards, with its secret.
        let pairs: Vec<(&str, &[u8])> = identity
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let check = |key: &[u8]| {
            gardien_identity::verify(key, header, "GET", "/api/me", &pairs, 1_700_000_010, 30)
        };
        assert_eq!(check(SECRET.as_bytes()), Ok(()));
        assert!(check(b"another key").is_err());
    }

    #[test]
    fn the_secret_is_required_outside_dev_and_long_in_production() {
        let (p, diag) = policy(&[], Environment::Dev);
        assert!(!p.signs() && !diag.has_errors() && diag.warnings().len() == 1);
        let (_, diag) = policy(&[], Environment::Staging);
        assert_eq!(diag.errors()[0].path, "jwt.identity_secret");
        let (_, diag) = policy(&[(DEFAULT_SECRET_NAME, "short")], Environment::Production);
        assert!(diag.errors()[0].message.contains("at least 32"));
        assert!(
            !diag.errors()[0].message.contains("short"),
            "the value is never shown"
        );
    }

    /// A lookup whose secret rotated `ago`: the value before it, and a refresh interval.
    struct Rotated {
        ago: Duration,
    }

    const OLD: &str = "the-value-before-the-rotation-0123456789";

    impl SecretLookup for Rotated {
        fn get(&self, name: &str) -> Option<crate::secrets::Secret> {
            (name == DEFAULT_SECRET_NAME).then(|| crate::secrets::Secret::new(SECRET))
        }
        fn previous(&self, name: &str) -> Option<crate::secrets::PreviousValue> {
            (name == DEFAULT_SECRET_NAME).then(|| {
                crate::secrets::PreviousValue::new(
                    crate::secrets::Secret::new(OLD),
                    Instant::now() - self.ago,
                )
            })
        }
        fn refresh_interval(&self) -> Option<Duration> {
            Some(Duration::from_secs(10))
        }
    }

    fn rotated(ago: Duration, delay: Option<Duration>) -> (IdentityPolicy, Diagnostics) {
        let mut diag = Diagnostics::default();
        let policy = IdentityPolicy::compile(
            None,
            None,
            None,
            delay,
            Environment::Production,
            &Rotated { ago },
            &mut diag,
        );
        (policy, diag)
    }

    fn signed_with(policy: &IdentityPolicy, now: Instant) -> SigningSecret {
        let (header, which) = policy
            .signature_at("GET", "/api/me", 1000, &[], now)
            .expect("signed");
        let key = match which {
            SigningSecret::Previous => OLD,
            SigningSecret::Current => SECRET,
        };
        let header = header.to_str().expect("ascii");
        assert_eq!(
            gardien_identity::verify(key.as_bytes(), header, "GET", "/api/me", &[], 1000, 30),
            Ok(()),
            "signed with the secret it says"
        );
        which
    }

    #[test]
    fn a_rotated_secret_waits_for_the_delay_before_it_signs() {
        // Default: twice the refresh interval (10s here).
        let (p, diag) = rotated(Duration::from_secs(5), None);
        assert!(!diag.has_errors() && diag.warnings().is_empty());
        assert_eq!(p.rotation_delay(), Duration::from_secs(20));
        let now = Instant::now();
        assert_eq!(signed_with(&p, now), SigningSecret::Previous);
        assert_eq!(
            signed_with(&p, now + Duration::from_secs(16)),
            SigningSecret::Current,
            "20s after the change, whenever the policy was compiled"
        );
        let (p, _) = rotated(Duration::from_secs(25), None);
        assert_eq!(signed_with(&p, Instant::now()), SigningSecret::Current);
        let (p, _) = rotated(Duration::from_secs(25), Some(Duration::from_secs(30)));
        assert_eq!(signed_with(&p, Instant::now()), SigningSecret::Previous);
    }

    #[test]
    fn the_rotation_delay_is_validated_with_its_path() {
        let (_, diag) = rotated(Duration::ZERO, Some(Duration::from_secs(7200)));
        assert_eq!(diag.errors()[0].path, "jwt.identity_rotation_delay");
        assert!(
            diag.errors()[0].message.contains("longer than 1h"),
            "{:?}",
            diag.errors()
        );
        let (p, diag) = rotated(Duration::ZERO, Some(Duration::ZERO));
        assert!(!diag.has_errors());
        assert_eq!(diag.warnings()[0].path, "jwt.identity_rotation_delay");
        assert_eq!(signed_with(&p, Instant::now()), SigningSecret::Current);
        let (_, diag) = rotated(Duration::ZERO, Some(Duration::from_secs(60)));
        assert!(!diag.has_errors());
        assert!(
            diag.warnings()[0]
                .message
                .contains("IDENTITY_ROTATION_WINDOW to at least 1m 10s"),
            "{:?}",
            diag.warnings()
        );
    }
}
