//! Tokens for a service-account key file (`GOOGLE_APPLICATION_CREDENTIALS`), through
//! Google's JWT-bearer grant (RFC 7523): an RS256 assertion signed with the key, posted to
//! the key's `token_uri`. Written against reqwest and jsonwebtoken rather than a Google
//! auth crate: the grant is one request, and the crates on offer pull in a second HTTP and
//! TLS stack.

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::token::{AccessToken, TokenAnswer};
use super::CLOUD_PLATFORM_SCOPE;

const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Google accepts assertions valid for an hour at most.
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// The fields of a key file this needs. `private_key` is PEM; it never appears in a
/// message.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) async fn fetch_token(
    client: &reqwest::Client,
    path: &Path,
) -> Result<AccessToken, String> {
    let text = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key: KeyFile = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "{} is not a service-account key (JSON with client_email, private_key, token_uri): {}",
            path.display(),
            match e.classify() {
                serde_json::error::Category::Data => "a field is missing or of the wrong type",
                _ => "not JSON",
            }
        )
    })?;
    if let Some(kind) = key.kind.as_deref().filter(|k| *k != "service_account") {
        return Err(format!(
            "{} is a `{kind}` credential; only service-account keys are supported",
            path.display()
        ));
    }
    let token_uri = key.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI);
    let signing_key = EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|_| {
        format!(
            "{}: private_key is not an RSA private key in PEM",
            path.display()
        )
    })?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = key.private_key_id.clone();
    let iat = unix_now();
    let claims = Claims {
        iss: &key.client_email,
        scope: CLOUD_PLATFORM_SCOPE,
        aud: token_uri,
        iat,
        exp: iat + ASSERTION_LIFETIME_SECS,
    };
    let assertion = jsonwebtoken::encode(&header, &claims, &signing_key)
        .map_err(|e| format!("cannot sign the assertion: {e}"))?;
    // Form-encoded by the url crate (already a dependency) rather than reqwest's `form`
    // feature, which would change reqwest's features for the whole workspace.
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", JWT_BEARER_GRANT)
        .append_pair("assertion", &assertion)
        .finish();
    let response = client
        .post(token_uri)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "token endpoint unreachable: {}",
                super::secret_manager::describe_error(&e)
            )
        })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        format!(
            "reading the token answer: {}",
            super::secret_manager::describe_error(&e)
        )
    })?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<OAuthError>(&body) {
            Ok(error) => format!(
                "token endpoint refused the key ({}): {}{}",
                status.as_u16(),
                error.error,
                error
                    .error_description
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            Err(_) => format!("token endpoint answered HTTP {}", status.as_u16()),
        });
    }
    TokenAnswer::parse(&body)
}
