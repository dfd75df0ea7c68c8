//! Fakes of Google Secret Manager, the Compute metadata server and Google's OAuth token
//! endpoint, following `../shared/contracts/README.md`:
//!
//! - [`FakeSecretManager`]: `GET /v1/projects/{p}/secrets/{s}/versions/{v}:access` with
//!   `Authorization: Bearer <token>` answers
//!   `{"name":"projects/…/versions/N","payload":{"data":"<base64>","dataCrc32c":"<decimal>"}}`;
//!   errors are `{"error":{"code":…,"message":"…","status":"…"}}`: 404 NOT_FOUND, 403
//!   PERMISSION_DENIED, 400 FAILED_PRECONDITION (a disabled version), 401 UNAUTHENTICATED
//!   (no or unknown token), and 503 UNAVAILABLE while switched down. Adding a version is a
//!   rotation; `latest` is the newest version, whatever its state.
//! - [`FakeMetadataServer`]: `GET /computeMetadata/v1/instance/service-accounts/default/token`
//!   needs `Metadata-Flavor: Google` (else 403) and answers
//!   `{"access_token":"…","expires_in":3599,"token_type":"Bearer"}`.
//! - [`FakeTokenEndpoint`]: the JWT-bearer grant — `POST` form
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>`; the
//!   assertion is verified against the key file's public key (iss, aud, scope, iat, exp ≤
//!   1h); errors `{"error":"invalid_grant","error_description":"…"}`.
//!
//! Each listens on `127.0.0.1:0` and records the requests it received.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::json;

/// The private key of the test service account (PKCS#8 PEM). Public: proves nothing.
pub const TEST_SERVICE_ACCOUNT_KEY: &str = include_str!("../fixtures/service-account.pem");
/// Its public key, which [`FakeTokenEndpoint`] verifies assertions with.
pub const TEST_SERVICE_ACCOUNT_PUBLIC_KEY: &str =
    include_str!("../fixtures/service-account.pub.pem");
/// A key the fake token endpoint does not know: an assertion signed with it is forged.
pub const OTHER_PRIVATE_KEY: &str = include_str!("../fixtures/other-key.pem");
/// The test service account's e-mail.
pub const TEST_CLIENT_EMAIL: &str = "gardien-tests@test-project.iam.gserviceaccount.com";

const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

fn record(method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> RecordedRequest {
    RecordedRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    }
}

/// A server on an ephemeral loopback port, stopped on drop.
#[derive(Debug)]
struct Running {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    async fn start(app: Router) -> Running {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(e) => panic!("a fake server cannot bind 127.0.0.1:0: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(e) => panic!("a fake server has no address: {e}"),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Running {
            addr,
            shutdown: Some(tx),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

/// Google's error shape.
fn google_error(code: u16, status: &str, message: &str) -> Response {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

// ---------------------------------------------------------------------------------------
// Secret Manager
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Version {
    data: Vec<u8>,
    enabled: bool,
}

#[derive(Debug, Default)]
struct SecretManagerState {
    tokens: HashSet<String>,
    /// (project, secret) → versions, version N at index N-1.
    secrets: HashMap<(String, String), Vec<Version>>,
    denied: HashSet<(String, String)>,
    corrupt_crc: bool,
    down: bool,
    requests: Vec<RecordedRequest>,
}

/// A fake Secret Manager.
#[derive(Debug)]
pub struct FakeSecretManager {
    running: Running,
    state: Arc<Mutex<SecretManagerState>>,
}

impl FakeSecretManager {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(SecretManagerState::default()));
        let app = Router::new()
            .route(
                "/v1/projects/{project}/secrets/{secret}/versions/{version}",
                get(access),
            )
            .fallback(|| async {
                google_error(
                    404,
                    "NOT_FOUND",
                    "The requested URL was not found on this server.",
                )
            })
            .with_state(Arc::clone(&state));
        FakeSecretManager {
            running: Running::start(app).await,
            state,
        }
    }

    /// `http://127.0.0.1:<port>`: what `SECRET_MANAGER_BASE_URL` points at.
    pub fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    /// Accepts `token` as a bearer token (one the metadata fake or token fake hands out).
    pub fn accept_token(&self, token: &str) {
        self.state.lock().tokens.insert(token.to_owned());
    }

    /// Adds a version of `secret` (creating the secret) and returns its number: a rotation.
    pub fn add_version(&self, project: &str, secret: &str, data: impl AsRef<[u8]>) -> u64 {
        let mut state = self.state.lock();
        let versions = state
            .secrets
            .entry((project.to_owned(), secret.to_owned()))
            .or_default();
        versions.push(Version {
            data: data.as_ref().to_vec(),
            enabled: true,
        });
        versions.len() as u64
    }

    /// Disables (or enables again) version `version` of `secret`.
    pub fn set_version_enabled(&self, project: &str, secret: &str, version: u64, enabled: bool) {
        let mut state = self.state.lock();
        let versions = state
            .secrets
            .get_mut(&(project.to_owned(), secret.to_owned()));
        if let Some(v) = versions.and_then(|v| v.get_mut((version as usize).wrapping_sub(1))) {
            v.enabled = enabled;
        }
    }

    /// Deletes `secret` and all its versions: 404 from now on.
    pub fn delete(&self, project: &str, secret: &str) {
        self.state
            .lock()
            .secrets
            .remove(&(project.to_owned(), secret.to_owned()));
    }

    /// The caller lacks `secretmanager.versions.access` on `secret`: 403.
    pub fn deny(&self, project: &str, secret: &str) {
        self.state
            .lock()
            .denied
            .insert((project.to_owned(), secret.to_owned()));
    }

    /// Answers a CRC32C that does not match the payload.
    pub fn set_corrupt_crc(&self, corrupt: bool) {
        self.state.lock().corrupt_crc = corrupt;
    }

    /// Answers 503 UNAVAILABLE to everything.
    pub fn set_down(&self, down: bool) {
        self.state.lock().down = down;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().requests.clone()
    }
}

async fn access(
    State(state): State<Arc<Mutex<SecretManagerState>>>,
    Path((project, secret, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock();
    state.requests.push(record(
        "GET",
        &format!("/v1/projects/{project}/secrets/{secret}/versions/{version}"),
        &headers,
        &[],
    ));
    if state.down {
        return google_error(503, "UNAVAILABLE", "The service is currently unavailable.");
    }
    let Some(version) = version.strip_suffix(":access") else {
        return google_error(
            404,
            "NOT_FOUND",
            "The requested URL was not found on this server.",
        );
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| state.tokens.contains(t)) {
        let mut response = google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
        );
        return response;
    }
    let key = (project.clone(), secret.clone());
    let resource = format!("projects/{project}/secrets/{secret}/versions/{version}");
    if state.denied.contains(&key) {
        return google_error(
            403,
            "PERMISSION_DENIED",
            &format!("Permission 'secretmanager.versions.access' denied for resource '{resource}' (or it may not exist)."),
        );
    }
    let Some(versions) = state.secrets.get(&key) else {
        return google_error(
            404,
            "NOT_FOUND",
            &format!("Secret [projects/{project}/secrets/{secret}] not found or has no versions."),
        );
    };
    let number = if version == "latest" {
        versions.len()
    } else {
        match version.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid resource field value in the request: {resource}"),
                )
            }
        }
    };
    let Some(found) = versions.get(number.wrapping_sub(1)) else {
        return google_error(
            404,
            "NOT_FOUND",
            &format!("Secret Version [{resource}] not found."),
        );
    };
    let name = format!("projects/{project}/secrets/{secret}/versions/{number}");
    if !found.enabled {
        return google_error(
            400,
            "FAILED_PRECONDITION",
            &format!("Secret Version [{name}] is in DISABLED state."),
        );
    }
    let mut crc = crc32c::crc32c(&found.data);
    if state.corrupt_crc {
        crc ^= 0x0000_0001;
    }
    json_response(
        StatusCode::OK,
        json!({
            "name": name,
            "payload": {
                "data": base64::engine::general_purpose::STANDARD.encode(&found.data),
                "dataCrc32c": crc.to_string(),
            }
        }),
    )
}

// ---------------------------------------------------------------------------------------
// Metadata server
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct MetadataState {
    token: String,
    expires_in: u64,
    requests: Vec<RecordedRequest>,
}

/// A fake metadata server handing out one access token.
#[derive(Debug)]
pub struct FakeMetadataServer {
    running: Running,
    state: Arc<Mutex<MetadataState>>,
}

impl FakeMetadataServer {
    /// Hands out `token` (accept it on the [`FakeSecretManager`]).
    pub async fn start(token: &str) -> Self {
        let state = Arc::new(Mutex::new(MetadataState {
            token: token.to_owned(),
            expires_in: 3599,
            requests: Vec::new(),
        }));
        let app = Router::new()
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(metadata_token),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
            .with_state(Arc::clone(&state));
        FakeMetadataServer {
            running: Running::start(app).await,
            state,
        }
    }

    /// `127.0.0.1:<port>`: what `GCE_METADATA_HOST` points at.
    pub fn host(&self) -> String {
        self.running.addr.to_string()
    }

    /// Hands out `token` from now on, living `expires_in` seconds.
    pub fn set_token(&self, token: &str, expires_in: u64) {
        let mut state = self.state.lock();
        state.token = token.to_owned();
        state.expires_in = expires_in;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().requests.clone()
    }
}

async fn metadata_token(
    State(state): State<Arc<Mutex<MetadataState>>>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock();
    state.requests.push(record(
        "GET",
        "/computeMetadata/v1/instance/service-accounts/default/token",
        &headers,
        &[],
    ));
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (
            StatusCode::FORBIDDEN,
            "Missing required header: Metadata-Flavor: Google",
        )
            .into_response();
    }
    let mut response = json_response(
        StatusCode::OK,
        json!({"access_token": state.token, "expires_in": state.expires_in, "token_type": "Bearer"}),
    );
    response
        .headers_mut()
        .insert("metadata-flavor", HeaderValue::from_static("Google"));
    response
}

// ---------------------------------------------------------------------------------------
// OAuth token endpoint
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct TokenEndpointState {
    url: String,
    client_email: String,
    public_key_pem: String,
    token: String,
    requests: Vec<RecordedRequest>,
}

#[derive(serde::Deserialize)]
struct AssertionClaims {
    scope: String,
    iat: u64,
    exp: u64,
}

/// A fake of `https://oauth2.googleapis.com/token` for service-account key files.
#[derive(Debug)]
pub struct FakeTokenEndpoint {
    running: Running,
    state: Arc<Mutex<TokenEndpointState>>,
}

impl FakeTokenEndpoint {
    /// Accepts assertions from [`TEST_CLIENT_EMAIL`] signed with
    /// [`TEST_SERVICE_ACCOUNT_KEY`], and hands out `token`.
    pub async fn start(token: &str) -> Self {
        let state = Arc::new(Mutex::new(TokenEndpointState {
            url: String::new(),
            client_email: TEST_CLIENT_EMAIL.to_owned(),
            public_key_pem: TEST_SERVICE_ACCOUNT_PUBLIC_KEY.to_owned(),
            token: token.to_owned(),
            requests: Vec::new(),
        }));
        let app = Router::new()
            .route("/token", post(exchange))
            .with_state(Arc::clone(&state));
        let running = Running::start(app).await;
        state.lock().url = format!("http://{}/token", running.addr);
        FakeTokenEndpoint { running, state }
    }

    /// `http://127.0.0.1:<port>/token`: the key file's `token_uri`.
    pub fn url(&self) -> String {
        format!("http://{}/token", self.running.addr)
    }

    /// A service-account key file (JSON) for the test account, signed with `private_key`
    /// ([`TEST_SERVICE_ACCOUNT_KEY`], or [`OTHER_PRIVATE_KEY`] for a forged one), whose
    /// `token_uri` is this fake.
    pub fn key_file(&self, private_key: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "test-key-1",
            "private_key": private_key,
            "client_email": TEST_CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "token_uri": self.url(),
        })
        .to_string()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().requests.clone()
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        json!({"error": error, "error_description": description}),
    )
}

async fn exchange(
    State(state): State<Arc<Mutex<TokenEndpointState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock();
    state
        .requests
        .push(record("POST", "/token", &headers, &body));
    let form_encoded = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER_GRANT) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(state.public_key_pem.as_bytes()) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_failure",
            "bad fixture key",
        );
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[state.url.as_str()]);
    validation.set_issuer(&[state.client_email.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            let description = match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "Invalid JWT Signature.".to_owned(),
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".to_owned(),
                other => format!("Invalid JWT: {other:?}"),
            };
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &description);
        }
    };
    if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    }
    if !claims.scope.split(' ').any(|s| s == CLOUD_PLATFORM_SCOPE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    json_response(
        StatusCode::OK,
        json!({"access_token": state.token, "expires_in": 3599, "token_type": "Bearer"}),
    )
}
