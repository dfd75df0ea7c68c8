//! The HTTP client every flow shares, and small helpers that turn an unexpected answer
//! into a reason line (status, error code, request id) instead of a panic.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;

/// Longest wait for one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the client: no cookies, no redirects followed (an edge that redirects is a finding).
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// A response read to the end: status, headers and the body as JSON (`Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

impl Answer {
    /// Reads `response` whole.
    pub async fn read(response: Response) -> Result<Answer, String> {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            json,
        })
    }

    /// A header as text, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON error code of gardien's and the backend's error envelope.
    pub fn error_code(&self) -> Option<&str> {
        self.json.pointer("/error/code").and_then(Value::as_str)
    }

    /// `Err` with a reason unless the status is `expected`.
    pub fn expect(&self, expected: u16, what: &str) -> Result<&Self, String> {
        if self.status.as_u16() == expected {
            Ok(self)
        } else {
            Err(self.unexpected(&format!("{what}: expected {expected}")))
        }
    }

    /// The reason line for an answer that was not the one expected.
    pub fn unexpected(&self, what: &str) -> String {
        format!(
            "{what}, got {} (code {}, request id {})",
            self.status.as_u16(),
            self.error_code().unwrap_or("-"),
            self.header("x-request-id").unwrap_or("-")
        )
    }

    /// A string field of the JSON body, or a reason.
    pub fn field(&self, pointer: &str) -> Result<String, String> {
        self.json
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no `{pointer}` in the answer: {}", self.json))
    }
}

/// Sends `request` and reads the answer; a transport error becomes the reason.
pub async fn send(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let response = request.send().await.map_err(|e| format!("request: {e}"))?;
    Answer::read(response).await
}
