//! Strict JWT validation at the edge.
//!
//! Every check, in this order, and all of them: an `Authorization: Bearer` header of at
//! most 8 KiB; three base64url parts; the header's `alg` in the issuer's allowlist (`none`
//! always refused; an HMAC `alg` never accepted for a JWKS issuer, whatever the token says);
//! the `kid` in the issuer's key set; the signature; `exp` required, `nbf` and `iat`
//! honoured with the leeway; `iss` exact; `aud` containing one of the audiences; the
//! required claims. The token's `jku`, `x5u`, `jwk` and `x5c` headers are never read: keys
//! come only from the policy.
//!
//! The token's `iss` (read before the signature is checked) only *selects* which issuer's
//! rules and keys apply; it is verified again with the signature.

use gardien_errors::ErrorCode;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::identity::IdentityPolicy;
use super::jwks::{Jwks, Lookup};
use super::token_cache::{TokenCache, VerifiedToken};
use crate::admin::metrics::Metrics;
use crate::policy::schema::{Environment, IssuerSpec, JwtSpec};
use crate::policy::Diagnostics;
use crate::secrets::SecretLookup;

/// Largest `Authorization` header value considered.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const MAX_PRODUCTION_LEEWAY: Duration = Duration::from_secs(60);
const DEFAULT_CACHE_SIZE: usize = 10_000;
const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(600);
const DEFAULT_JWKS_COOLDOWN: Duration = Duration::from_secs(10);
const DEFAULT_JWKS_STALE_AFTER: Duration = Duration::from_secs(3600);
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Why a token was refused. Each has a stable `code` (JSON error, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Missing,
    Malformed,
    Expired,
    NotYetValid,
    BadSignature,
    UnknownKey,
    AlgNotAllowed,
    WrongIssuer,
    WrongAudience,
    ClaimMissing,
}

impl TokenRejection {
    /// The error code of the `401` (and the `reason` label of the metric).
    pub fn code(self) -> ErrorCode {
        match self {
            TokenRejection::Missing => ErrorCode::TokenMissing,
            TokenRejection::Malformed => ErrorCode::TokenMalformed,
            TokenRejection::Expired => ErrorCode::TokenExpired,
            TokenRejection::NotYetValid => ErrorCode::TokenNotYetValid,
            TokenRejection::BadSignature => ErrorCode::BadSignature,
            TokenRejection::UnknownKey => ErrorCode::UnknownKey,
            TokenRejection::AlgNotAllowed => ErrorCode::AlgNotAllowed,
            TokenRejection::WrongIssuer => ErrorCode::WrongIssuer,
            TokenRejection::WrongAudience => ErrorCode::WrongAudience,
            TokenRejection::ClaimMissing => ErrorCode::ClaimMissing,
        }
    }

    /// Text for the JSON error and `error_description` (no quotes or backslashes).
    pub fn description(self) -> &'static str {
        match self {
            TokenRejection::Missing => "a bearer token is required",
            TokenRejection::Malformed => "the token is not a well-formed JWT",
            TokenRejection::Expired => "the token has expired",
            TokenRejection::NotYetValid => "the token is not valid yet",
            TokenRejection::BadSignature => "the token signature is invalid",
            TokenRejection::UnknownKey => "the token was signed with an unknown key",
            TokenRejection::AlgNotAllowed => "the token algorithm is not allowed",
            TokenRejection::WrongIssuer => "the token issuer is not trusted",
            TokenRejection::WrongAudience => "the token audience is not accepted",
            TokenRejection::ClaimMissing => "the token lacks a required claim",
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug)]
pub enum KeySource {
    Jwks(Jwks),
    /// An HMAC secret; its `DecodingKey` never prints the bytes.
    Secret(DecodingKeyDebug),
}

/// `DecodingKey` holding a secret, with a `Debug` that never shows it.
pub struct DecodingKeyDebug(DecodingKey);

impl std::fmt::Debug for DecodingKeyDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One trusted issuer.
#[derive(Debug)]
pub struct Issuer {
    pub name: String,
    pub keys: KeySource,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    required_claims: Vec<String>,
    /// Prepared per allowed algorithm.
    validations: HashMap<Algorithm, ValidationDebug>,
    /// The counter of this issuer's valid tokens, resolved once (the common case).
    valid: std::sync::OnceLock<prometheus::IntCounter>,
}

/// `Validation` does not implement `Debug` helpfully; this wrapper keeps `Issuer: Debug`.
struct ValidationDebug(Validation);

impl std::fmt::Debug for ValidationDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Validation")
    }
}

impl Issuer {
    pub fn key_version(&self) -> u64 {
        match &self.keys {
            KeySource::Jwks(jwks) => jwks.version(),
            KeySource::Secret(_) => 0,
        }
    }

    pub fn jwks(&self) -> Option<&Jwks> {
        match &self.keys {
            KeySource::Jwks(jwks) => Some(jwks),
            KeySource::Secret(_) => None,
        }
    }
}

/// The validated `jwt:` section with its key sets and verified-token cache.
#[derive(Debug)]
pub struct JwtPolicy {
    issuers: Vec<Issuer>,
    by_name: HashMap<String, usize>,
    cache: TokenCache,
}

/// The unverified parts of a token needed to choose the rules that apply.
struct Peeked {
    alg: Algorithm,
    kid: Option<String>,
    iss: Option<String>,
}

impl JwtPolicy {
    /// Validates `jwt:`. `environment: production` refuses what dev only warns about: an
    /// issuer without audiences, a short HMAC secret, a leeway above 60s, a JWKS over http.
    pub fn compile(
        spec: &JwtSpec,
        environment: Environment,
        secrets: &dyn SecretLookup,
        diag: &mut Diagnostics,
    ) -> JwtPolicy {
        let mut issuers = Vec::with_capacity(spec.issuers.len());
        let mut by_name = HashMap::new();
        for (i, issuer) in spec.issuers.iter().enumerate() {
            if let Some(compiled) = compile_issuer(i, issuer, environment, secrets, diag) {
                if by_name
                    .insert(compiled.name.clone(), issuers.len())
                    .is_some()
                {
                    diag.error(
                        format!("jwt.issuers[{i}].issuer"),
                        "the same issuer is listed twice",
                    );
                }
                issuers.push(compiled);
            }
        }
        if spec.issuers.is_empty() && spec.issuers_declared == 0 {
            diag.error(
                "jwt.issuers",
                "list at least one issuer, or remove `jwt:` and make every route `auth: public`",
            );
        }
        JwtPolicy {
            issuers,
            by_name,
            cache: TokenCache::new(spec.cache_size.unwrap_or(DEFAULT_CACHE_SIZE)),
        }
    }

    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// Keeps the key sets of a policy being replaced (same issuer, same URL).
    pub fn adopt_keys(&self, previous: &JwtPolicy) {
        for issuer in &self.issuers {
            let (Some(new), Some(old)) = (
                issuer.jwks(),
                previous
                    .by_name
                    .get(&issuer.name)
                    .and_then(|&i| previous.issuers[i].jwks()),
            ) else {
                continue;
            };
            new.adopt(old);
        }
    }

    /// Validates the `Authorization` header. Counts the outcome in `metrics`.
    pub async fn validate(
        &self,
        authorization: AuthorizationHeader<'_>,
        identity: &IdentityPolicy,
        metrics: &Metrics,
    ) -> Result<Arc<VerifiedToken>, TokenRejection> {
        let token = match bearer_token(authorization) {
            Ok(token) => token,
            Err(rejection) => {
                metrics.jwt_validation("none", Some(rejection.code().as_str()));
                return Err(rejection);
            }
        };
        let now = unix_now();
        if let Some(hit) = self.cache.get(token, now, |i| {
            self.issuers.get(i).map_or(u64::MAX, Issuer::key_version)
        }) {
            metrics.jwt_cache(true);
            let issuer = &self.issuers[hit.issuer];
            issuer
                .valid
                .get_or_init(|| metrics.jwt_valid_counter(&issuer.name))
                .inc();
            return Ok(hit);
        }
        metrics.jwt_cache(false);
        let (issuer, result) = self.verify(token, now, identity, metrics).await;
        let label = issuer.map_or("unknown", |i| self.issuers[i].name.as_str());
        metrics.jwt_validation(label, result.as_ref().err().map(|r| r.code().as_str()));
        if let Ok(verified) = &result {
            self.cache.insert(token, Arc::clone(verified));
        }
        result
    }

    async fn verify(
        &self,
        token: &str,
        now: u64,
        identity: &IdentityPolicy,
        metrics: &Metrics,
    ) -> (Option<usize>, Result<Arc<VerifiedToken>, TokenRejection>) {
        let peeked = match peek(token) {
            Ok(peeked) => peeked,
            Err(rejection) => return (None, Err(rejection)),
        };
        let Some(iss) = peeked.iss.as_deref() else {
            return (None, Err(TokenRejection::ClaimMissing));
        };
        let Some(&index) = self.by_name.get(iss) else {
            return (None, Err(TokenRejection::WrongIssuer));
        };
        let issuer = &self.issuers[index];
        (
            Some(index),
            self.verify_with(issuer, index, token, &peeked, now, identity, metrics)
                .await,
        )
    }

    #[allow(clippy::too_many_arguments)]
    async fn verify_with(
        &self,
        issuer: &Issuer,
        index: usize,
        token: &str,
        peeked: &Peeked,
        now: u64,
        identity: &IdentityPolicy,
        metrics: &Metrics,
    ) -> Result<Arc<VerifiedToken>, TokenRejection> {
        if !issuer.algorithms.contains(&peeked.alg) {
            return Err(TokenRejection::AlgNotAllowed);
        }
        let key_version = issuer.key_version();
        let jwk_key;
        let key: &DecodingKey = match &issuer.keys {
            KeySource::Secret(secret) => &secret.0,
            KeySource::Jwks(jwks) => {
                jwk_key = find_key(jwks, &issuer.name, peeked, metrics).await?;
                &jwk_key.key
            }
        };
        let validation = &issuer
            .validations
            .get(&peeked.alg)
            .ok_or(TokenRejection::AlgNotAllowed)?
            .0;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| rejection_of(e.kind()))?
            .claims;
        let leeway = issuer.leeway.as_secs();
        if claims
            .get("iat")
            .and_then(Value::as_u64)
            .is_some_and(|iat| iat > now + leeway)
        {
            return Err(TokenRejection::NotYetValid);
        }
        if issuer
            .required_claims
            .iter()
            .any(|c| claims.get(c).is_none_or(Value::is_null))
        {
            return Err(TokenRejection::ClaimMissing);
        }
        let roles = identity.roles(&claims);
        let headers = identity.headers(&claims, &roles);
        Ok(Arc::new(VerifiedToken {
            issuer: index,
            key_version,
            expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            roles,
            headers,
        }))
    }
}

/// The key for a token, fetching the key set again (within its cooldown) when the `kid`
/// is unknown: a rotation at the provider is picked up at once.
async fn find_key(
    jwks: &Jwks,
    issuer: &str,
    peeked: &Peeked,
    metrics: &Metrics,
) -> Result<Arc<super::jwks::VerificationKey>, TokenRejection> {
    if let Lookup::Found(key) = jwks.find(peeked.kid.as_deref(), peeked.alg) {
        return Ok(key);
    }
    if let Some(result) = jwks.refetch_for_unknown_kid().await {
        metrics.jwks_refresh(issuer, result.is_ok());
        if let Err(e) = result {
            tracing::warn!(issuer, error = %e, "JWKS refetch for an unknown kid failed");
            crate::error_reports::jwks_fetch_failed(issuer, &e);
        }
    }
    match jwks.find(peeked.kid.as_deref(), peeked.alg) {
        Lookup::Found(key) => Ok(key),
        Lookup::Unknown => Err(TokenRejection::UnknownKey),
    }
}

/// The `Authorization` header of a request: browsers and clients send at most one.
#[derive(Debug, Clone, Copy)]
pub enum AuthorizationHeader<'a> {
    Absent,
    One(&'a HeaderValue),
    Repeated,
}

impl<'a> AuthorizationHeader<'a> {
    pub fn of(headers: &'a http::HeaderMap) -> Self {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        match (values.next(), values.next()) {
            (None, _) => AuthorizationHeader::Absent,
            (Some(v), None) => AuthorizationHeader::One(v),
            _ => AuthorizationHeader::Repeated,
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750).
fn bearer_token(header: AuthorizationHeader<'_>) -> Result<&str, TokenRejection> {
    let value = match header {
        AuthorizationHeader::Absent => return Err(TokenRejection::Missing),
        AuthorizationHeader::Repeated => return Err(TokenRejection::Malformed),
        AuthorizationHeader::One(value) => value.as_bytes(),
    };
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(TokenRejection::Malformed);
    }
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        // Another scheme (Basic, …) carries no bearer token.
        return Err(TokenRejection::Missing);
    }
    let token = std::str::from_utf8(&value[7..])
        .map_err(|_| TokenRejection::Malformed)?
        .trim();
    if token.is_empty() {
        return Err(TokenRejection::Malformed);
    }
    Ok(token)
}

/// Checks the three-part shape and reads `alg`, `kid` and `iss` without trusting them.
fn peek(token: &str) -> Result<Peeked, TokenRejection> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed);
    };
    let is_b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty()
        || payload.is_empty()
        || !is_b64url(header)
        || !is_b64url(payload)
        || !is_b64url(signature)
    {
        return Err(TokenRejection::Malformed);
    }
    #[derive(serde::Deserialize)]
    struct Header {
        alg: Option<String>,
        kid: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Payload {
        iss: Option<Value>,
    }
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| TokenRejection::Malformed)
    };
    let header: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| TokenRejection::Malformed)?;
    let payload: Payload =
        serde_json::from_slice(&decode(payload)?).map_err(|_| TokenRejection::Malformed)?;
    let alg = header.alg.ok_or(TokenRejection::Malformed)?;
    // `none` and anything jsonwebtoken does not know are refused by name.
    let alg = Algorithm::from_str(&alg).map_err(|_| TokenRejection::AlgNotAllowed)?;
    if signature.is_empty() {
        return Err(TokenRejection::BadSignature);
    }
    let iss = match payload.iss {
        Some(Value::String(iss)) => Some(iss),
        Some(_) => return Err(TokenRejection::WrongIssuer),
        None => None,
    };
    Ok(Peeked {
        alg,
        kid: header.kid,
        iss,
    })
}

fn rejection_of(kind: &ErrorKind) -> TokenRejection {
    match kind {
        ErrorKind::InvalidSignature => TokenRejection::BadSignature,
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => TokenRejection::ClaimMissing,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm => TokenRejection::AlgNotAllowed,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Provider(_) => TokenRejection::BadSignature,
        _ => TokenRejection::Malformed,
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn compile_issuer(
    i: usize,
    spec: &IssuerSpec,
    environment: Environment,
    secrets: &dyn SecretLookup,
    diag: &mut Diagnostics,
) -> Option<Issuer> {
    let path = |field: &str| format!("jwt.issuers[{i}].{field}");
    let production = environment == Environment::Production;
    let errors_before = diag.errors().len();
    let name = spec.issuer.trim().to_owned();
    if name.is_empty() {
        diag.error(path("issuer"), "cannot be empty");
    }

    let mut algorithms = Vec::with_capacity(spec.algorithms.len());
    for (j, alg) in spec.algorithms.iter().enumerate() {
        if alg.trim().eq_ignore_ascii_case("none") {
            diag.error(
                format!("jwt.issuers[{i}].algorithms[{j}]"),
                "`none` is never allowed: it means an unsigned token",
            );
            continue;
        }
        match Algorithm::from_str(alg.trim()) {
            Ok(a) => algorithms.push(a),
            Err(_) => diag.error(
                format!("jwt.issuers[{i}].algorithms[{j}]"),
                format!("`{alg}` is not a JWS algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512)"),
            ),
        }
    }
    if spec.algorithms.is_empty() {
        diag.error(
            path("algorithms"),
            "list the algorithms this issuer signs with, e.g. [RS256]",
        );
    }

    let keys = match (&spec.jwks_url, &spec.secret) {
        (Some(_), Some(_)) => {
            diag.error(
                path("secret"),
                "an issuer has one key source: `jwks_url` or `secret`, not both",
            );
            None
        }
        (None, None) => {
            diag.error(
                path("jwks_url"),
                "an issuer needs `jwks_url` (asymmetric keys) or `secret` (HMAC)",
            );
            None
        }
        (Some(url), None) => {
            for (j, alg) in algorithms.iter().enumerate() {
                if alg.family() == AlgorithmFamily::Hmac {
                    diag.error(
                        format!("jwt.issuers[{i}].algorithms[{j}]"),
                        "an HMAC algorithm cannot be used with a JWKS issuer: a token could be signed with the public key as the secret",
                    );
                }
            }
            match url::Url::parse(url.trim()) {
                Ok(parsed) if parsed.scheme() == "https" => {}
                Ok(parsed) if parsed.scheme() == "http" && production => diag.error(
                    path("jwks_url"),
                    "production fetches keys over https only: an attacker on the path could replace them",
                ),
                Ok(parsed) if parsed.scheme() == "http" => diag.warn(path("jwks_url"), "keys fetched over plain http (refused in production)"),
                Ok(_) => diag.error(path("jwks_url"), "must be an http(s) URL"),
                Err(e) => diag.error(path("jwks_url"), format!("`{url}` is not a URL: {e}")),
            }
            Some(KeySource::Jwks(Jwks::new(
                url.trim().to_owned(),
                spec.jwks_refresh.unwrap_or(DEFAULT_JWKS_REFRESH),
                spec.jwks_cooldown.unwrap_or(DEFAULT_JWKS_COOLDOWN),
                spec.jwks_stale_after.unwrap_or(DEFAULT_JWKS_STALE_AFTER),
            )))
        }
        (None, Some(secret_name)) => {
            for (j, alg) in algorithms.iter().enumerate() {
                if alg.family() != AlgorithmFamily::Hmac {
                    diag.error(
                        format!("jwt.issuers[{i}].algorithms[{j}]"),
                        "an issuer with a `secret` signs with HS256, HS384 or HS512; use `jwks_url` for asymmetric keys",
                    );
                }
            }
            match secrets.get(secret_name).filter(|s| !s.is_empty()) {
                None => {
                    diag.error(path("secret"), format!("secret {secret_name} is not set"));
                    None
                }
                Some(secret) => {
                    if secret.len() < MIN_HMAC_SECRET_BYTES {
                        let message = format!(
                            "secret {secret_name} is {} bytes; HMAC keys need at least {MIN_HMAC_SECRET_BYTES}",
                            secret.len()
                        );
                        if production {
                            diag.error(path("secret"), message);
                        } else {
                            diag.warn(path("secret"), format!("{message} (refused in production)"));
                        }
                    }
                    Some(KeySource::Secret(DecodingKeyDebug(
                        DecodingKey::from_secret(secret.expose()),
                    )))
                }
            }
        }
    };

    if spec.audiences.is_empty() {
        if production {
            diag.error(path("audiences"), "production requires audiences: without them a token minted for another service is accepted");
        } else {
            diag.warn(
                path("audiences"),
                "no audience: tokens for any audience are accepted (refused in production)",
            );
        }
    }
    let leeway = spec.leeway.unwrap_or(DEFAULT_LEEWAY);
    if leeway > MAX_PRODUCTION_LEEWAY {
        if production {
            diag.error(path("leeway"), "at most 60s in production");
        } else {
            diag.warn(path("leeway"), "above 60s (refused in production)");
        }
    }
    for (j, claim) in spec.required_claims.iter().enumerate() {
        if claim.trim().is_empty() {
            diag.error(
                format!("jwt.issuers[{i}].required_claims[{j}]"),
                "cannot be empty",
            );
        }
    }
    if diag.errors().len() > errors_before {
        return None;
    }

    let validations = algorithms
        .iter()
        .map(|&alg| {
            let mut validation = Validation::new(alg);
            validation.leeway = leeway.as_secs();
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
            validation.set_issuer(&[name.as_str()]);
            if spec.audiences.is_empty() {
                validation.validate_aud = false;
            } else {
                validation.set_audience(&spec.audiences);
            }
            (alg, ValidationDebug(validation))
        })
        .collect();
    Some(Issuer {
        name,
        keys: keys?,
        algorithms,
        leeway,
        required_claims: spec
            .required_claims
            .iter()
            .map(|c| c.trim().to_owned())
            .collect(),
        validations,
        valid: std::sync::OnceLock::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::EnvSecrets;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("header")
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        assert_eq!(
            bearer_token(AuthorizationHeader::Absent),
            Err(TokenRejection::Missing)
        );
        assert_eq!(
            bearer_token(AuthorizationHeader::One(&hv("Basic abc"))),
            Err(TokenRejection::Missing)
        );
        assert_eq!(
            bearer_token(AuthorizationHeader::One(&hv("Bearer "))),
            Err(TokenRejection::Malformed)
        );
        assert_eq!(
            bearer_token(AuthorizationHeader::One(&hv("bearer a.b.c"))),
            Ok("a.b.c")
        );
        let huge = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(
            bearer_token(AuthorizationHeader::One(&hv(&huge))),
            Err(TokenRejection::Malformed)
        );
        assert_eq!(
            bearer_token(AuthorizationHeader::Repeated),
            Err(TokenRejection::Malformed)
        );
    }

    fn b64(json: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn peek_refuses_bad_shapes_and_none() {
        let claims = b64(r#"{"iss":"https://id.example.com"}"#);
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.sig", ".e30.sig"] {
            assert_eq!(peek(bad).err(), Some(TokenRejection::Malformed), "{bad:?}");
        }
        let none = format!("{}.{claims}.", b64(r#"{"alg":"none"}"#));
        assert_eq!(peek(&none).err(), Some(TokenRejection::AlgNotAllowed));
        let none_upper = format!("{}.{claims}.", b64(r#"{"alg":"NONE"}"#));
        assert_eq!(peek(&none_upper).err(), Some(TokenRejection::AlgNotAllowed));
        let ok = format!(
            "{}.{claims}.c2ln",
            b64(r#"{"alg":"RS256","kid":"k1","jku":"https://evil"}"#)
        );
        let peeked = peek(&ok).expect("peeks");
        assert_eq!(
            (peeked.alg, peeked.kid.as_deref(), peeked.iss.as_deref()),
            (Algorithm::RS256, Some("k1"), Some("https://id.example.com"))
        );
    }

    fn issuer_spec(yaml: &str) -> IssuerSpec {
        serde_yaml::from_str(yaml).expect("issuer spec")
    }

    #[test]
    fn production_is_strict_and_dev_warns() {
        let spec = issuer_spec(
            "{issuer: 'http://id', jwks_url: 'http://id/jwks', algorithms: [RS256, HS256, none], leeway: 120s}",
        );
        let env: HashMap<String, String> = HashMap::new();
        let mut diag = Diagnostics::default();
        assert!(compile_issuer(
            0,
            &spec,
            Environment::Production,
            &EnvSecrets(&env),
            &mut diag
        )
        .is_none());
        let messages: Vec<_> = diag
            .errors()
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        for expected in [
            "jwt.issuers[0].algorithms[2]: `none` is never allowed",
            "jwt.issuers[0].algorithms[1]: an HMAC algorithm cannot be used with a JWKS issuer",
            "jwt.issuers[0].jwks_url: production fetches keys over https only",
            "jwt.issuers[0].audiences: production requires audiences",
            "jwt.issuers[0].leeway: at most 60s in production",
        ] {
            assert!(
                messages.iter().any(|m| m.starts_with(expected)),
                "{expected:?} in {messages:#?}"
            );
        }

        let spec = issuer_spec(
            "{issuer: 'http://id', jwks_url: 'http://id/jwks', algorithms: [RS256], leeway: 120s}",
        );
        let mut diag = Diagnostics::default();
        assert!(compile_issuer(0, &spec, Environment::Dev, &EnvSecrets(&env), &mut diag).is_some());
        assert!(!diag.has_errors());
        assert_eq!(diag.warnings().len(), 3, "{:?}", diag.warnings());
    }

    #[test]
    fn hmac_issuers_need_a_long_secret_in_production() {
        let spec =
            issuer_spec("{issuer: 'svc', audiences: [a], secret: JWT_SECRET, algorithms: [HS256]}");
        let short: HashMap<String, String> =
            HashMap::from([("JWT_SECRET".into(), "short-secret".into())]);
        let mut diag = Diagnostics::default();
        assert!(compile_issuer(
            0,
            &spec,
            Environment::Production,
            &EnvSecrets(&short),
            &mut diag
        )
        .is_none());
        assert!(diag.errors()[0].message.contains("at least 32"));
        assert!(
            !diag.errors()[0].message.contains("short-secret"),
            "never the value"
        );
        let missing: HashMap<String, String> = HashMap::new();
        let mut diag = Diagnostics::default();
        assert!(
            compile_issuer(0, &spec, Environment::Dev, &EnvSecrets(&missing), &mut diag).is_none()
        );
        assert_eq!(diag.errors()[0].path, "jwt.issuers[0].secret");
        let spec =
            issuer_spec("{issuer: 'svc', audiences: [a], secret: JWT_SECRET, algorithms: [RS256]}");
        let mut diag = Diagnostics::default();
        compile_issuer(0, &spec, Environment::Dev, &EnvSecrets(&short), &mut diag);
        assert_eq!(diag.errors()[0].path, "jwt.issuers[0].algorithms[0]");
    }
}
