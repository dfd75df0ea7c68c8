//! Access tokens for Secret Manager, cached until shortly before they expire.
//!
//! One fetch at a time (concurrent lookups at start wait for it and share its token), and a
//! failure is remembered for a moment so a down metadata server costs one timeout, not one
//! per secret.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::{metadata, service_account};
use crate::Secret;

/// A token is renewed this long before it expires.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
/// How long a failed fetch is answered from memory before it is tried again.
const FAILURE_MEMORY: Duration = Duration::from_secs(2);

/// An OAuth access token and how long it lives.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    pub expires_in: Duration,
}

/// The answer of the metadata server and of the token endpoint (same shape).
#[derive(Deserialize)]
pub(super) struct TokenAnswer {
    access_token: String,
    expires_in: u64,
    #[serde(default)]
    token_type: Option<String>,
}

impl TokenAnswer {
    /// Reads a token answer; the reason never repeats the body (it holds the token).
    pub(super) fn parse(body: &[u8]) -> Result<AccessToken, String> {
        let answer: TokenAnswer = serde_json::from_slice(body).map_err(|e| {
            format!(
                "the token answer is not {{access_token, expires_in, token_type}} (at line {} column {})",
                e.line(),
                e.column()
            )
        })?;
        if let Some(kind) = &answer.token_type {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(format!("token_type is `{kind}`, expected Bearer"));
            }
        }
        if answer.access_token.is_empty() {
            return Err("the token answer has an empty access_token".to_owned());
        }
        Ok(AccessToken {
            token: Secret::new(answer.access_token),
            expires_in: Duration::from_secs(answer.expires_in),
        })
    }
}

/// Where tokens come from.
#[derive(Debug, Clone)]
enum Credentials {
    /// `GET http://<host>/computeMetadata/v1/instance/service-accounts/default/token`.
    Metadata { host: String },
    /// A service-account key file (`GOOGLE_APPLICATION_CREDENTIALS`), read at each fetch
    /// so a rotated key file is used.
    KeyFile { path: PathBuf },
}

#[derive(Debug)]
enum Cached {
    Token { token: Secret, renew_at: Instant },
    Failure { reason: String, at: Instant },
}

/// Gets and caches access tokens.
#[derive(Debug)]
pub struct TokenSource {
    credentials: Credentials,
    client: reqwest::Client,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    /// Tokens from the metadata server at `host` (`host[:port]`).
    pub fn metadata(host: impl Into<String>, client: reqwest::Client) -> Self {
        Self::with(Credentials::Metadata { host: host.into() }, client)
    }

    /// Tokens from the key file at `path`, through the token endpoint it names.
    pub fn key_file(path: impl Into<PathBuf>, client: reqwest::Client) -> Self {
        Self::with(Credentials::KeyFile { path: path.into() }, client)
    }

    fn with(credentials: Credentials, client: reqwest::Client) -> Self {
        TokenSource {
            credentials,
            client,
            cached: Mutex::new(None),
        }
    }

    /// What the report says tokens come from.
    pub fn describe(&self) -> String {
        match &self.credentials {
            Credentials::Metadata { host } => format!("metadata server {host}"),
            Credentials::KeyFile { path } => format!("service-account key {}", path.display()),
        }
    }

    /// A valid token: the cached one, or a new one.
    pub async fn token(&self) -> Result<Secret, String> {
        let mut cached = self.cached.lock().await;
        let now = Instant::now();
        match &*cached {
            Some(Cached::Token { token, renew_at }) if now < *renew_at => return Ok(token.clone()),
            Some(Cached::Failure { reason, at }) if now.duration_since(*at) < FAILURE_MEMORY => {
                return Err(reason.clone())
            }
            _ => {}
        }
        match self.fetch().await {
            Ok(fresh) => {
                // Renew a minute early; a token living less than two minutes, at half-life.
                let margin = RENEW_BEFORE_EXPIRY.min(fresh.expires_in / 2);
                *cached = Some(Cached::Token {
                    token: fresh.token.clone(),
                    renew_at: Instant::now() + fresh.expires_in.saturating_sub(margin),
                });
                Ok(fresh.token)
            }
            Err(reason) => {
                let reason = format!("no access token from the {}: {reason}", self.describe());
                *cached = Some(Cached::Failure {
                    reason: reason.clone(),
                    at: Instant::now(),
                });
                Err(reason)
            }
        }
    }

    /// Forgets the cached token (Secret Manager refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<AccessToken, String> {
        match &self.credentials {
            Credentials::Metadata { host } => metadata::fetch_token(&self.client, host).await,
            Credentials::KeyFile { path } => service_account::fetch_token(&self.client, path).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers_are_read_and_never_echoed() {
        let token = TokenAnswer::parse(
            br#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer"}"#,
        )
        .expect("valid");
        assert_eq!(token.token.expose(), b"ya29.abc");
        assert_eq!(token.expires_in, Duration::from_secs(3599));
        let error = TokenAnswer::parse(br#"{"access_token":"ya29.leaked","expires_in":"soon"}"#)
            .expect_err("bad");
        assert!(!error.contains("ya29.leaked"), "{error}");
        assert!(
            TokenAnswer::parse(br#"{"access_token":"x","expires_in":1,"token_type":"MAC"}"#)
                .is_err()
        );
    }
}
