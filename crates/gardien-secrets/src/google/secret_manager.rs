//! Google Secret Manager as a source: `GET
//! {base}/v1/projects/{p}/secrets/{NAME}/versions/latest:access` with a bearer token. The
//! payload's CRC32C is checked; a value that does not match it is refused. A 404 means
//! "not here" (the next source is asked); anything else that is not a value — 403, a
//! disabled version, 5xx, a timeout, a bad checksum — is a failure with its reason, and the
//! next source is asked too.

use std::error::Error as _;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;

use super::TokenSource;
use crate::config::SecretManagerConfig;
use crate::source::{Fetched, Origin, SecretSource};
use crate::Secret;

/// Secret Manager's own limit on a payload is 64 KiB; a larger answer is not a secret.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The source.
#[derive(Debug)]
pub struct SecretManagerSource {
    project: String,
    base_url: String,
    tokens: TokenSource,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct AccessAnswer {
    name: String,
    payload: Payload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    #[serde(default)]
    data: String,
    /// int64 in proto3 JSON: a decimal string (a number is accepted too).
    #[serde(default)]
    data_crc32c: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// A reqwest error with its causes ("connection refused"), or "timed out". The URL is left
/// out: the report already says where the source looked.
pub(super) fn describe_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let text = error.to_string();
    let mut text = match text.find(" for url (") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Secret ids are letters, digits, `_` and `-`, at most 255.
fn is_secret_id(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl SecretManagerSource {
    /// A source for `config`: tokens from the key file when one is configured, else from
    /// the metadata server. Every request is bounded by `config.timeout`.
    pub fn new(config: &SecretManagerConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(2)))
            // A lookup a minute: no pooled connection to outlive a runtime or go stale.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let tokens = match &config.credentials_file {
            Some(path) => TokenSource::key_file(path.clone(), client.clone()),
            None => TokenSource::metadata(config.metadata_host.clone(), client.clone()),
        };
        Ok(SecretManagerSource {
            project: config.project.clone(),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            tokens,
            client,
        })
    }

    fn version_name(&self, name: &str) -> String {
        format!("projects/{}/secrets/{name}/versions/latest", self.project)
    }

    /// One access request. `Ok(None)`: the token was refused (401), try a new one.
    async fn access(&self, name: &str) -> Result<Option<Fetched>, String> {
        let token = self.tokens.token().await?;
        let url = format!("{}/v1/{}:access", self.base_url, self.version_name(name));
        let token_text = std::str::from_utf8(token.expose())
            .map_err(|_| "the access token is not text".to_owned())?;
        let response = self
            .client
            .get(&url)
            .bearer_auth(token_text)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("unreachable: {}", describe_error(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer: {}", describe_error(&e)))?;
        if body.len() > MAX_ANSWER_BYTES {
            return Err(format!("answer of {} bytes refused", body.len()));
        }
        match status.as_u16() {
            200 => Ok(Some(self.read_value(name, &body))),
            404 => Ok(Some(Fetched::Absent)),
            401 => Ok(None),
            code => Err(match serde_json::from_slice::<ErrorAnswer>(&body) {
                Ok(answer) => format!(
                    "{} {}: {}",
                    if answer.error.code == 0 {
                        code
                    } else {
                        answer.error.code
                    },
                    answer.error.status,
                    answer.error.message
                ),
                Err(_) => format!("HTTP {code}"),
            }),
        }
    }

    fn read_value(&self, name: &str, body: &[u8]) -> Fetched {
        let answer: AccessAnswer = match serde_json::from_slice(body) {
            Ok(answer) => answer,
            Err(_) => {
                return Fetched::Failed(
                    "the answer is not {name, payload: {data, dataCrc32c}}".to_owned(),
                )
            }
        };
        let expected_prefix = format!("projects/{}/secrets/{name}/versions/", self.project);
        // Secret Manager names the project by number in its answer; check the rest.
        let names_this_secret =
            answer
                .name
                .rsplit_once("/versions/")
                .is_some_and(|(secret, version)| {
                    secret.ends_with(&format!("/secrets/{name}"))
                        && !version.is_empty()
                        && version.chars().all(|c| c.is_ascii_digit())
                });
        if !names_this_secret {
            return Fetched::Failed(format!(
                "the answer names `{}`, not a version of {expected_prefix}…",
                answer.name
            ));
        }
        let data = match base64::engine::general_purpose::STANDARD
            .decode(answer.payload.data.as_bytes())
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE.decode(answer.payload.data.as_bytes())
            }) {
            Ok(data) => data,
            Err(_) => return Fetched::Failed("payload.data is not base64".to_owned()),
        };
        match answer.payload.data_crc32c.as_ref().map(read_crc) {
            Some(Some(expected)) => {
                if crc32c::crc32c(&data) != expected {
                    return Fetched::Failed(format!(
                        "{}: payload CRC32C mismatch, value refused",
                        answer.name
                    ));
                }
            }
            Some(None) => {
                return Fetched::Failed("payload.dataCrc32c is not a 32-bit number".to_owned())
            }
            None => tracing::warn!(
                version = answer.name.as_str(),
                "Secret Manager sent no CRC32C for this payload; accepted unchecked"
            ),
        }
        if data.is_empty() {
            return Fetched::Absent;
        }
        Fetched::Found(
            Secret::new(data),
            Origin::SecretManager {
                version: answer.name,
            },
        )
    }
}

/// A CRC32C as proto3 JSON writes an int64: a decimal string (or a number).
fn read_crc(value: &serde_json::Value) -> Option<u32> {
    match value {
        serde_json::Value::String(text) => text.trim().parse::<u32>().ok(),
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

#[async_trait]
impl SecretSource for SecretManagerSource {
    fn describe(&self) -> String {
        format!(
            "Google Secret Manager (project {}, token from the {})",
            self.project,
            self.tokens.describe()
        )
    }

    fn location(&self, name: &str) -> String {
        format!("Google Secret Manager {}", self.version_name(name))
    }

    async fn fetch(&self, name: &str) -> Fetched {
        if !is_secret_id(name) {
            return Fetched::Failed(format!("`{name}` is not a Secret Manager secret id"));
        }
        // A refused token (401) is dropped and a new one tried, once.
        for _ in 0..2 {
            match self.access(name).await {
                Ok(Some(fetched)) => return fetched,
                Ok(None) => self.tokens.invalidate().await,
                Err(reason) => return Fetched::Failed(reason),
            }
        }
        Fetched::Failed("401 UNAUTHENTICATED: the access token was refused twice".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crcs_read_as_proto3_int64() {
        assert_eq!(
            read_crc(&serde_json::json!("3808858755")),
            Some(3_808_858_755)
        );
        assert_eq!(read_crc(&serde_json::json!(42)), Some(42));
        assert_eq!(read_crc(&serde_json::json!("99999999999")), None);
        assert_eq!(read_crc(&serde_json::json!(null)), None);
    }

    #[test]
    fn secret_ids_are_checked() {
        assert!(is_secret_id("GARDIEN_INTERNAL_SECRET"));
        assert!(is_secret_id("smtp-password"));
        assert!(!is_secret_id("a/b"));
        assert!(!is_secret_id(""));
    }
}
