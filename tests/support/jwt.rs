//! JWT test support: fixture signing keys, token builders (honest and forged), and a JWKS
//! server on loopback that tests can rotate, slow down, break, stop and restart.
//!
//! The gateway validates tokens against a JWKS URL. These helpers let an integration test
//! play the identity provider: sign tokens with known keys, serve the matching public keys,
//! and observe how often — and whether — the gateway fetches them.
//!
//! The keys live in `tests/fixtures/keys/` (see the README there). They are committed,
//! public and therefore worthless outside tests; they are compiled into the test binaries
//! with `include_bytes!` so no test depends on the working directory.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// Where the JWKS document is served, as identity providers conventionally do.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

// The fixture keys, embedded so tests are independent of the current directory.
const RSA_A: &[u8] = include_bytes!("../fixtures/keys/rsa-a.pem");
const RSA_A_PUB: &[u8] = include_bytes!("../fixtures/keys/rsa-a.pub.pem");
const RSA_B: &[u8] = include_bytes!("../fixtures/keys/rsa-b.pem");
const RSA_B_PUB: &[u8] = include_bytes!("../fixtures/keys/rsa-b.pub.pem");
const EC_P256: &[u8] = include_bytes!("../fixtures/keys/ec-p256.pem");
const EC_P256_PUB: &[u8] = include_bytes!("../fixtures/keys/ec-p256.pub.pem");
const EC_P384: &[u8] = include_bytes!("../fixtures/keys/ec-p384.pem");
const EC_P384_PUB: &[u8] = include_bytes!("../fixtures/keys/ec-p384.pub.pem");
const ED25519: &[u8] = include_bytes!("../fixtures/keys/ed25519.pem");
const ED25519_PUB: &[u8] = include_bytes!("../fixtures/keys/ed25519.pub.pem");

/// A signing key from the fixtures, with the `kid` and algorithm it is published under.
///
/// `kid` and `alg` are public so a test can publish the same key material under another
/// `kid` (e.g. to test `kid` mismatches) without a new constructor.
#[derive(Debug, Clone)]
pub struct TestKey {
    /// The key id put in token headers and in the JWK.
    pub kid: String,
    /// The algorithm tokens are signed with and the JWK advertises.
    pub alg: Algorithm,
    encoding: EncodingKey,
    public_pem: &'static [u8],
}

impl TestKey {
    /// RSA 2048 key "a", RS256.
    pub fn rsa_a(kid: &str) -> Self {
        Self::rsa_a_with_alg(kid, Algorithm::RS256)
    }

    /// RSA 2048 key "a" under another RSA algorithm (RS384, RS512, PS256, PS384, PS512).
    /// Same key material as [`TestKey::rsa_a`], so a JWK from one and a token from the other
    /// differ only in `alg` — what algorithm-pinning tests need.
    pub fn rsa_a_with_alg(kid: &str, alg: Algorithm) -> Self {
        assert!(
            matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            "rsa_a_with_alg needs an RSA algorithm, got {alg:?}"
        );
        Self::rsa(kid, alg, RSA_A, RSA_A_PUB)
    }

    /// RSA 2048 key "b", RS256: a second, unrelated RSA key for rotation tests.
    pub fn rsa_b(kid: &str) -> Self {
        Self::rsa(kid, Algorithm::RS256, RSA_B, RSA_B_PUB)
    }

    /// EC P-256 (prime256v1) key, ES256.
    pub fn ec256(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_P256).expect("fixture ec-p256.pem is a PKCS#8 EC key"),
            EC_P256_PUB,
        )
    }

    /// EC P-384 (secp384r1) key, ES384.
    pub fn ec384(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::ES384,
            EncodingKey::from_ec_pem(EC_P384).expect("fixture ec-p384.pem is a PKCS#8 EC key"),
            EC_P384_PUB,
        )
    }

    /// Ed25519 key, EdDSA.
    pub fn ed25519(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED25519).expect("fixture ed25519.pem is a PKCS#8 Ed25519 key"),
            ED25519_PUB,
        )
    }

    fn rsa(kid: &str, alg: Algorithm, private: &[u8], public_pem: &'static [u8]) -> Self {
        Self::new(
            kid,
            alg,
            EncodingKey::from_rsa_pem(private).expect("fixture RSA key is a PKCS#8 RSA key"),
            public_pem,
        )
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey, public_pem: &'static [u8]) -> Self {
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding,
            public_pem,
        }
    }

    /// A token with the usual header `{alg, typ: "JWT", kid}`, signed with this key.
    pub fn sign(&self, claims: &Value) -> String {
        let header = Header {
            kid: Some(self.kid.clone()),
            ..Header::new(self.alg)
        };
        self.sign_with(header, claims)
    }

    /// A token with a header of the test's choosing (a `jku` pointing elsewhere, no `kid`,
    /// another `kid`, `crit`, …), signed with this key.
    ///
    /// The signature uses `header.alg`, which must be of this key's family (jsonwebtoken
    /// refuses e.g. an EC key with `RS256`); for headers that lie about the algorithm, sign
    /// with [`forge`] instead.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .expect("header.alg matches the fixture key's family")
    }

    /// The public JWK for this key: `kty`, `kid`, `use: "sig"`, `alg`, and `n`/`e` (RSA),
    /// `crv`/`x`/`y` (EC) or `crv`/`x` (OKP), base64url without padding.
    ///
    /// Derived from the private key by jsonwebtoken's aws-lc backend, so it is the key the
    /// tokens are really signed with (the self-test also checks it against `*.pub.pem`).
    pub fn jwk(&self) -> Value {
        let jwk = Jwk::from_encoding_key(&self.encoding, self.alg)
            .expect("jsonwebtoken derives a JWK from every fixture key");
        let mut value = serde_json::to_value(&jwk).expect("a JWK serialises to JSON");
        let object = value.as_object_mut().expect("a JWK is a JSON object");
        object.insert("kid".to_owned(), Value::String(self.kid.clone()));
        object.insert("use".to_owned(), Value::String("sig".to_owned()));
        object.insert("alg".to_owned(), alg_name(self.alg));
        value
    }

    /// The SPKI public key (`-----BEGIN PUBLIC KEY-----`), e.g. for the key-confusion attack
    /// (HS256 with these bytes as the secret) or for verifying with `DecodingKey::from_*_pem`.
    pub fn public_pem(&self) -> &'static [u8] {
        self.public_pem
    }

    /// A jsonwebtoken verification key built from [`TestKey::public_pem`] — independent of
    /// the JWK path, so tests can check both agree.
    pub fn decoding_key(&self) -> DecodingKey {
        let pem = self.public_pem;
        match self.alg {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            _ => DecodingKey::from_rsa_pem(pem),
        }
        .expect("fixture *.pub.pem is an SPKI public key")
    }
}

/// The JWS name of an algorithm (`"RS256"`, `"EdDSA"`, …) as a JSON string.
pub fn alg_name(alg: Algorithm) -> Value {
    serde_json::to_value(alg).expect("an Algorithm serialises to its JWS name")
}

/// A JWK set document `{"keys": [...]}` for these keys.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// Unix time in seconds, as JWT `iat`/`nbf`/`exp` use.
pub fn now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_secs()).expect("unix seconds fit in i64")
}

/// Typical claims: `iss`, `aud`, `sub`, `iat`/`nbf` now, `exp` in `expires_in_secs` (negative
/// for an already expired token), `email` `<sub>@example.com` and no `roles`. Edit the returned
/// value for anything else (`claims["roles"] = json!(["admin"])`).
pub fn claims(iss: &str, aud: &str, sub: &str, expires_in_secs: i64) -> Value {
    let now = now();
    json!({
        "iss": iss,
        "aud": aud,
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + expires_in_secs,
        "email": format!("{sub}@example.com"),
        "roles": [],
    })
}

/// A token assembled by hand: `base64url(header).base64url(claims).base64url(signature)`.
///
/// Nothing is checked or signed, which is the point: `alg: none` with an empty signature,
/// headers that lie about the algorithm, a valid signature moved onto other claims, …
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let header = serde_json::to_vec(header).expect("a JSON value serialises");
    let claims = serde_json::to_vec(claims).expect("a JSON value serialises");
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// An HMAC token (HS256/HS384/HS512) with header `{alg, typ: "JWT"[, kid]}`.
///
/// For HS issuers, and for the key-confusion attack: HS256 with an RSA key's
/// [`TestKey::public_pem`] as the secret, which a gateway that lets the token pick the
/// algorithm would accept.
pub fn hs_with_secret(alg: Algorithm, secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    assert!(
        matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512),
        "hs_with_secret needs an HMAC algorithm, got {alg:?}"
    );
    let header = Header {
        kid: kid.map(str::to_owned),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
        .expect("an HMAC token signs with any secret")
}

/// What the JWKS handler reads; the test changes it through [`JwksServer`]'s setters.
#[derive(Debug)]
struct Shared {
    /// The document served at [`JWKS_PATH`].
    body: Mutex<Value>,
    /// `Cache-Control: public, max-age=N` when set.
    max_age: Mutex<Option<u64>>,
    /// 200 serves the document; anything else answers that status instead.
    status: AtomicU16,
    /// Requests to [`JWKS_PATH`], whatever they were answered with.
    fetches: AtomicUsize,
}

/// The accept loop of a running server.
#[derive(Debug)]
struct Running {
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// A JWKS endpoint on `127.0.0.1`, playing the identity provider the gateway trusts.
///
/// State (keys, status, `max-age`, fetch count) survives [`JwksServer::stop`] and
/// [`JwksServer::restart`], which reuses the same port so the gateway's configured URL
/// stays valid — what outage tests need. Changes take effect on the next request.
#[derive(Debug)]
pub struct JwksServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<Running>,
}

impl JwksServer {
    /// Serves `keys` on an ephemeral loopback port.
    pub async fn start(keys: &[&TestKey]) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the JWKS server on loopback");
        let addr = listener.local_addr().expect("the JWKS listener's address");
        let shared = Arc::new(Shared {
            body: Mutex::new(jwks(keys)),
            max_age: Mutex::new(None),
            status: AtomicU16::new(200),
            fetches: AtomicUsize::new(0),
        });
        let running = Some(serve(listener, Arc::clone(&shared)));
        JwksServer {
            addr,
            shared,
            running,
        }
    }

    /// The full URL of the JWKS document, for the policy's `jwks_url`.
    pub fn url(&self) -> String {
        format!("http://{}{JWKS_PATH}", self.addr)
    }

    /// The listening address (the same across stop/restart).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Publishes these keys instead (rotation); served from the next request on.
    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.shared.body.lock() = jwks(keys);
    }

    /// Serves arbitrary JSON as the document (malformed key sets, unknown `kty`, …).
    pub fn set_raw(&self, body: Value) {
        *self.shared.body.lock() = body;
    }

    /// `Some(n)` adds `Cache-Control: public, max-age=n` to documents; `None` (the default)
    /// sends no `Cache-Control`.
    pub fn set_max_age(&self, secs: Option<u64>) {
        *self.shared.max_age.lock() = secs;
    }

    /// Answers every request to the document with this status (e.g. 500) and a short
    /// plain-text body instead of the document; 200 serves the document again.
    pub fn set_status(&self, status: u16) {
        StatusCode::from_u16(status).expect("set_status takes a valid HTTP status code");
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// How many requests for the document were received, including those answered with an
    /// error status. Other paths are not counted.
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }

    /// Stops listening: no new connections (the port refuses them), idle keep-alive
    /// connections are closed, and in-flight requests are answered first. Idempotent.
    pub async fn stop(&mut self) {
        let Some(Running { shutdown, mut task }) = self.running.take() else {
            return;
        };
        // The receiver only goes away if the task already ended, which is fine.
        let _ = shutdown.send(());
        // Graceful shutdown waits for open connections; a client holding one mid-request
        // forever must not hang the test. Aborting drops the listener all the same.
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(joined) => joined.expect("the JWKS server task did not panic"),
            Err(_) => {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Listens again on the same port with the same state. Retries the bind for a few
    /// seconds in case the port is momentarily busy. A no-op when already running.
    pub async fn restart(&mut self) {
        if self.running.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind the JWKS server on {}: {e}", self.addr),
            }
        };
        self.running = Some(serve(listener, Arc::clone(&self.shared)));
    }
}

impl Drop for JwksServer {
    /// Stops accepting when the test drops the server (without waiting: `Drop` is sync).
    fn drop(&mut self) {
        if let Some(Running { shutdown, .. }) = self.running.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Runs the axum app on `listener` until the returned shutdown sender fires.
fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> Running {
    let app = Router::new()
        .route(JWKS_PATH, any(jwks_document))
        .with_state(shared);
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // An accept error ends the server; the test then sees connection failures.
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Running { shutdown, task }
}

/// The handler for [`JWKS_PATH`]: counts the request, then answers the configured status or
/// the document as `application/json` (with `Cache-Control` when a max-age is set).
async fn jwks_document(State(shared): State<Arc<Shared>>, method: Method) -> Response {
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let status = shared.status.load(Ordering::SeqCst);
    if status != 200 {
        let status = StatusCode::from_u16(status).expect("set_status validated the code");
        return (status, format!("test JWKS server answering {status}")).into_response();
    }
    let body = serde_json::to_vec(&*shared.body.lock()).expect("a JSON value serialises");
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = *shared.max_age.lock() {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("public, max-age={secs}"))
                .expect("a max-age is a valid header value"),
        );
    }
    response
}
