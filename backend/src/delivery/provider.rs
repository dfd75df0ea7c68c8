//! The contract between delivery and the services that carry a message: one [`Provider`]
//! per service account (SendGrid, SMTP, a Twilio account…), asked to deliver one rendered
//! [`Message`] to one recipient, answering [`Accepted`] or a classified [`Failure`]. The
//! classification is the provider's job (only it knows its status codes and error codes);
//! what to do with it — retry, next provider, fail the message, open the circuit — is the
//! fallback's (`delivery::fallback`).

use std::time::Duration;

use async_trait::async_trait;

/// A delivery channel that has providers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Sms];

    pub const fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One rendered email to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    /// The recipient's address (already validated).
    pub to: String,
    /// One line.
    pub subject: String,
    /// The HTML body (escaped by the template engine).
    pub html: Option<String>,
    /// The plain-text body.
    pub text: String,
    /// The notification's id, sent along where the service keeps custom data (SendGrid
    /// `custom_args`, an SMTP header) so a delivered message can be traced back.
    pub notification_id: String,
    /// The template's category (SendGrid `categories`).
    pub category: String,
}

/// One rendered sms to one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    /// E.164 (`+33612345678`).
    pub to: String,
    pub body: String,
    pub notification_id: String,
}

/// What a provider is asked to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Email(EmailMessage),
    Sms(SmsMessage),
}

impl Message {
    pub fn channel(&self) -> Channel {
        match self {
            Message::Email(_) => Channel::Email,
            Message::Sms(_) => Channel::Sms,
        }
    }
}

/// The provider took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The provider's id for it (SendGrid `X-Message-Id`, Twilio `sid`, the SMTP queue id
    /// when the server gives one).
    pub message_id: Option<String>,
    /// The provider took it in sandbox / test mode: validated, not delivered.
    pub sandbox: bool,
}

/// Why a provider did not take a message, as delivery must act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Try this provider again later (timeout, connection refused or reset, `429`, `5xx`,
    /// Twilio `20429`): with backoff, up to a bound, then the next provider.
    Retryable,
    /// The credentials were refused (`401`, `403`): open this provider's circuit for a
    /// cool-down and go to the next provider at once.
    Auth,
    /// The recipient cannot be reached (SendGrid `400` on the address, Twilio `21211`,
    /// `21610`, `21612`): fail the message; another provider would fail the same way.
    Recipient,
    /// This provider refused this request for another reason it will not change its mind
    /// about (a `400` not about the recipient, `413`, missing configuration): go to the
    /// next provider without retrying this one.
    Rejected,
}

impl FailureKind {
    pub const fn name(self) -> &'static str {
        match self {
            FailureKind::Retryable => "retryable",
            FailureKind::Auth => "auth",
            FailureKind::Recipient => "recipient",
            FailureKind::Rejected => "rejected",
        }
    }
}

/// A classified failure. `detail` is for the attempt record and logs: it never holds a
/// credential (no API key, auth token or password, not even in a URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
    /// The HTTP status (or SMTP reply code) when there was one.
    pub status: Option<u16>,
    /// The provider's own error code (Twilio `21211`…), when it gave one.
    pub code: Option<String>,
    /// How long the provider asked us to wait (`Retry-After`, `X-RateLimit-Reset`).
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Failure {
            kind,
            detail: detail.into(),
            status: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

/// One service account that carries messages of one channel.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The name attempts, metrics and `/readyz` use (`sendgrid`, `smtp`, `twilio`,
    /// `twilio-secondary`, `log`).
    fn name(&self) -> &str;

    fn channel(&self) -> Channel;

    /// Delivers `message` once. Bounded in time (the provider's own timeout); never panics.
    async fn send(&self, message: &Message) -> Result<Accepted, Failure>;
}
