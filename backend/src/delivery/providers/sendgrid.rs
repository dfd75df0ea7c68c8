//! SendGrid Mail Send v3 (`POST /v3/mail/send`, Bearer API key), per the contract in
//! `shared/contracts/sendgrid_mail_v3.json`: `202` with an `X-Message-Id` header when taken,
//! `200` when sandbox mode validated it without delivering, errors as
//! `{"errors":[{"message","field","help"}]}`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use gardien_secrets::SecretLookup;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::{check_base_url, EmailSender};
use super::declaration::{ProviderDeclaration, SecretDeclaration};
use super::variables;
use super::{http, secret, ProvidersConfig, SecretUse, SetupError, DEFAULT_TIMEOUT};
use crate::delivery::config::NotifyMode;
use crate::delivery::provider::{
    Accepted, Channel, EmailMessage, Failure, FailureKind, Message, Provider,
};

/// SendGrid's API, for everyone but EU regional subusers.
pub const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";

/// The secret holding the API key, unless the configuration names another.
pub const DEFAULT_API_KEY_SECRET: &str = "SENDGRID_API_KEY";

/// The longest category SendGrid takes.
const MAX_CATEGORY_CHARS: usize = 255;

/// How to reach SendGrid and who sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendGridConfig {
    /// `https://api.sendgrid.com` unless tests or staging point elsewhere.
    pub base_url: String,
    pub from: EmailSender,
    /// The whole request, connection included.
    pub timeout: Duration,
    /// Name of the secret holding the API key.
    pub api_key_secret: String,
}

impl SendGridConfig {
    /// The defaults, sending as `from`.
    pub fn new(from: EmailSender) -> SendGridConfig {
        SendGridConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            from,
            timeout: DEFAULT_TIMEOUT,
            api_key_secret: DEFAULT_API_KEY_SECRET.to_owned(),
        }
    }
}

/// The SendGrid provider (`sendgrid`).
pub struct SendGrid {
    config: SendGridConfig,
    secrets: Arc<dyn SecretLookup>,
    sandbox: bool,
    endpoint: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for SendGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendGrid")
            .field("endpoint", &self.endpoint)
            .field("from", &self.config.from.address)
            .field("api_key_secret", &self.config.api_key_secret)
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "sendgrid";

/// SendGrid, as the registry, `check` and the secrets see it.
pub const DECLARATION: ProviderDeclaration = ProviderDeclaration {
    name: NAME,
    channels: &[Channel::Email],
    modes: &[NotifyMode::Live, NotifyMode::Sandbox],
    variables: &[
        variables::EMAIL_FROM,
        variables::SENDGRID_API_BASE_URL,
        variables::SENDGRID_TIMEOUT,
    ],
    secrets: &[SecretDeclaration {
        name: DEFAULT_API_KEY_SECRET,
        needed: true,
        meaning: "SendGrid's API key (`sendgrid`)",
    }],
    setup: "EMAIL_FROM + SENDGRID_API_KEY",
    configured: |config, _| config.sendgrid.is_some(),
    build,
};

fn build(
    _channel: Channel,
    config: &ProvidersConfig,
    secrets: Arc<dyn SecretLookup>,
    mode: NotifyMode,
) -> Result<Arc<dyn Provider>, String> {
    let config = config
        .sendgrid
        .clone()
        .ok_or_else(|| format!("{NAME}: EMAIL_FROM is not set"))?;
    let provider =
        SendGrid::new(config, secrets, mode == NotifyMode::Sandbox).map_err(|e| e.to_string())?;
    Ok(Arc::new(provider))
}

impl SendGrid {
    /// A provider sending through `config`, reading the API key from `secrets` at each
    /// send. With `sandbox`, requests ask for `mail_settings.sandbox_mode`: SendGrid
    /// validates them and delivers nothing.
    pub fn new(
        config: SendGridConfig,
        secrets: Arc<dyn SecretLookup>,
        sandbox: bool,
    ) -> Result<SendGrid, SetupError> {
        let base: Url = check_base_url(&config.base_url)
            .map_err(|message| SetupError::new(NAME, format!("base URL: {message}")))?;
        let client = http::client(NAME, config.timeout)?;
        Ok(SendGrid {
            endpoint: http::endpoint(&base, "/v3/mail/send"),
            config,
            secrets,
            sandbox,
            client,
        })
    }

    /// The secrets a send reads.
    pub fn secrets(&self) -> Vec<SecretUse<'_>> {
        vec![SecretUse {
            name: &self.config.api_key_secret,
            required: true,
        }]
    }

    /// The Mail Send body for `email`: one personalization to the recipient carrying the
    /// notification id in `custom_args`, `text/plain` before `text/html` as SendGrid
    /// requires, the category in `categories`.
    pub fn request_body(&self, email: &EmailMessage) -> Result<Value, Failure> {
        if email.subject.trim().is_empty() {
            return Err(Failure::new(
                FailureKind::Rejected,
                "sendgrid: the message has no subject",
            ));
        }
        let mut content = Vec::with_capacity(2);
        if !email.text.trim().is_empty() {
            content.push(json!({"type": "text/plain", "value": email.text}));
        }
        if let Some(html) = email.html.as_deref().filter(|h| !h.trim().is_empty()) {
            content.push(json!({"type": "text/html", "value": html}));
        }
        if content.is_empty() {
            return Err(Failure::new(
                FailureKind::Rejected,
                "sendgrid: the message has neither a text nor an html body",
            ));
        }
        let mut from = json!({"email": self.config.from.address});
        if let Some(name) = &self.config.from.name {
            from["name"] = json!(name);
        }
        let mut body = json!({
            "personalizations": [{
                "to": [{"email": email.to}],
                "custom_args": {"notification_id": email.notification_id},
            }],
            "from": from,
            "subject": email.subject,
            "content": content,
        });
        let category: String = email
            .category
            .trim()
            .chars()
            .take(MAX_CATEGORY_CHARS)
            .collect();
        if !category.is_empty() {
            body["categories"] = json!([category]);
        }
        if self.sandbox {
            body["mail_settings"] = json!({"sandbox_mode": {"enable": true}});
        }
        Ok(body)
    }

    async fn send_email(&self, email: &EmailMessage) -> Result<Accepted, Failure> {
        let body = self.request_body(email)?;
        let key = secret::read(self.secrets.as_ref(), NAME, &self.config.api_key_secret)?;
        let key_text = secret::text(&key, NAME, &self.config.api_key_secret)?;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {key_text}")).map_err(|_| {
                Failure::new(
                    FailureKind::Rejected,
                    format!(
                        "sendgrid: secret {} is not a valid header value",
                        self.config.api_key_secret
                    ),
                )
            })?;
        authorization.set_sensitive(true);
        let response = self
            .client
            .post(&self.endpoint)
            .header(AUTHORIZATION, authorization)
            .json(&body)
            .send()
            .await
            .map_err(|e| http::transport_failure(NAME, e, self.config.timeout))?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            let message_id = headers
                .get("x-message-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Ok(Accepted {
                message_id,
                // SendGrid answers 200 (not 202) when sandbox mode validated without delivering.
                sandbox: status == StatusCode::OK,
            });
        }
        let bytes = response.bytes().await.unwrap_or_default();
        let mut failure = classify(status.as_u16(), &headers, &bytes, SystemTime::now());
        failure.detail = secret::scrub(failure.detail, &[key_text]);
        Err(failure)
    }
}

#[async_trait]
impl Provider for SendGrid {
    fn name(&self) -> &str {
        NAME
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, message: &Message) -> Result<Accepted, Failure> {
        match message {
            Message::Email(email) => self.send_email(email).await,
            Message::Sms(_) => Err(Failure::new(
                FailureKind::Rejected,
                "sendgrid carries email, not sms",
            )),
        }
    }
}

/// SendGrid's error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    field: Option<String>,
}

/// A field naming a recipient's address: `personalizations.0.to.0.email`, also with `cc`
/// or `bcc`, or the address list itself (`personalizations.0.to.0`).
fn is_recipient_field(field: &str) -> bool {
    let parts: Vec<&str> = field.split('.').collect();
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        ["personalizations", p, list, i, rest @ ..] => {
            number(p)
                && matches!(*list, "to" | "cc" | "bcc")
                && number(i)
                && matches!(rest, [] | ["email"])
        }
        _ => false,
    }
}

/// What an answer that is not 2xx means for delivery.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Failure {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let messages: Vec<String> = parsed
        .errors
        .iter()
        .map(|e| {
            let message = e.message.as_deref().unwrap_or("(no message)");
            match e.field.as_deref().filter(|f| !f.is_empty() && *f != "null") {
                Some(field) => format!("{message} ({field})"),
                None => message.to_owned(),
            }
        })
        .collect();
    let said = if messages.is_empty() {
        http::shorten(&String::from_utf8_lossy(body))
    } else {
        http::shorten(&messages.join("; "))
    };
    let detail = if said.is_empty() {
        format!("sendgrid answered {status}")
    } else {
        format!("sendgrid answered {status}: {said}")
    };
    let kind = match status {
        429 => FailureKind::Retryable,
        500..=599 => FailureKind::Retryable,
        401 | 403 => FailureKind::Auth,
        400 if parsed
            .errors
            .iter()
            .any(|e| e.field.as_deref().is_some_and(is_recipient_field)) =>
        {
            FailureKind::Recipient
        }
        _ => FailureKind::Rejected,
    };
    let mut failure = Failure::new(kind, detail).with_status(status);
    if kind == FailureKind::Retryable {
        if let Some(wait) = http::retry_after(headers, now) {
            failure = failure.with_retry_after(wait);
        }
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(field: Option<&str>, message: &str) -> Vec<u8> {
        json!({"errors": [{"message": message, "field": field, "help": null}]})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn recipient_fields() {
        assert!(is_recipient_field("personalizations.0.to.0.email"));
        assert!(is_recipient_field("personalizations.3.bcc.12.email"));
        assert!(is_recipient_field("personalizations.0.cc.1"));
        assert!(!is_recipient_field("personalizations.0.to"));
        assert!(!is_recipient_field("from.email"));
        assert!(!is_recipient_field("personalizations.x.to.0.email"));
        assert!(!is_recipient_field("content.0.value"));
    }

    #[test]
    fn classification() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let none = HeaderMap::new();
        let bad_to = classify(
            400,
            &none,
            &errors(
                Some("personalizations.0.to.0.email"),
                "Does not contain a valid address.",
            ),
            now,
        );
        assert_eq!(bad_to.kind, FailureKind::Recipient);
        assert_eq!(
            bad_to.detail,
            "sendgrid answered 400: Does not contain a valid address. (personalizations.0.to.0.email)"
        );
        assert_eq!(bad_to.status, Some(400));
        let bad_from = classify(400, &none, &errors(Some("from.email"), "invalid"), now);
        assert_eq!(bad_from.kind, FailureKind::Rejected);
        assert_eq!(
            classify(401, &none, &errors(None, "nope"), now).kind,
            FailureKind::Auth
        );
        assert_eq!(classify(403, &none, b"", now).kind, FailureKind::Auth);
        assert_eq!(classify(413, &none, b"", now).kind, FailureKind::Rejected);
        assert_eq!(classify(404, &none, b"", now).kind, FailureKind::Rejected);
        let down = classify(503, &none, b"<html>oops</html>", now);
        assert_eq!(down.kind, FailureKind::Retryable);
        assert_eq!(down.detail, "sendgrid answered 503: <html>oops</html>");
        let mut limited = HeaderMap::new();
        limited.insert("x-ratelimit-reset", HeaderValue::from_static("1012"));
        let slow_down = classify(429, &limited, &errors(None, "too many requests"), now);
        assert_eq!(slow_down.kind, FailureKind::Retryable);
        assert_eq!(slow_down.retry_after, Some(Duration::from_secs(12)));
        // The contract's example writes a missing field as the string "null".
        let example = classify(400, &none, &errors(Some("null"), "invalid request"), now);
        assert_eq!(example.detail, "sendgrid answered 400: invalid request");
    }
}
