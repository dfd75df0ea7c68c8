//! `NOTIFY_MODE=log`: nothing leaves the machine. Each message becomes one structured log
//! line — channel, notification id, masked recipient, subject — and is reported taken, so
//! development and demos run the whole delivery path without any account. The body is not
//! logged: it may hold a one-time link or code.

use async_trait::async_trait;

use std::sync::Arc;

use gardien_secrets::SecretLookup;

use super::declaration::ProviderDeclaration;
use super::{mask, ProvidersConfig};
use crate::delivery::config::NotifyMode;
use crate::delivery::provider::{Accepted, Channel, Failure, FailureKind, Message, Provider};

const NAME: &str = "log";

/// The log provider: every channel, `NOTIFY_MODE=log` only, nothing to configure.
pub const DECLARATION: ProviderDeclaration = ProviderDeclaration {
    name: NAME,
    channels: &[Channel::Email, Channel::Sms],
    modes: &[NotifyMode::Log],
    variables: &[],
    secrets: &[],
    setup: "NOTIFY_MODE=log",
    configured: |_, mode| mode == NotifyMode::Log,
    build,
};

fn build(
    channel: Channel,
    _config: &ProvidersConfig,
    _secrets: Arc<dyn SecretLookup>,
    _mode: NotifyMode,
) -> Result<Arc<dyn Provider>, String> {
    Ok(Arc::new(LogProvider::new(channel)))
}

/// The log provider of one channel (`log`).
#[derive(Debug, Clone)]
pub struct LogProvider {
    channel: Channel,
}

impl LogProvider {
    pub fn new(channel: Channel) -> LogProvider {
        LogProvider { channel }
    }
}

#[async_trait]
impl Provider for LogProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn channel(&self) -> Channel {
        self.channel
    }

    async fn send(&self, message: &Message) -> Result<Accepted, Failure> {
        if message.channel() != self.channel {
            return Err(Failure::new(
                FailureKind::Rejected,
                format!(
                    "{NAME}: this provider logs {}, not {}",
                    self.channel.name(),
                    message.channel().name()
                ),
            ));
        }
        let id = format!("log-{}", uuid::Uuid::new_v4());
        let recipient = mask::recipient(message);
        match message {
            Message::Email(email) => tracing::info!(
                target: "gardien_backend::delivery::log",
                channel = "email",
                notification_id = %email.notification_id,
                recipient = %recipient,
                subject = %email.subject,
                category = %email.category,
                text_chars = email.text.chars().count(),
                html = email.html.is_some(),
                message_id = %id,
                "notification not sent (NOTIFY_MODE=log)"
            ),
            Message::Sms(sms) => tracing::info!(
                target: "gardien_backend::delivery::log",
                channel = "sms",
                notification_id = %sms.notification_id,
                recipient = %recipient,
                body_chars = sms.body.chars().count(),
                message_id = %id,
                "notification not sent (NOTIFY_MODE=log)"
            ),
        }
        Ok(Accepted {
            message_id: Some(id),
            sandbox: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::delivery::provider::{EmailMessage, SmsMessage};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn logs_one_masked_line_and_sends_nothing() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let email = LogProvider::new(Channel::Email);
        let accepted = email
            .send(&Message::Email(EmailMessage {
                to: "alice@example.com".into(),
                subject: "Your report is ready".into(),
                html: Some("<p>secret link https://x/reset?t=abc123</p>".into()),
                text: "secret link https://x/reset?t=abc123".into(),
                notification_id: "n-42".into(),
                category: "reports".into(),
            }))
            .await
            .expect("accepted");
        assert!(accepted.sandbox);
        let id = accepted.message_id.expect("id");
        assert!(id.starts_with("log-"), "{id}");

        let sms = LogProvider::new(Channel::Sms);
        sms.send(&Message::Sms(SmsMessage {
            to: "+33612345678".into(),
            body: "code 908172".into(),
            notification_id: "n-43".into(),
        }))
        .await
        .expect("accepted");
        let refused = email
            .send(&Message::Sms(SmsMessage {
                to: "+33612345678".into(),
                body: "x".into(),
                notification_id: "n-45".into(),
            }))
            .await
            .expect_err("email provider refuses sms");
        assert_eq!(refused.kind, FailureKind::Rejected);

        let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("a***@example.com"), "{text}");
        assert!(lines[0].contains("Your report is ready"), "{text}");
        assert!(lines[0].contains("n-42"), "{text}");
        assert!(lines[0].contains(&id), "{text}");
        assert!(lines[1].contains("+33*******78"), "{text}");
        for secret in ["alice@", "abc123", "+33612345678", "908172"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}
