//! Twilio Programmable Messaging (`POST /2010-04-01/Accounts/{Sid}/Messages.json`, HTTP
//! Basic `AccountSid:AuthToken`, form body), per `shared/contracts/twilio_api_v2010.json`:
//! `201` with the message resource (`sid`), errors as
//! `{"code","message","more_info","status"}`. One provider per account, so the primary and
//! the secondary account fall back on each other.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use gardien_secrets::SecretLookup;
use reqwest::header::HeaderMap;
use reqwest::Url;
use serde::Deserialize;

use super::config::check_base_url;
use super::declaration::{ProviderDeclaration, SecretDeclaration, Variable};
use super::variables;
use super::{http, secret, ProvidersConfig, SecretUse, SetupError, DEFAULT_TIMEOUT};
use crate::delivery::config::NotifyMode;
use crate::delivery::provider::{
    Accepted, Channel, Failure, FailureKind, Message, Provider, SmsMessage,
};

/// Twilio's REST API.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// The sender Twilio's test credentials accept (the "magic" number that always succeeds).
pub const TEST_FROM: &str = "+15005550006";

/// Twilio error codes that mean the recipient cannot be reached, whatever the account:
/// 21211 invalid `To` number, 21610 the recipient replied STOP, 21612 no route to the
/// number, 21614 not a mobile number.
pub const RECIPIENT_ERROR_CODES: &[i64] = &[21211, 21610, 21612, 21614];

/// Twilio's "Too Many Requests": the request was not processed, always safe to retry.
const TOO_MANY_REQUESTS: i64 = 20429;

/// Twilio's "Authenticate" / permission error.
const AUTHENTICATE: i64 = 20003;

/// The settings both accounts read.
const SHARED_VARIABLES: [Variable; 2] = [variables::TWILIO_API_BASE_URL, variables::TWILIO_TIMEOUT];

const PRIMARY_SID: &str = "TWILIO_ACCOUNT_SID";
const PRIMARY_TOKEN: &str = "TWILIO_AUTH_TOKEN";
const SECONDARY_SID: &str = "TWILIO_SECONDARY_ACCOUNT_SID";
const SECONDARY_TOKEN: &str = "TWILIO_SECONDARY_AUTH_TOKEN";

/// The primary account, as the registry, `check` and the secrets see it.
pub const PRIMARY: ProviderDeclaration = ProviderDeclaration {
    name: "twilio",
    channels: &[Channel::Sms],
    modes: &[NotifyMode::Live, NotifyMode::Sandbox],
    variables: &[
        SHARED_VARIABLES[0],
        SHARED_VARIABLES[1],
        variables::TWILIO_MESSAGING_SERVICE_SID,
        variables::TWILIO_FROM,
    ],
    secrets: &[
        SecretDeclaration {
            name: PRIMARY_SID,
            needed: true,
            meaning: "the primary account's SID (`twilio`)",
        },
        SecretDeclaration {
            name: PRIMARY_TOKEN,
            needed: true,
            meaning: "the primary account's auth token (`twilio`)",
        },
    ],
    setup: "(TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID) + TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN",
    // In sandbox the sender is Twilio's test number: no setting needed.
    configured: |config, mode| {
        mode == NotifyMode::Sandbox
            || config.twilio.messaging_service_sid.is_some()
            || config.twilio.from.is_some()
    },
    build: build_primary,
};

/// The secondary account, as the registry, `check` and the secrets see it.
pub const SECONDARY: ProviderDeclaration = ProviderDeclaration {
    name: "twilio-secondary",
    channels: &[Channel::Sms],
    modes: &[NotifyMode::Live, NotifyMode::Sandbox],
    variables: &[
        SHARED_VARIABLES[0],
        SHARED_VARIABLES[1],
        variables::TWILIO_SECONDARY_MESSAGING_SERVICE_SID,
        variables::TWILIO_SECONDARY_FROM,
    ],
    secrets: &[
        SecretDeclaration {
            name: SECONDARY_SID,
            needed: true,
            meaning: "the secondary account's SID (`twilio-secondary`)",
        },
        SecretDeclaration {
            name: SECONDARY_TOKEN,
            needed: true,
            meaning: "the secondary account's auth token (`twilio-secondary`)",
        },
    ],
    setup: "(TWILIO_SECONDARY_FROM or TWILIO_SECONDARY_MESSAGING_SERVICE_SID) + TWILIO_SECONDARY_ACCOUNT_SID + TWILIO_SECONDARY_AUTH_TOKEN",
    configured: |config, _| config.twilio_secondary.is_some(),
    build: build_secondary,
};

fn build_primary(
    _channel: Channel,
    config: &ProvidersConfig,
    secrets: Arc<dyn SecretLookup>,
    mode: NotifyMode,
) -> Result<Arc<dyn Provider>, String> {
    let provider = Twilio::new(config.twilio.clone(), secrets, mode == NotifyMode::Sandbox)
        .map_err(|e| format!("{e} (TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID)"))?;
    Ok(Arc::new(provider))
}

fn build_secondary(
    _channel: Channel,
    config: &ProvidersConfig,
    secrets: Arc<dyn SecretLookup>,
    mode: NotifyMode,
) -> Result<Arc<dyn Provider>, String> {
    let sandbox = mode == NotifyMode::Sandbox;
    let account = match (&config.twilio_secondary, sandbox) {
        (Some(account), _) => account.clone(),
        // In sandbox the sender is Twilio's test number: no setting needed.
        (None, true) => TwilioConfig {
            base_url: config.twilio.base_url.clone(),
            timeout: config.twilio.timeout,
            ..TwilioConfig::secondary()
        },
        (None, false) => {
            return Err(format!(
                "{}: set TWILIO_SECONDARY_FROM or TWILIO_SECONDARY_MESSAGING_SERVICE_SID",
                SECONDARY.name
            ))
        }
    };
    let provider = Twilio::new(account, secrets, sandbox).map_err(|e| {
        format!("{e} (TWILIO_SECONDARY_FROM or TWILIO_SECONDARY_MESSAGING_SERVICE_SID)")
    })?;
    Ok(Arc::new(provider))
}

/// One Twilio account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioConfig {
    /// The provider's name: `twilio`, `twilio-secondary`.
    pub name: String,
    /// `https://api.twilio.com` unless tests or staging point elsewhere.
    pub base_url: String,
    /// `MessagingServiceSid` (MG + 32 hex): Twilio picks the sender from the service's pool.
    pub messaging_service_sid: Option<String>,
    /// `From`: a number of the account, a short code or an alphanumeric sender ID.
    pub from: Option<String>,
    /// The whole request, connection included.
    pub timeout: Duration,
    /// Name of the secret holding the Account SID.
    pub account_sid_secret: String,
    /// Name of the secret holding the Auth Token.
    pub auth_token_secret: String,
}

impl TwilioConfig {
    /// The primary account: `twilio`, secrets `TWILIO_ACCOUNT_SID` / `TWILIO_AUTH_TOKEN`.
    pub fn primary() -> TwilioConfig {
        TwilioConfig::account(PRIMARY.name, PRIMARY_SID, PRIMARY_TOKEN)
    }

    /// The secondary account: `twilio-secondary`, secrets `TWILIO_SECONDARY_ACCOUNT_SID` /
    /// `TWILIO_SECONDARY_AUTH_TOKEN`.
    pub fn secondary() -> TwilioConfig {
        TwilioConfig::account(SECONDARY.name, SECONDARY_SID, SECONDARY_TOKEN)
    }

    fn account(name: &str, sid: &str, token: &str) -> TwilioConfig {
        TwilioConfig {
            name: name.to_owned(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            messaging_service_sid: None,
            from: None,
            timeout: DEFAULT_TIMEOUT,
            account_sid_secret: sid.to_owned(),
            auth_token_secret: token.to_owned(),
        }
    }
}

/// `prefix` followed by 32 hex digits: Twilio's SIDs.
fn is_sid(text: &str, prefix: &str) -> bool {
    text.len() == 34 && text.starts_with(prefix) && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `MG` + 32 hex.
pub fn is_messaging_service_sid(text: &str) -> bool {
    is_sid(text, "MG")
}

/// `AC` + 32 hex.
pub fn is_account_sid(text: &str) -> bool {
    is_sid(text, "AC")
}

/// An E.164 number (`+` then up to 15 digits, not starting with 0), a short code (3 to 8
/// digits) or an alphanumeric sender ID (up to 11 letters, digits and spaces, one letter at
/// least).
pub fn is_sender(text: &str) -> bool {
    if let Some(digits) = text.strip_prefix('+') {
        return (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return (3..=8).contains(&text.len());
    }
    (1..=11).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && text.bytes().any(|b| b.is_ascii_alphabetic())
}

/// A Twilio account as a provider.
pub struct Twilio {
    config: TwilioConfig,
    secrets: Arc<dyn SecretLookup>,
    sandbox: bool,
    base: Url,
    client: reqwest::Client,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio")
            .field("name", &self.config.name)
            .field("base", &self.base.as_str())
            .field("messaging_service_sid", &self.config.messaging_service_sid)
            .field("from", &self.config.from)
            .field("account_sid_secret", &self.config.account_sid_secret)
            .field("auth_token_secret", &self.config.auth_token_secret)
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

impl Twilio {
    /// A provider for one account. Live, it needs a `MessagingServiceSid` or a `From`.
    /// With `sandbox`, it expects Twilio's test credentials in the secrets and always sends
    /// `From=+15005550006` without a Messaging Service (test credentials support neither
    /// real numbers nor services): Twilio validates and delivers nothing.
    pub fn new(
        config: TwilioConfig,
        secrets: Arc<dyn SecretLookup>,
        sandbox: bool,
    ) -> Result<Twilio, SetupError> {
        let mut config = config;
        let base = check_base_url(&config.base_url)
            .map_err(|message| SetupError::new(&config.name, format!("base URL: {message}")))?;
        if sandbox {
            config.messaging_service_sid = None;
            config.from = Some(TEST_FROM.to_owned());
        } else if config.messaging_service_sid.is_none() && config.from.is_none() {
            return Err(SetupError::new(
                &config.name,
                "a Messaging Service SID or a From sender is required to send live",
            ));
        }
        if let Some(sid) = &config.messaging_service_sid {
            if !is_messaging_service_sid(sid) {
                return Err(SetupError::new(
                    &config.name,
                    format!("`{sid}` is not a Messaging Service SID (MG + 32 hex)"),
                ));
            }
        }
        if let Some(from) = &config.from {
            if !is_sender(from) {
                return Err(SetupError::new(
                    &config.name,
                    format!("`{from}` is not a sender"),
                ));
            }
        }
        let client = http::client(&config.name, config.timeout)?;
        Ok(Twilio {
            config,
            secrets,
            sandbox,
            base,
            client,
        })
    }

    /// The secrets a send reads.
    pub fn secrets(&self) -> Vec<SecretUse<'_>> {
        vec![
            SecretUse {
                name: &self.config.account_sid_secret,
                required: true,
            },
            SecretUse {
                name: &self.config.auth_token_secret,
                required: true,
            },
        ]
    }

    /// The form fields of the request for `sms`.
    pub fn form(&self, sms: &SmsMessage) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", sms.to.clone()), ("Body", sms.body.clone())];
        if let Some(sid) = &self.config.messaging_service_sid {
            form.push(("MessagingServiceSid", sid.clone()));
        }
        if let Some(from) = &self.config.from {
            form.push(("From", from.clone()));
        }
        form
    }

    async fn send_sms(&self, sms: &SmsMessage) -> Result<Accepted, Failure> {
        let name = self.config.name.as_str();
        if sms.body.trim().is_empty() {
            return Err(Failure::new(
                FailureKind::Rejected,
                format!("{name}: the message has no body"),
            ));
        }
        let sid_secret =
            secret::read(self.secrets.as_ref(), name, &self.config.account_sid_secret)?;
        let sid = secret::text(&sid_secret, name, &self.config.account_sid_secret)?;
        if !is_account_sid(sid) {
            // Checked before it goes into the URL path; its value is not repeated.
            return Err(Failure::new(
                FailureKind::Rejected,
                format!(
                    "{name}: secret {} is not an Account SID (AC + 32 hex)",
                    self.config.account_sid_secret
                ),
            ));
        }
        let token_secret =
            secret::read(self.secrets.as_ref(), name, &self.config.auth_token_secret)?;
        let token = secret::text(&token_secret, name, &self.config.auth_token_secret)?;
        let url = http::endpoint(
            &self.base,
            &format!("/2010-04-01/Accounts/{sid}/Messages.json"),
        );
        let response = self
            .client
            .post(url)
            .basic_auth(sid, Some(token))
            .form(&self.form(sms))
            .send()
            .await
            .map_err(|e| http::transport_failure(name, e, self.config.timeout))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            let resource: Resource = serde_json::from_slice(&bytes).unwrap_or_default();
            return Ok(Accepted {
                message_id: resource.sid,
                sandbox: self.sandbox,
            });
        }
        let mut failure = classify(name, status.as_u16(), &headers, &bytes, SystemTime::now());
        failure.detail = secret::scrub(failure.detail, &[token, sid]);
        Err(failure)
    }
}

#[async_trait]
impl Provider for Twilio {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn send(&self, message: &Message) -> Result<Accepted, Failure> {
        match message {
            Message::Sms(sms) => self.send_sms(sms).await,
            Message::Email(_) => Err(Failure::new(
                FailureKind::Rejected,
                format!("{} carries sms, not email", self.config.name),
            )),
        }
    }
}

/// The part of the `201` message resource delivery keeps.
#[derive(Debug, Default, Deserialize)]
struct Resource {
    #[serde(default)]
    sid: Option<String>,
}

/// Twilio's error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

/// What an answer that is not 2xx means for delivery.
pub fn classify(
    provider: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Failure {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let said = match (&parsed.code, &parsed.message) {
        (Some(code), Some(message)) => format!("{code} {}", http::shorten(message)),
        (Some(code), None) => code.to_string(),
        (None, Some(message)) => http::shorten(message),
        (None, None) => http::shorten(&String::from_utf8_lossy(body)),
    };
    let detail = if said.is_empty() {
        format!("{provider} answered {status}")
    } else {
        format!("{provider} answered {status}: {said}")
    };
    let code = parsed.code;
    let kind = if status == 429 || code == Some(TOO_MANY_REQUESTS) || status >= 500 {
        FailureKind::Retryable
    } else if status == 401 || status == 403 || code == Some(AUTHENTICATE) {
        FailureKind::Auth
    } else if code.is_some_and(|c| RECIPIENT_ERROR_CODES.contains(&c)) {
        FailureKind::Recipient
    } else {
        FailureKind::Rejected
    };
    let mut failure = Failure::new(kind, detail).with_status(status);
    if let Some(code) = code {
        failure = failure.with_code(code.to_string());
    }
    if kind == FailureKind::Retryable {
        if let Some(wait) = http::retry_after(headers, now) {
            failure = failure.with_retry_after(wait);
        }
    }
    failure
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;
    use serde_json::json;

    use super::*;

    fn error(code: i64, status: u16) -> Vec<u8> {
        json!({
            "code": code,
            "message": "something",
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn classification() {
        let now = SystemTime::UNIX_EPOCH;
        let none = HeaderMap::new();
        let kind = |status, code| classify("twilio", status, &none, &error(code, status), now).kind;
        assert_eq!(kind(400, 21211), FailureKind::Recipient);
        assert_eq!(kind(400, 21610), FailureKind::Recipient);
        assert_eq!(kind(400, 21612), FailureKind::Recipient);
        assert_eq!(kind(400, 21614), FailureKind::Recipient);
        assert_eq!(kind(400, 21602), FailureKind::Rejected);
        assert_eq!(kind(400, 21606), FailureKind::Rejected);
        assert_eq!(kind(401, 20003), FailureKind::Auth);
        assert_eq!(kind(403, 20003), FailureKind::Auth);
        assert_eq!(kind(429, 20429), FailureKind::Retryable);
        assert_eq!(kind(400, 20429), FailureKind::Retryable);
        assert_eq!(kind(500, 20500), FailureKind::Retryable);
        assert_eq!(kind(503, 20503), FailureKind::Retryable);
        let failure = classify("twilio-secondary", 400, &none, &error(21211, 400), now);
        assert_eq!(failure.code.as_deref(), Some("21211"));
        assert_eq!(failure.status, Some(400));
        assert_eq!(
            failure.detail,
            "twilio-secondary answered 400: 21211 something"
        );
        let mut wait = HeaderMap::new();
        wait.insert("retry-after", HeaderValue::from_static("3"));
        let limited = classify("twilio", 429, &wait, &error(20429, 429), now);
        assert_eq!(limited.retry_after, Some(Duration::from_secs(3)));
        let html = classify("twilio", 502, &none, b"Bad Gateway", now);
        assert_eq!((html.kind, html.code), (FailureKind::Retryable, None));
    }

    #[test]
    fn sids_and_senders() {
        assert!(is_account_sid("AC0123456789abcdef0123456789ABCDEF"));
        assert!(!is_account_sid("AC0123"));
        assert!(!is_account_sid("MG0123456789abcdef0123456789abcdef"));
        assert!(!is_account_sid("AC0123456789abcdef0123456789abcdeg"));
        assert!(is_messaging_service_sid(
            "MG0123456789abcdef0123456789abcdef"
        ));
        assert!(is_sender("+15005550006"));
        assert!(is_sender("12345"));
        assert!(is_sender("Gardien"));
        assert!(!is_sender("+0123"));
        assert!(!is_sender("Gardien Notify"));
        assert!(!is_sender("123456789012"));
        assert!(!is_sender("a/b"));
    }
}
