//! SMTP, the second email provider, with `lettre`. The dialogue is driven one command at a
//! time over lettre's `AsyncSmtpConnection` (rather than its all-in-one transport) so a
//! refusal is classified by the step that drew it: `550` to `RCPT TO` is the recipient's
//! mailbox, `550` elsewhere is this relay refusing us. One connection per message: the
//! credentials are read at each send, so a rotated password is used at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gardien_secrets::SecretLookup;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::Address;

use super::config::EmailSender;
use super::declaration::{ProviderDeclaration, SecretDeclaration};
use super::variables;
use super::{secret, ProvidersConfig, SecretUse, SetupError, DEFAULT_TIMEOUT};
use crate::delivery::config::NotifyMode;
use crate::delivery::provider::{
    Accepted, Channel, EmailMessage, Failure, FailureKind, Message, Provider,
};

/// The secret holding the SMTP user name, unless the configuration names another.
pub const DEFAULT_USERNAME_SECRET: &str = "SMTP_USERNAME";
/// The secret holding the SMTP password, unless the configuration names another.
pub const DEFAULT_PASSWORD_SECRET: &str = "SMTP_PASSWORD";

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text; credentials are then only sent to a loopback host.
    None,
    /// Plain connection upgraded with `STARTTLS`, which the server must offer.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

impl SmtpTls {
    /// `none`, `starttls` or `tls`.
    pub fn parse(text: &str) -> Option<SmtpTls> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(SmtpTls::None),
            "starttls" => Some(SmtpTls::StartTls),
            "tls" => Some(SmtpTls::Tls),
            _ => None,
        }
    }

    /// 25, 587 or 465.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// How to reach the relay and who sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from: EmailSender,
    /// The whole dialogue, connection included.
    pub timeout: Duration,
    /// Given in `EHLO`; `[127.0.0.1]` when unset.
    pub hello_name: Option<String>,
    /// Name of the secret holding the user name; no `AUTH` when it is not set.
    pub username_secret: String,
    /// Name of the secret holding the password.
    pub password_secret: String,
}

impl SmtpConfig {
    /// `host` with STARTTLS on 587, sending as `from`, the default secrets and timeout.
    pub fn new(host: impl Into<String>, from: EmailSender) -> SmtpConfig {
        SmtpConfig {
            host: host.into(),
            port: SmtpTls::StartTls.default_port(),
            tls: SmtpTls::StartTls,
            from,
            timeout: DEFAULT_TIMEOUT,
            hello_name: None,
            username_secret: DEFAULT_USERNAME_SECRET.to_owned(),
            password_secret: DEFAULT_PASSWORD_SECRET.to_owned(),
        }
    }
}

/// The `X-Gardien-Notification-Id` header, to trace a delivered message back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NotificationId(String);

impl Header for NotificationId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Gardien-Notification-Id")
    }

    fn parse(text: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(NotificationId(text.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        // Control characters would end the header early; an id never has any.
        let clean: String = self.0.chars().filter(|c| !c.is_control()).collect();
        HeaderValue::new(Self::name(), clean)
    }
}

/// Which command drew a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Connect,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Message,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::StartTls => "STARTTLS",
            Step::Auth => "AUTH",
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::Message => "message",
        }
    }
}

/// What an SMTP reply code means for delivery, by the step that drew it.
pub fn classify_reply(step: Step, code: u16) -> FailureKind {
    match code {
        400..=499 => FailureKind::Retryable,
        530 | 534 | 535 | 538 => FailureKind::Auth,
        550 | 551 | 553 if step == Step::RcptTo => FailureKind::Recipient,
        _ => FailureKind::Rejected,
    }
}

/// The SMTP relay as a provider (`smtp`).
pub struct Smtp {
    config: SmtpConfig,
    secrets: Arc<dyn SecretLookup>,
    from: Mailbox,
    hello: ClientId,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .field("tls", &self.config.tls)
            .field("from", &self.config.from.address)
            .field("username_secret", &self.config.username_secret)
            .field("password_secret", &self.config.password_secret)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "smtp";

/// The SMTP relay, as the registry, `check` and the secrets see it.
pub const DECLARATION: ProviderDeclaration = ProviderDeclaration {
    name: NAME,
    channels: &[Channel::Email],
    // No test mode: in sandbox it delivers to whatever SMTP_HOST is.
    modes: &[NotifyMode::Live, NotifyMode::Sandbox],
    variables: &[
        variables::SMTP_HOST,
        variables::EMAIL_FROM,
        variables::SMTP_PORT,
        variables::SMTP_TLS,
        variables::SMTP_TIMEOUT,
        variables::SMTP_HELO_NAME,
    ],
    secrets: &[
        SecretDeclaration {
            name: DEFAULT_USERNAME_SECRET,
            needed: false,
            meaning: "the SMTP user name (`smtp`); optional: without one there is no `AUTH`",
        },
        SecretDeclaration {
            name: DEFAULT_PASSWORD_SECRET,
            needed: false,
            meaning: "the SMTP password (`smtp`)",
        },
    ],
    setup: "SMTP_HOST + EMAIL_FROM",
    configured: |config, _| config.smtp.is_some(),
    build,
};

fn build(
    _channel: Channel,
    config: &ProvidersConfig,
    secrets: Arc<dyn SecretLookup>,
    _mode: NotifyMode,
) -> Result<Arc<dyn Provider>, String> {
    let config = config
        .smtp
        .clone()
        .ok_or_else(|| format!("{NAME}: SMTP_HOST is not set"))?;
    let provider = Smtp::new(config, secrets).map_err(|e| e.to_string())?;
    Ok(Arc::new(provider))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The relay's queue id from its `250` after the message (`queued as 4BX2…`, `id=1r…`).
pub fn queue_id(reply_lines: &[&str]) -> Option<String> {
    let clean = |token: &str| {
        let token =
            token.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.');
        (!token.is_empty()).then(|| token.to_owned())
    };
    for line in reply_lines {
        let lower = line.to_ascii_lowercase();
        if let Some(at) = lower.find("queued as ") {
            if let Some(id) = line[at + "queued as ".len()..]
                .split_whitespace()
                .next()
                .and_then(clean)
            {
                return Some(id);
            }
        }
        if let Some(at) = lower.find("id=") {
            if let Some(id) = line[at + 3..].split_whitespace().next().and_then(clean) {
                return Some(id);
            }
        }
    }
    None
}

impl Smtp {
    /// A provider sending through the relay in `config`, reading `SMTP_USERNAME` /
    /// `SMTP_PASSWORD` (or the configured names) at each send. SMTP has no sandbox: in
    /// sandbox mode point it at a sink.
    pub fn new(config: SmtpConfig, secrets: Arc<dyn SecretLookup>) -> Result<Smtp, SetupError> {
        if config.timeout.is_zero() {
            return Err(SetupError::new(NAME, "timeout must be more than 0"));
        }
        if config.host.trim().is_empty() || config.port == 0 {
            return Err(SetupError::new(NAME, "a host and a port are required"));
        }
        let address: Address = config.from.address.parse().map_err(|_| {
            SetupError::new(NAME, format!("`{}` is not an address", config.from.address))
        })?;
        let from = Mailbox::new(config.from.name.clone(), address);
        let hello = match &config.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        Ok(Smtp {
            config,
            secrets,
            from,
            hello,
        })
    }

    /// The secrets a send reads (none required: without a user name there is no `AUTH`).
    pub fn secrets(&self) -> Vec<SecretUse<'_>> {
        vec![
            SecretUse {
                name: &self.config.username_secret,
                required: false,
            },
            SecretUse {
                name: &self.config.password_secret,
                required: false,
            },
        ]
    }

    /// The message as sent: `multipart/alternative` (text then html) or plain text, with a
    /// `Message-ID` of our own and `X-Gardien-Notification-Id`.
    fn build(&self, email: &EmailMessage) -> Result<(lettre::Message, String), Failure> {
        let to: Address = email.to.parse().map_err(|_| {
            Failure::new(
                FailureKind::Recipient,
                "smtp: the recipient is not a valid address",
            )
        })?;
        let domain = self.from.email.domain().to_owned();
        let message_id = format!("{}@{domain}", uuid::Uuid::new_v4().simple());
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(email.subject.clone())
            .message_id(Some(format!("<{message_id}>")))
            .header(NotificationId(email.notification_id.clone()));
        let built = match email.html.as_deref().filter(|h| !h.trim().is_empty()) {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                html.to_owned(),
            )),
            None => builder.singlepart(SinglePart::plain(email.text.clone())),
        };
        let message = built.map_err(|e| {
            Failure::new(
                FailureKind::Rejected,
                format!("smtp: the message could not be built: {e}"),
            )
        })?;
        Ok((message, message_id))
    }

    /// The user name and password, when a user name is set.
    fn credentials(&self) -> Result<Option<(String, String)>, Failure> {
        if self.secrets.get(&self.config.username_secret).is_none() {
            return Ok(None);
        }
        let user = secret::read(self.secrets.as_ref(), NAME, &self.config.username_secret)?;
        let user = secret::text(&user, NAME, &self.config.username_secret)?;
        let password = secret::read(self.secrets.as_ref(), NAME, &self.config.password_secret)?;
        let password = secret::text(&password, NAME, &self.config.password_secret)?;
        if self.config.tls == SmtpTls::None && !is_loopback(&self.config.host) {
            return Err(Failure::new(
                FailureKind::Rejected,
                "smtp: refusing to send credentials without TLS to a host that is not loopback (set SMTP_TLS=starttls or tls)",
            ));
        }
        Ok(Some((user.to_owned(), password.to_owned())))
    }

    async fn send_email(&self, email: &EmailMessage) -> Result<Accepted, Failure> {
        let (message, message_id) = self.build(email)?;
        let credentials = self.credentials()?;
        let lettre_credentials = credentials
            .as_ref()
            .map(|(user, password)| Credentials::new(user.clone(), password.clone()));
        let dialogue = self.dialogue(&message, lettre_credentials.as_ref());
        let outcome = match tokio::time::timeout(self.config.timeout, dialogue).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::new(
                FailureKind::Retryable,
                format!(
                    "smtp: no answer within {}ms",
                    self.config.timeout.as_millis()
                ),
            )),
        };
        match outcome {
            Ok(reply) => {
                let lines: Vec<&str> = reply.message().collect();
                Ok(Accepted {
                    message_id: Some(queue_id(&lines).unwrap_or(message_id)),
                    sandbox: false,
                })
            }
            Err(mut failure) => {
                if let Some((user, password)) = &credentials {
                    failure.detail = secret::scrub(failure.detail, &[password, user]);
                }
                Err(failure)
            }
        }
    }

    /// Connect, protect, authenticate, `MAIL FROM`, `RCPT TO`, `DATA`, the message, `QUIT`:
    /// the reply to the message on success.
    async fn dialogue(
        &self,
        message: &lettre::Message,
        credentials: Option<&Credentials>,
    ) -> Result<Response, Failure> {
        let host = self.config.host.as_str();
        let tls = || {
            TlsParameters::new(host.to_owned())
                .map_err(|e| Failure::new(FailureKind::Rejected, format!("smtp: TLS setup: {e}")))
        };
        let implicit = match self.config.tls {
            SmtpTls::Tls => Some(tls()?),
            SmtpTls::None | SmtpTls::StartTls => None,
        };
        let mut connection = AsyncSmtpConnection::connect_tokio1(
            (host, self.config.port),
            Some(self.config.timeout),
            &self.hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| failure(Step::Connect, &e))?;
        let result = self
            .exchange(&mut connection, message, credentials, tls)
            .await;
        match &result {
            Ok(_) => {
                // The message is taken; a failed QUIT changes nothing.
                let _ = connection.quit().await;
            }
            Err(_) => connection.abort().await,
        }
        result
    }

    async fn exchange(
        &self,
        connection: &mut AsyncSmtpConnection,
        message: &lettre::Message,
        credentials: Option<&Credentials>,
        tls: impl Fn() -> Result<TlsParameters, Failure>,
    ) -> Result<Response, Failure> {
        if self.config.tls == SmtpTls::StartTls {
            if !connection.can_starttls() {
                return Err(Failure::new(
                    FailureKind::Rejected,
                    "smtp: the server does not offer STARTTLS (SMTP_TLS=starttls)",
                ));
            }
            connection
                .starttls(tls()?, &self.hello)
                .await
                .map_err(|e| failure(Step::StartTls, &e))?;
        }
        if let Some(credentials) = credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| failure(Step::Auth, &e))?;
        }
        let envelope = message.envelope();
        let body = message.formatted();
        let mut parameters = Vec::new();
        let info = connection.server_info();
        if envelope
            .to()
            .iter()
            .chain(envelope.from())
            .any(|a: &Address| !AsRef::<str>::as_ref(a).is_ascii())
        {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Err(Failure::new(
                    FailureKind::Rejected,
                    "smtp: a non-ASCII address needs SMTPUTF8, which the server does not offer",
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        connection
            .command(Mail::new(envelope.from().cloned(), parameters))
            .await
            .map_err(|e| failure(Step::MailFrom, &e))?;
        for to in envelope.to() {
            connection
                .command(Rcpt::new(to.clone(), vec![]))
                .await
                .map_err(|e| failure(Step::RcptTo, &e))?;
        }
        connection
            .command(Data)
            .await
            .map_err(|e| failure(Step::Data, &e))?;
        connection
            .message(&body)
            .await
            .map_err(|e| failure(Step::Message, &e))
    }
}

/// A TLS handshake that failed: tokio-rustls reports it as an `InvalidData` I/O error, which
/// lettre wraps as a connection error.
fn is_tls_failure(error: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        source = inner.source();
    }
    false
}

/// A lettre error as a classified failure.
fn failure(step: Step, error: &lettre::transport::smtp::Error) -> Failure {
    let what = step.name();
    if let Some(code) = error.status() {
        let code = u16::from(code);
        return Failure::new(
            classify_reply(step, code),
            format!("smtp: {what} refused: {error}"),
        )
        .with_status(code);
    }
    let kind = if error.is_timeout() {
        FailureKind::Retryable
    } else if error.is_tls() || error.is_client() || is_tls_failure(error) {
        // A certificate that does not verify, a port that does not speak TLS or a missing
        // feature will not fix itself.
        FailureKind::Rejected
    } else {
        // Refused, reset or garbled connections.
        FailureKind::Retryable
    };
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    Failure::new(kind, format!("smtp: {what} failed: {text}"))
}

#[async_trait]
impl Provider for Smtp {
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
                "smtp carries email, not sms",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_by_step() {
        assert_eq!(classify_reply(Step::RcptTo, 550), FailureKind::Recipient);
        assert_eq!(classify_reply(Step::RcptTo, 551), FailureKind::Recipient);
        assert_eq!(classify_reply(Step::RcptTo, 553), FailureKind::Recipient);
        assert_eq!(classify_reply(Step::MailFrom, 550), FailureKind::Rejected);
        assert_eq!(classify_reply(Step::MailFrom, 553), FailureKind::Rejected);
        assert_eq!(classify_reply(Step::Message, 554), FailureKind::Rejected);
        assert_eq!(classify_reply(Step::RcptTo, 451), FailureKind::Retryable);
        assert_eq!(classify_reply(Step::Connect, 421), FailureKind::Retryable);
        assert_eq!(classify_reply(Step::Auth, 535), FailureKind::Auth);
        assert_eq!(classify_reply(Step::MailFrom, 530), FailureKind::Auth);
        assert_eq!(classify_reply(Step::RcptTo, 552), FailureKind::Rejected);
    }

    #[test]
    fn queue_ids() {
        assert_eq!(
            queue_id(&["2.0.0 Ok: queued as 4BX2kF0Jz3z9"]).as_deref(),
            Some("4BX2kF0Jz3z9")
        );
        assert_eq!(
            queue_id(&["OK id=1rAbCd-0001Xy-2Q"]).as_deref(),
            Some("1rAbCd-0001Xy-2Q")
        );
        assert_eq!(queue_id(&["Ok"]), None);
        assert_eq!(queue_id(&["queued as <ABC>"]).as_deref(), Some("ABC"));
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("mail.example.com"));
        assert!(!is_loopback("10.0.0.1"));
    }

    #[test]
    fn tls_modes() {
        assert_eq!(SmtpTls::parse("STARTTLS"), Some(SmtpTls::StartTls));
        assert_eq!(SmtpTls::parse("none"), Some(SmtpTls::None));
        assert_eq!(SmtpTls::parse("ssl"), None);
        assert_eq!(SmtpTls::Tls.default_port(), 465);
    }
}
