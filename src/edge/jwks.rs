//! An issuer's JSON Web Key Set: fetched at start, cached, refreshed on an interval
//! (`Cache-Control: max-age` honoured within bounds) and at once when a token names an
//! unknown `kid` — but never more often than the cooldown, so forged `kid`s cannot make
//! gardien hammer the identity provider. When the provider is unreachable the last good key
//! set stays in use.
//!
//! Every change of the key set bumps a version; verified tokens remember the version they
//! were checked against, so a key removed from the set stops validating cached tokens too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use parking_lot::Mutex;

/// Shortest refresh interval `Cache-Control: max-age` can ask for.
const MIN_REFRESH: Duration = Duration::from_secs(30);
/// Time allowed for one JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// `last_refetch_ms` before the first refetch.
const NEVER: u64 = u64::MAX;

/// One usable verification key.
pub struct VerificationKey {
    pub key: DecodingKey,
    pub family: AlgorithmFamily,
    /// The JWK's `alg`, when it names one: the token's `alg` must then be exactly it.
    pub alg: Option<Algorithm>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        alg.family() == self.family && self.alg.is_none_or(|a| a == alg)
    }
}

#[derive(Debug, Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<VerificationKey>>,
    /// Keys published without a `kid`.
    unnamed: Vec<Arc<VerificationKey>>,
    /// The published JWKs, canonical and sorted: equal fingerprints, same key set.
    fingerprint: Vec<String>,
    fetched_at: Option<Instant>,
}

/// Why a fetch failed. The last good key set stays in use.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("document larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("not a JWK set: {0}")]
    Invalid(String),
    #[error("no usable signing key in the set")]
    NoUsableKey,
}

/// The result of a successful fetch.
#[derive(Debug, Clone, Copy)]
pub struct Fetched {
    pub keys: usize,
    /// Whether the key set differs from the previous one.
    pub changed: bool,
}

/// The key set of one issuer.
#[derive(Debug)]
pub struct Jwks {
    url: String,
    keys: ArcSwap<KeySet>,
    version: AtomicU64,
    epoch: Instant,
    /// Last fetch caused by an unknown `kid`; the cooldown counts from it. Scheduled
    /// refreshes do not count, so a rotation right after one is still picked up at once.
    last_refetch_ms: AtomicU64,
    next_refresh_ms: AtomicU64,
    fetch_lock: tokio::sync::Mutex<()>,
    last_error: Mutex<Option<String>>,
    refresh_max: Duration,
    cooldown: Duration,
    stale_after: Duration,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Found(Arc<VerificationKey>),
    Unknown,
}

impl Jwks {
    pub fn new(
        url: String,
        refresh_max: Duration,
        cooldown: Duration,
        stale_after: Duration,
    ) -> Self {
        Jwks {
            url,
            keys: ArcSwap::from_pointee(KeySet::default()),
            version: AtomicU64::new(0),
            epoch: Instant::now(),
            last_refetch_ms: AtomicU64::new(NEVER),
            next_refresh_ms: AtomicU64::new(0),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
            refresh_max,
            cooldown,
            stale_after,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bumped at every change of the key set.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The key for a token's `kid` and `alg`. A token without `kid` is accepted only when
    /// the set has exactly one key that fits its `alg`.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let keys = self.keys.load();
        let found = match kid {
            Some(kid) => keys.by_kid.get(kid).filter(|k| k.accepts(alg)).cloned(),
            None => {
                let mut fitting = keys
                    .by_kid
                    .values()
                    .chain(keys.unnamed.iter())
                    .filter(|k| k.accepts(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Some(Arc::clone(only)),
                    _ => None,
                }
            }
        };
        found.map_or(Lookup::Unknown, Lookup::Found)
    }

    pub fn has_keys(&self) -> bool {
        let keys = self.keys.load();
        !keys.by_kid.is_empty() || !keys.unnamed.is_empty()
    }

    /// Time since the last successful fetch.
    pub fn age(&self) -> Option<Duration> {
        self.keys.load().fetched_at.map(|at| at.elapsed())
    }

    /// Whether the key set is older than `jwks_stale_after` (or was never fetched).
    pub fn is_stale(&self) -> bool {
        self.age().is_none_or(|age| age > self.stale_after)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Whether the scheduled refresh is due.
    pub fn is_due(&self) -> bool {
        self.now_ms() >= self.next_refresh_ms.load(Ordering::Acquire)
    }

    /// Fetches again because a token named a `kid` the set does not have. `None` when a
    /// fetch happened within the cooldown (the caller looks the key up again either way:
    /// that recent fetch may have brought it).
    pub async fn refetch_for_unknown_kid(&self) -> Option<Result<Fetched, JwksError>> {
        if self.in_cooldown() {
            return None;
        }
        let _guard = self.fetch_lock.lock().await;
        // Another request may have fetched while this one waited for the lock.
        if self.in_cooldown() {
            return None;
        }
        self.last_refetch_ms.store(self.now_ms(), Ordering::Release);
        Some(self.fetch_locked().await)
    }

    fn in_cooldown(&self) -> bool {
        let last = self.last_refetch_ms.load(Ordering::Acquire);
        last != NEVER && self.now_ms().saturating_sub(last) < duration_ms(self.cooldown)
    }

    /// Fetches the key set now (start, schedule).
    pub async fn fetch(&self) -> Result<Fetched, JwksError> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<Fetched, JwksError> {
        let result = self.download().await;
        let next = match &result {
            Ok((_, max_age)) => max_age.map_or(self.refresh_max, |age| {
                age.clamp(MIN_REFRESH.min(self.refresh_max), self.refresh_max)
            }),
            Err(_) => MIN_REFRESH.min(self.refresh_max),
        };
        self.next_refresh_ms
            .store(self.now_ms() + duration_ms(next), Ordering::Release);
        match result {
            Ok((set, _)) => {
                *self.last_error.lock() = None;
                Ok(self.install(set))
            }
            Err(e) => {
                *self.last_error.lock() = Some(e.to_string());
                Err(e)
            }
        }
    }

    async fn download(&self) -> Result<(KeySet, Option<Duration>), JwksError> {
        let response = http_client()
            .get(&self.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| JwksError::Request(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let max_age = response
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(JwksError::TooLarge);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| JwksError::Request(e.without_url().to_string()))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(JwksError::TooLarge);
        }
        let set = parse_key_set(&body)?;
        Ok((set, max_age))
    }

    /// Installs a JWKS document directly, as if fetched: for benchmarks and tests that
    /// have no identity provider to fetch from.
    pub fn install_document(&self, body: &[u8]) -> Result<Fetched, JwksError> {
        Ok(self.install(parse_key_set(body)?))
    }

    /// Swaps in a key set; bumps the version when it differs from the current one.
    fn install(&self, set: KeySet) -> Fetched {
        let keys = set.by_kid.len() + set.unnamed.len();
        let changed = set.fingerprint != self.keys.load().fingerprint;
        self.keys.store(Arc::new(set));
        if changed {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        Fetched { keys, changed }
    }

    /// Takes over the keys of the same JWKS from a policy being replaced, so a reload
    /// does not start with an empty set.
    pub fn adopt(&self, previous: &Jwks) {
        if previous.url != self.url {
            return;
        }
        self.keys.store(previous.keys.load_full());
        self.version.store(previous.version(), Ordering::Release);
        // Schedules are relative to each instance's epoch; refresh the new one soon.
        let delay = MIN_REFRESH.min(self.refresh_max);
        self.next_refresh_ms
            .store(self.now_ms() + duration_ms(delay), Ordering::Release);
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// The one HTTP client of the JWKS fetches: no redirects (a JWKS URL is configured, not
/// discovered), bounded time.
fn http_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // Pingora and reqwest bring two rustls backends; pick one explicitly (idempotent).
        pingora::tls::install_default_crypto_provider();
        reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gardien/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    })
}

/// `max-age=N` of a `Cache-Control` value; `no-cache`/`no-store` count as 0.
fn parse_max_age(cache_control: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            max_age = value
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    max_age
}

/// Reads a JWK set, keeping the signing keys gardien can use and skipping the others one
/// by one (an unknown key type must not take the whole set down). Symmetric (`oct`) keys
/// are refused: a JWKS issuer is asymmetric, and an HMAC key there would open the door to
/// algorithm confusion.
fn parse_key_set(body: &[u8]) -> Result<KeySet, JwksError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| JwksError::Invalid(e.to_string()))?;
    let mut set = KeySet {
        fetched_at: Some(Instant::now()),
        ..KeySet::default()
    };
    for raw in document.keys {
        let fingerprint = raw.to_string();
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
            tracing::debug!("skipping a JWK gardien cannot read");
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(key_alg) => match signing_algorithm(key_alg) {
                Some(alg) => Some(alg),
                None => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            tracing::debug!(kid = ?jwk.common.key_id, "skipping an invalid JWK");
            continue;
        };
        let family = key.family();
        if family == AlgorithmFamily::Hmac {
            tracing::warn!(kid = ?jwk.common.key_id, "ignoring a symmetric key published in a JWKS");
            continue;
        }
        let key = Arc::new(VerificationKey { key, family, alg });
        match jwk.common.key_id {
            Some(kid) => {
                if set.by_kid.contains_key(&kid) {
                    tracing::warn!(
                        kid = kid.as_str(),
                        "duplicate kid in JWKS; keeping the first"
                    );
                    continue;
                }
                set.by_kid.insert(kid, key);
            }
            None => set.unnamed.push(key),
        }
        set.fingerprint.push(fingerprint);
    }
    if set.by_kid.is_empty() && set.unnamed.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    set.fingerprint.sort();
    Ok(set)
}

fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }

    const RSA_JWK: &str = r#"{"kty":"RSA","kid":"a","alg":"RS256","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;

    #[test]
    fn key_sets_keep_signing_keys_and_skip_the_rest() {
        let body = format!(
            r#"{{"keys":[{RSA_JWK},{{"kty":"oct","kid":"h","k":"c2VjcmV0"}},{{"kty":"weird","kid":"w"}},{{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}}]}}"#
        );
        let set = parse_key_set(body.as_bytes()).expect("one usable key");
        assert_eq!(set.by_kid.len(), 1);
        assert!(set.by_kid.contains_key("a"));
        assert!(matches!(
            parse_key_set(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
            Err(JwksError::NoUsableKey)
        ));
        assert!(matches!(
            parse_key_set(b"not json"),
            Err(JwksError::Invalid(_))
        ));
    }

    #[test]
    fn lookups_respect_kid_family_and_alg() {
        let jwks = Jwks::new(
            "http://127.0.0.1:9/jwks".into(),
            Duration::from_secs(600),
            Duration::from_secs(10),
            Duration::from_secs(3600),
        );
        jwks.keys.store(Arc::new(
            parse_key_set(format!(r#"{{"keys":[{RSA_JWK}]}}"#).as_bytes()).expect("set"),
        ));
        assert!(matches!(
            jwks.find(Some("a"), Algorithm::RS256),
            Lookup::Found(_)
        ));
        assert!(
            matches!(jwks.find(None, Algorithm::RS256), Lookup::Found(_)),
            "single key"
        );
        assert!(
            matches!(jwks.find(Some("a"), Algorithm::RS384), Lookup::Unknown),
            "alg pinned by the JWK"
        );
        assert!(
            matches!(jwks.find(Some("a"), Algorithm::ES256), Lookup::Unknown),
            "family"
        );
        assert!(matches!(
            jwks.find(Some("b"), Algorithm::RS256),
            Lookup::Unknown
        ));
    }
}
