//! `demo_api`: a stand-in for the team's existing Node/Express API.
//!
//! It exists so `make demo` and the integration/browser tests have a realistic
//! upstream behind gardien: sign-up, login issuing RS256 JWTs, a JWKS document
//! the gateway fetches, and endpoints that echo what the gateway forwarded.
//! Like the real Express API it sends `Access-Control-Allow-Origin: *` and
//! `X-Powered-By: Express` on every response, so tests can check that gardien
//! rewrites and strips them.
//!
//! It never verifies tokens or identity headers itself: that is the gateway's
//! job. Users live in memory and vanish on restart.
//!
//! Run it with `cargo run --example demo_api`. Environment:
//!
//! | variable            | default                 | meaning                                          |
//! | ------------------- | ----------------------- | ------------------------------------------------ |
//! | `DEMO_API_LISTEN`   | `127.0.0.1:3000`        | address to bind (port `0` picks a free port)     |
//! | `DEMO_API_ISSUER`   | `http://<bound address>` | the `iss` claim of minted tokens                |
//! | `DEMO_API_KEY_FILE` | the embedded demo key   | PEM RSA private key (PKCS#8 or PKCS#1), ≥ 2048 b |
//! | `DEMO_ADMINS`       | none                    | comma-separated emails that get role `admin`     |
//! | `RUST_LOG`          | `info`                  | tracing filter (logs go to stderr)               |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use argon2::password_hash::{self, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params, Version};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::RwLock;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tracing::{error, info, warn};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/// !!! DEMO KEY — NEVER USE IN PRODUCTION !!!
///
/// This RSA private key is committed to the repository so demos and tests
/// start instantly (generating a key in a debug build is slow). Anyone can
/// read it, so anyone can mint tokens that verify against it. A gateway
/// trusting this key's JWKS in a real deployment would accept forged
/// identities. Point `DEMO_API_KEY_FILE` at another key if you need one.
const DEMO_KEY_PEM: &str = include_str!("demo_api/demo_rsa_key.pem");

/// Listen address when `DEMO_API_LISTEN` is unset; the Express API's port.
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// `aud` claim of every token; the demo gateway policy expects this value.
const AUDIENCE: &str = "gardien-demo";
/// Token lifetime, short like the real API's access tokens.
const TOKEN_TTL_SECS: u64 = 900;
/// Request bodies above this are refused, so a client cannot exhaust memory.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// RFC 5321 path limit, the bound the real API applies.
const MAX_EMAIL_CHARS: usize = 254;
/// Accepted password lengths, in characters.
const PASSWORD_CHARS: RangeInclusive<usize> = 8..=128;
/// Keys below this size are refused: RS256 with less is not worth demoing.
const MIN_RSA_BITS: usize = 2048;
/// Argon2 memory cost in KiB; deliberately light because tests run debug builds.
const ARGON2_M_KIB: u32 = 4096;
/// `Cache-Control` of the JWKS, so the gateway may cache it briefly.
const JWKS_CACHE_CONTROL: &str = "public, max-age=300";

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Settings read once at start-up from the environment.
#[derive(Debug, Clone)]
struct Config {
    /// Address to bind.
    listen: String,
    /// The `iss` claim of minted tokens; empty until bound when `DEMO_API_ISSUER` is unset,
    /// then `http://<bound address>` (so port 0 works too).
    issuer: String,
    /// Lower-cased emails that receive the `admin` role.
    admins: HashSet<String>,
    /// PEM file replacing the embedded demo key, when set.
    key_file: Option<PathBuf>,
}

impl Config {
    /// Builds the configuration through `lookup`, so tests can pass a map
    /// instead of mutating the process environment. Empty values count as unset.
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Self {
            listen: get("DEMO_API_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            issuer: get("DEMO_API_ISSUER").unwrap_or_default(),
            admins: get("DEMO_ADMINS")
                .map(|list| parse_admins(&list))
                .unwrap_or_default(),
            key_file: get("DEMO_API_KEY_FILE").map(PathBuf::from),
        }
    }

    /// Reads the real process environment.
    fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Splits `DEMO_ADMINS` into normalised emails, ignoring blanks.
fn parse_admins(list: &str) -> HashSet<String> {
    list.split(',')
        .map(normalize_email)
        .filter(|e| !e.is_empty())
        .collect()
}

/// Emails are compared case-insensitively, as the real API does.
fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

// ---------------------------------------------------------------------------
// Token signing
// ---------------------------------------------------------------------------

/// The RSA signing key plus the public data the JWKS publishes.
///
/// `Debug` is hand-written so the private key can never reach a log line.
struct Signer {
    /// Private key in the form jsonwebtoken signs with (PKCS#1 DER).
    encoding: EncodingKey,
    /// Public half, for the JWKS.
    public: RsaPublicKey,
    /// Stable key id: first 16 hex chars of SHA-256 of the modulus.
    kid: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

/// The claims of every minted token; the gateway forwards `sub`, `email`, `roles`.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: String,
    email: &'a str,
    roles: &'a [String],
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

impl Signer {
    /// Parses a PEM RSA private key (PKCS#8 `PRIVATE KEY` or PKCS#1
    /// `RSA PRIVATE KEY`). Errors never quote the key material.
    fn from_pem(pem: &str) -> Result<Self, String> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|e| format!("not a PEM RSA private key (PKCS#8 or PKCS#1): {e}"))?;
        let bits = private.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "RSA key has {bits} bits, need at least {MIN_RSA_BITS}"
            ));
        }
        let der = private
            .to_pkcs1_der()
            .map_err(|e| format!("could not re-encode the RSA key: {e}"))?;
        let public = private.to_public_key();
        Ok(Self {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            kid: key_id(&public),
            public,
        })
    }

    /// The JWKS document the gateway fetches to verify our tokens.
    fn jwks(&self) -> Value {
        json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": self.kid,
                "n": URL_SAFE_NO_PAD.encode(self.public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(self.public.e().to_bytes_be()),
            }]
        })
    }

    /// Mints an RS256 access token for `user`, valid from `now` for 900 s.
    fn mint(&self, user: &User, issuer: &str, now: u64) -> jsonwebtoken::errors::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let claims = Claims {
            iss: issuer,
            aud: AUDIENCE,
            sub: user.id.to_string(),
            email: &user.email,
            roles: &user.roles,
            iat: now,
            nbf: now,
            exp: now + TOKEN_TTL_SECS,
            jti: Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }
}

/// Derives the `kid` from the modulus, so it changes exactly when the key does.
fn key_id(public: &RsaPublicKey) -> String {
    Sha256::digest(public.n().to_bytes_be())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads the key named by the configuration, or the embedded demo key.
fn load_signer(config: &Config) -> Result<Signer, String> {
    match &config.key_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read DEMO_API_KEY_FILE {}: {e}", path.display()))?;
            Signer::from_pem(&pem).map_err(|e| format!("DEMO_API_KEY_FILE {}: {e}", path.display()))
        }
        None => {
            warn!("signing with the embedded DEMO key: never use it in production");
            Signer::from_pem(DEMO_KEY_PEM).map_err(|e| format!("embedded demo key: {e}"))
        }
    }
}

// ---------------------------------------------------------------------------
// Users and passwords
// ---------------------------------------------------------------------------

/// A registered account. `Debug` hides the password hash.
#[derive(Clone)]
struct User {
    id: Uuid,
    /// The email as the user typed it (the map key is the normalised form).
    email: String,
    roles: Vec<String>,
    /// PHC-format argon2id hash.
    password_hash: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("roles", &self.roles)
            .field("password_hash", &"[redacted]")
            .finish()
    }
}

/// A password from a request body; `Debug` never shows it.
#[derive(Deserialize)]
#[serde(transparent)]
struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// The body of both register and login; unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: Password,
}

/// The argon2id hasher with light, fixed parameters (m=4 MiB, t=1, p=1).
fn hasher() -> Result<Argon2<'static>, AppError> {
    let params = Params::new(ARGON2_M_KIB, 1, 1, None)
        .map_err(|e| AppError::Internal(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(
        argon2::Algorithm::Argon2id,
        Version::V0x13,
        params,
    ))
}

/// Hashes on the blocking pool, since argon2 is CPU-bound by design.
async fn hash_password(password: Password) -> Result<String, AppError> {
    blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| AppError::Internal(format!("salt: {e}")))?;
        hasher()?
            .hash_password(password.0.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| AppError::Internal(format!("argon2 hash: {e}")))
    })
    .await
}

/// Checks `password` against `stored`; when there is no such user it checks a
/// dummy hash instead, so unknown emails take as long as wrong passwords.
async fn verify_password(password: Password, stored: Option<String>) -> Result<bool, AppError> {
    let user_exists = stored.is_some();
    let hash = match stored {
        Some(hash) => hash,
        None => dummy_hash().await?,
    };
    let matched = blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| AppError::Internal(format!("stored hash unreadable: {e}")))?;
        match hasher()?.verify_password(password.0.as_bytes(), &parsed) {
            Ok(()) => Ok(true),
            Err(password_hash::Error::Password) => Ok(false),
            Err(e) => Err(AppError::Internal(format!("argon2 verify: {e}"))),
        }
    })
    .await?;
    Ok(matched && user_exists)
}

/// A hash of a random password, computed once, for the unknown-email path.
async fn dummy_hash() -> Result<String, AppError> {
    static DUMMY: OnceCell<String> = OnceCell::const_new();
    DUMMY
        .get_or_try_init(|| hash_password(Password(Uuid::new_v4().to_string())))
        .await
        .cloned()
}

/// Runs CPU-bound work off the async workers and flattens the join error.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(format!("blocking task failed: {e}")))?
}

/// Refuses emails the real API would refuse: one `@`, both sides non-empty.
fn validate_email(email: &str) -> Result<(), AppError> {
    let mut parts = email.split('@');
    let well_formed = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty()
    );
    if !well_formed || email.chars().count() > MAX_EMAIL_CHARS {
        return Err(AppError::Validation(format!(
            "email must look like name@domain and be at most {MAX_EMAIL_CHARS} characters"
        )));
    }
    Ok(())
}

/// Refuses passwords outside 8..=128 characters.
fn validate_password(password: &Password) -> Result<(), AppError> {
    if !PASSWORD_CHARS.contains(&password.0.chars().count()) {
        return Err(AppError::Validation(format!(
            "password must be {} to {} characters",
            PASSWORD_CHARS.start(),
            PASSWORD_CHARS.end()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Application state
// ---------------------------------------------------------------------------

/// Everything the handlers share.
#[derive(Debug)]
struct AppState {
    issuer: String,
    admins: HashSet<String>,
    signer: Signer,
    /// Pre-rendered JWKS; the key never changes while running.
    jwks: Value,
    /// Users keyed by normalised email. The lock is never held across `.await`.
    users: RwLock<HashMap<String, User>>,
}

impl AppState {
    /// Builds the state from the configuration and a loaded key.
    fn new(config: &Config, signer: Signer) -> Self {
        Self {
            issuer: config.issuer.clone(),
            admins: config.admins.clone(),
            jwks: signer.jwks(),
            signer,
            users: RwLock::new(HashMap::new()),
        }
    }

    /// `["admin"]` for emails listed in `DEMO_ADMINS`, otherwise none.
    fn roles_for(&self, normalized_email: &str) -> Vec<String> {
        if self.admins.contains(normalized_email) {
            vec!["admin".to_owned()]
        } else {
            Vec::new()
        }
    }

    /// Inserts a new user unless the email was taken meanwhile (two
    /// concurrent sign-ups for one email: exactly one wins).
    fn insert_user(&self, key: String, user: User) -> Result<(), AppError> {
        match self.users.write().entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => Err(AppError::EmailTaken),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(user);
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Every failure a handler can return, rendered as
/// `{"error":{"code":...,"message":...}}` like the Express API.
#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("request body exceeds {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// Status and stable machine-readable code for each variant.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Validation(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Maps a body-read failure: too large is 413, anything else is bad input.
    fn from_body_rejection(rejection: axum::extract::rejection::BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge
        } else {
            Self::InvalidJson("could not read the request body".to_owned())
        }
    }

    /// Syntax errors are `invalid_json`; well-formed JSON of the wrong shape
    /// (unknown or missing fields, wrong types) is `validation_failed`.
    fn from_json_error(e: &serde_json::Error) -> Self {
        match e.classify() {
            serde_json::error::Category::Data => Self::Validation(e.to_string()),
            _ => Self::InvalidJson(format!("request body is not valid JSON: {e}")),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            error!(%detail, "internal error");
        }
        let (status, code) = self.status_and_code();
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
    }
}

// ---------------------------------------------------------------------------
// JSON extractor
// ---------------------------------------------------------------------------

/// Like `axum::Json`, but every rejection is an [`AppError`] rendered as
/// JSON, instead of axum's plain-text 4xx bodies.
#[derive(Debug)]
struct JsonBody<T>(T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !content_type_allows_json(req.headers()) {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(AppError::from_body_rejection)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AppError::from_json_error(&e))
    }
}

/// A missing `Content-Type` is tolerated (quick curl demos); a present one
/// must be `application/json` or a `+json` type.
fn content_type_allows_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

/// What sign-up returns: the account without its hash.
#[derive(Debug, Serialize)]
struct UserView {
    id: String,
    email: String,
    roles: Vec<String>,
}

/// What login returns.
#[derive(Debug, Serialize)]
struct TokenResponse {
    token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// `POST /api/auth/register`: validates, hashes, stores; 409 if taken.
async fn register(
    State(state): State<Arc<AppState>>,
    JsonBody(creds): JsonBody<Credentials>,
) -> Result<(StatusCode, Json<UserView>), AppError> {
    validate_email(&creds.email)?;
    validate_password(&creds.password)?;
    let key = normalize_email(&creds.email);
    // Cheap early answer; `insert_user` re-checks under the write lock.
    if state.users.read().contains_key(&key) {
        return Err(AppError::EmailTaken);
    }
    let user = User {
        id: Uuid::new_v4(),
        roles: state.roles_for(&key),
        email: creds.email,
        password_hash: hash_password(creds.password).await?,
    };
    state.insert_user(key, user.clone())?;
    info!(user_id = %user.id, admin = !user.roles.is_empty(), "user registered");
    let view = UserView {
        id: user.id.to_string(),
        email: user.email,
        roles: user.roles,
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// `POST /api/auth/login`: the same 401 for an unknown email and a wrong
/// password, so the endpoint does not reveal which accounts exist.
async fn login(
    State(state): State<Arc<AppState>>,
    JsonBody(creds): JsonBody<Credentials>,
) -> Result<Json<TokenResponse>, AppError> {
    let user = state
        .users
        .read()
        .get(&normalize_email(&creds.email))
        .cloned();
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let matched = verify_password(creds.password, stored).await?;
    let Some(user) = user.filter(|_| matched) else {
        return Err(AppError::InvalidCredentials);
    };
    let now = jsonwebtoken::get_current_timestamp();
    let token = state
        .signer
        .mint(&user, &state.issuer, now)
        .map_err(|e| AppError::Internal(format!("signing token: {e}")))?;
    info!(user_id = %user.id, "user logged in");
    Ok(Json(TokenResponse {
        token,
        token_type: "Bearer",
        expires_in: TOKEN_TTL_SECS,
    }))
}

/// `GET /.well-known/jwks.json`: public keys, cacheable for five minutes.
async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, JWKS_CACHE_CONTROL)],
        Json(state.jwks.clone()),
    )
}

/// `GET /api/me`: echoes the identity headers set by the gateway, unverified,
/// so tests can see exactly what gardien injected.
async fn me(headers: HeaderMap) -> Json<Value> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Json(json!({
        "user_id": get("x-user-id"),
        "email": get("x-user-email"),
        "roles": get("x-user-roles"),
        "request_id": get("x-request-id"),
        "identity_signature": get("x-gardien-identity"),
    }))
}

/// `GET /api/health`: liveness for the gateway's upstream checks.
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `ANY /api/echo[/*]`: reports the request as received, so tests can see
/// what the gateway forwarded, added or stripped.
async fn echo(method: Method, uri: Uri, headers: HeaderMap) -> Json<Value> {
    Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": headers_as_map(&headers),
    }))
}

/// Header names (already lower-case in `http`) to values; repeated headers
/// are joined with `, ` as Node does.
fn headers_as_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}

/// Unknown routes: JSON 404 like Express's API error handler.
async fn not_found(method: Method, uri: Uri) -> AppError {
    AppError::NotFound(format!("{method} {}", uri.path()))
}

/// Known route, wrong method: JSON 405 rather than axum's empty body.
async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

// ---------------------------------------------------------------------------
// Middleware and router
// ---------------------------------------------------------------------------

/// The headers the real Express API sends on every response; tests check
/// that gardien replaces the permissive CORS header and strips the banner.
async fn add_express_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        HeaderName::from_static("x-powered-by"),
        HeaderValue::from_static("Express"),
    );
    response
}

/// One log line per request: method, path, status, latency. Never headers,
/// query strings or bodies, which may carry tokens and passwords.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    info!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// The whole application, built in one place so tests drive it in-process.
fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/auth/register", post(register))
        .route("/api/auth/login", post(login))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/me", get(me))
        .route("/api/health", get(health))
        .route("/api/echo", any(echo))
        .route("/api/echo/", any(echo))
        .route("/api/echo/{*rest}", any(echo))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(add_express_headers))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

// ---------------------------------------------------------------------------
// Process
// ---------------------------------------------------------------------------

/// Logs to stderr so stdout carries only the readiness line tests wait for;
/// colours only on a terminal, so captured test logs stay greppable.
fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Resolves on SIGINT or SIGTERM, so `make demo` and tests stop it cleanly.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT received, shutting down"),
        () = terminate => info!("SIGTERM received, shutting down"),
    }
}

/// Loads the key, binds, announces readiness, serves until a signal.
async fn run(mut config: Config) -> Result<(), String> {
    let signer = load_signer(&config)?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("cannot bind {}: {e}", config.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    if config.issuer.is_empty() {
        config.issuer = format!("http://{addr}");
    }
    info!(kid = %signer.kid, issuer = %config.issuer, audience = AUDIENCE, "signing key loaded");
    let state = Arc::new(AppState::new(&config, signer));
    // Tests and `make demo` wait for exactly this line on stdout.
    println!("demo_api listening on http://{addr}");
    info!(%addr, "demo_api listening");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    info!("demo_api stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    match run(Config::from_env()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "demo_api failed to start or serve");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};
    use tower::ServiceExt as _;

    /// A state on the embedded key with `boss@example.com` as admin.
    fn test_state() -> Arc<AppState> {
        let config = Config::from_lookup(|name| match name {
            "DEMO_ADMINS" => Some(" Boss@Example.com , ,other@x.io".to_owned()),
            "DEMO_API_ISSUER" => Some("http://issuer.test".to_owned()),
            _ => None,
        });
        let signer = Signer::from_pem(DEMO_KEY_PEM).expect("embedded demo key parses");
        Arc::new(AppState::new(&config, signer))
    }

    /// Sends one request through the router and returns status, headers, JSON.
    async fn call(
        state: &Arc<AppState>,
        method: &str,
        uri: &str,
        body: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .expect("valid test request");
        let response = app(state.clone())
            .oneshot(request)
            .await
            .expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body readable");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, json)
    }

    #[test]
    fn token_verifies_against_published_jwks() {
        let state = test_state();
        let user = User {
            id: Uuid::new_v4(),
            email: "a@b.c".to_owned(),
            roles: vec!["admin".to_owned()],
            password_hash: String::new(),
        };
        let token = state
            .signer
            .mint(&user, &state.issuer, jsonwebtoken::get_current_timestamp())
            .expect("mint");
        let set: JwkSet = serde_json::from_value(state.jwks.clone()).expect("JWKS parses");
        let kid = jsonwebtoken::decode_header(&token)
            .expect("header")
            .kid
            .expect("kid present");
        let jwk = set.find(&kid).expect("kid published in JWKS");
        let key = DecodingKey::from_jwk(jwk).expect("usable JWK");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&["http://issuer.test"]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("verifies");
        assert_eq!(data.claims["sub"], user.id.to_string());
        assert_eq!(data.claims["email"], "a@b.c");
        assert_eq!(data.claims["roles"], json!(["admin"]));
        let iat = data.claims["iat"].as_u64().expect("iat");
        assert_eq!(data.claims["exp"].as_u64(), Some(iat + TOKEN_TTL_SECS));
        assert!(Uuid::parse_str(data.claims["jti"].as_str().expect("jti")).is_ok());
    }

    #[test]
    fn jwks_fields_are_base64url_without_padding() {
        let jwks = test_state().jwks.clone();
        let key = &jwks["keys"][0];
        assert_eq!(key["e"], "AQAB");
        let n = key["n"].as_str().expect("n");
        assert!(!n.contains('=') && !n.contains('+') && !n.contains('/'));
        assert_eq!(key["kid"].as_str().map(str::len), Some(16));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let state = test_state();
        let debug = format!("{state:?}");
        assert!(!debug.contains("PRIVATE"));
        let creds: Credentials =
            serde_json::from_str(r#"{"email":"a@b.c","password":"hunter2hunter2"}"#).expect("json");
        assert!(!format!("{creds:?}").contains("hunter2"));
    }

    #[test]
    fn email_and_password_rules() {
        assert!(validate_email("a@b").is_ok());
        for bad in [
            "",
            "ab",
            "@b",
            "a@",
            "a@b@c",
            &format!("{}@b.c", "a".repeat(251)),
        ] {
            assert!(validate_email(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(validate_password(&Password("12345678".into())).is_ok());
        assert!(validate_password(&Password("1234567".into())).is_err());
        assert!(validate_password(&Password("é".repeat(128))).is_ok());
        assert!(validate_password(&Password("x".repeat(129))).is_err());
    }

    #[test]
    fn admins_are_trimmed_and_case_insensitive() {
        let state = test_state();
        assert_eq!(state.roles_for("boss@example.com"), vec!["admin"]);
        assert!(state.roles_for("someone@example.com").is_empty());
        assert_eq!(state.admins.len(), 2);
    }

    #[tokio::test]
    async fn register_login_and_errors() {
        let state = test_state();
        let body = r#"{"email":"Boss@example.com","password":"correct horse"}"#;
        let (status, headers, json) = call(&state, "POST", "/api/auth/register", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(json["roles"], json!(["admin"]));
        assert_eq!(headers["x-powered-by"], "Express");
        assert_eq!(headers["access-control-allow-origin"], "*");

        let dup = r#"{"email":"BOSS@EXAMPLE.COM","password":"another one"}"#;
        let (status, _, json) = call(&state, "POST", "/api/auth/register", Some(dup)).await;
        assert_eq!(
            (status, &json["error"]["code"]),
            (StatusCode::CONFLICT, &json!("email_taken"))
        );

        let good = r#"{"email":"boss@example.com","password":"correct horse"}"#;
        let (status, _, json) = call(&state, "POST", "/api/auth/login", Some(good)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (json["token_type"].as_str(), json["expires_in"].as_u64()),
            (Some("Bearer"), Some(900))
        );

        for bad in [
            r#"{"email":"boss@example.com","password":"wrong horse"}"#,
            r#"{"email":"nobody@example.com","password":"correct horse"}"#,
        ] {
            let (status, _, json) = call(&state, "POST", "/api/auth/login", Some(bad)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(json["error"]["code"], "invalid_credentials");
        }
    }

    #[tokio::test]
    async fn bad_bodies_get_json_errors() {
        let state = test_state();
        let cases = [
            (
                r#"{"email":"a@b.c","password":"12345678","admin":true}"#,
                "validation_failed",
            ),
            (r#"{"email":"a@b.c"}"#, "validation_failed"),
            (r#"{"email":"a@b.c","#, "invalid_json"),
            (
                r#"{"email":"nope","password":"12345678"}"#,
                "validation_failed",
            ),
        ];
        for (body, code) in cases {
            let (status, headers, json) =
                call(&state, "POST", "/api/auth/register", Some(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(json["error"]["code"], code, "{body}");
            assert_eq!(headers["x-powered-by"], "Express");
        }
        let huge = format!(
            r#"{{"email":"a@b.c","password":"{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        let (status, _, json) = call(&state, "POST", "/api/auth/register", Some(&huge)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json["error"]["code"], "payload_too_large");
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_are_json() {
        let state = test_state();
        let (status, headers, json) = call(&state, "GET", "/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json["error"]["code"], "not_found");
        assert_eq!(headers["access-control-allow-origin"], "*");
        let (status, _, json) = call(&state, "DELETE", "/api/health", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(json["error"]["code"], "method_not_allowed");
    }

    #[tokio::test]
    async fn echo_and_me_report_what_they_received() {
        let state = test_state();
        let (status, _, json) = call(&state, "PATCH", "/api/echo/a/b?x=1", Some("{}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["method"], "PATCH");
        assert_eq!(json["path"], "/api/echo/a/b");
        assert_eq!(json["query"], "x=1");
        assert_eq!(json["headers"]["content-type"], "application/json");
        let (_, _, json) = call(&state, "GET", "/api/me", None).await;
        assert_eq!(json["user_id"], Value::Null);
    }
}
