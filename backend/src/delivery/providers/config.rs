//! The providers' configuration from environment variables, read through [`EnvLookup`] (not
//! `std::env`) so tests pass a map. Every problem is reported with its variable's name, all
//! at once, so a refused start lists everything to fix.
//!
//! What is configured is what is set: SendGrid when `EMAIL_FROM` is set, SMTP when
//! `SMTP_HOST` is, the secondary Twilio account when one of its sender variables is. The
//! primary Twilio account is always described; whether it may send without a sender is the
//! mode's business ([`Twilio::new`](super::Twilio::new) refuses live without one).

use std::fmt;
use std::time::Duration;

use reqwest::Url;

use super::sendgrid::SendGridConfig;
use super::smtp::{SmtpConfig, SmtpTls};
use super::twilio::{self, TwilioConfig};
use super::variables;
use crate::config::parse_duration;

/// Where the variables are read (the process environment, or a map in tests): the trait
/// the secrets chain reads its configuration through.
pub use gardien_secrets::{ProcessVars as ProcessEnv, Vars as EnvLookup};

/// The sender of every email: an address and an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSender {
    pub address: String,
    pub name: Option<String>,
}

impl EmailSender {
    /// `notify@example.com` or `Example <notify@example.com>` (quotes around the name are
    /// removed).
    pub fn parse(text: &str) -> Result<EmailSender, String> {
        let text = text.trim();
        let (name, address) = match text.rsplit_once('<') {
            Some((name, rest)) => {
                let address = rest
                    .strip_suffix('>')
                    .ok_or_else(|| format!("`{text}`: `<` without a closing `>`"))?;
                let name = name.trim().trim_matches('"').trim();
                (Some(name).filter(|n| !n.is_empty()), address.trim())
            }
            None => (None, text),
        };
        if address.parse::<lettre::Address>().is_err() {
            return Err(format!("`{address}` is not an email address"));
        }
        if name.is_some_and(|n| n.chars().any(char::is_control)) {
            return Err("the display name has control characters".into());
        }
        Ok(EmailSender {
            address: address.to_owned(),
            name: name.map(str::to_owned),
        })
    }
}

/// The validated configuration of every provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvidersConfig {
    /// Some when `EMAIL_FROM` is set.
    pub sendgrid: Option<SendGridConfig>,
    /// Some when `SMTP_HOST` is set.
    pub smtp: Option<SmtpConfig>,
    /// The primary account (`TWILIO_ACCOUNT_SID` / `TWILIO_AUTH_TOKEN`).
    pub twilio: TwilioConfig,
    /// Some when `TWILIO_SECONDARY_MESSAGING_SERVICE_SID` or `TWILIO_SECONDARY_FROM` is set.
    pub twilio_secondary: Option<TwilioConfig>,
}

/// Every problem found, one line each, each naming its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems(pub Vec<String>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ConfigProblems {}

/// Reads variables and collects problems as it goes.
struct Reader<'a> {
    env: &'a dyn EnvLookup,
    problems: Vec<String>,
}

impl Reader<'_> {
    /// The variable, trimmed; empty counts as unset.
    fn text(&self, name: &str) -> Option<String> {
        self.env
            .var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn problem(&mut self, name: &str, message: impl fmt::Display) {
        self.problems.push(format!("{name}: {message}"));
    }

    /// The variable when it is a valid base URL, else `default`.
    fn base_url(&mut self, name: &str, default: &str) -> String {
        let Some(text) = self.text(name) else {
            return default.to_owned();
        };
        match check_base_url(&text) {
            Ok(url) => url.to_string(),
            Err(message) => {
                self.problem(name, message);
                default.to_owned()
            }
        }
    }

    fn duration(&mut self, name: &str, default: Duration) -> Duration {
        let Some(text) = self.text(name) else {
            return default;
        };
        match parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                self.problem(name, "must be more than 0");
                default
            }
            Ok(d) if d > Duration::from_secs(300) => {
                self.problem(name, "at most 300s: a send must not hold a worker longer");
                default
            }
            Ok(d) => d,
            Err(message) => {
                self.problem(name, message);
                default
            }
        }
    }
}

/// An `http`/`https` URL with a host and no credentials, query or fragment.
pub fn check_base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text)
        .map_err(|e| format!("`{}` is not a URL: {e}", crate::config::redact_url(text)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{}`: use http:// or https://", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL (they are secrets)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL has no query or fragment".into());
    }
    Ok(url)
}

impl ProvidersConfig {
    /// Reads and validates every provider variable.
    pub fn from_env(env: &dyn EnvLookup) -> Result<ProvidersConfig, ConfigProblems> {
        let mut r = Reader {
            env,
            problems: Vec::new(),
        };

        let sender =
            r.text(variables::EMAIL_FROM.name)
                .and_then(|text| match EmailSender::parse(&text) {
                    Ok(sender) => Some(sender),
                    Err(message) => {
                        r.problem(variables::EMAIL_FROM.name, message);
                        None
                    }
                });

        let sendgrid_base = r.base_url(
            variables::SENDGRID_API_BASE_URL.name,
            super::sendgrid::DEFAULT_BASE_URL,
        );
        let sendgrid_timeout = r.duration(variables::SENDGRID_TIMEOUT.name, super::DEFAULT_TIMEOUT);
        let sendgrid = sender.clone().map(|from| SendGridConfig {
            base_url: sendgrid_base,
            timeout: sendgrid_timeout,
            ..SendGridConfig::new(from)
        });

        let smtp = smtp_config(&mut r, sender.as_ref());

        let twilio_base = r.base_url(
            variables::TWILIO_API_BASE_URL.name,
            twilio::DEFAULT_BASE_URL,
        );
        let twilio_timeout = r.duration(variables::TWILIO_TIMEOUT.name, super::DEFAULT_TIMEOUT);
        let mut twilio = TwilioConfig {
            base_url: twilio_base.clone(),
            timeout: twilio_timeout,
            ..TwilioConfig::primary()
        };
        twilio_sender(
            &mut r,
            &mut twilio,
            variables::TWILIO_MESSAGING_SERVICE_SID.name,
            variables::TWILIO_FROM.name,
        );
        let mut secondary = TwilioConfig {
            base_url: twilio_base,
            timeout: twilio_timeout,
            ..TwilioConfig::secondary()
        };
        twilio_sender(
            &mut r,
            &mut secondary,
            variables::TWILIO_SECONDARY_MESSAGING_SERVICE_SID.name,
            variables::TWILIO_SECONDARY_FROM.name,
        );
        let twilio_secondary = (secondary.messaging_service_sid.is_some()
            || secondary.from.is_some())
        .then_some(secondary);

        if r.problems.is_empty() {
            Ok(ProvidersConfig {
                sendgrid,
                smtp,
                twilio,
                twilio_secondary,
            })
        } else {
            Err(ConfigProblems(r.problems))
        }
    }
}

fn smtp_config(r: &mut Reader<'_>, sender: Option<&EmailSender>) -> Option<SmtpConfig> {
    let host = r.text(variables::SMTP_HOST.name);
    let tls = match r.text(variables::SMTP_TLS.name) {
        None => SmtpTls::StartTls,
        Some(text) => SmtpTls::parse(&text).unwrap_or_else(|| {
            r.problem(
                variables::SMTP_TLS.name,
                format!("`{text}`: use none, starttls or tls"),
            );
            SmtpTls::StartTls
        }),
    };
    let port = match r.text(variables::SMTP_PORT.name) {
        None => tls.default_port(),
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                r.problem(
                    variables::SMTP_PORT.name,
                    format!("`{text}` is not a port (1-65535)"),
                );
                tls.default_port()
            }
        },
    };
    let timeout = r.duration(variables::SMTP_TIMEOUT.name, super::DEFAULT_TIMEOUT);
    let hello_name = r.text(variables::SMTP_HELO_NAME.name);
    if let Some(name) = &hello_name {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        {
            r.problem(
                variables::SMTP_HELO_NAME.name,
                format!("`{name}` is not a host name"),
            );
        }
    }
    let host = host?;
    if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        r.problem(
            variables::SMTP_HOST.name,
            format!("`{host}` is not a host name"),
        );
        return None;
    }
    let Some(from) = sender.cloned() else {
        r.problem(variables::EMAIL_FROM.name, "required when SMTP_HOST is set");
        return None;
    };
    let mut config = SmtpConfig::new(host, from);
    config.port = port;
    config.tls = tls;
    config.timeout = timeout;
    config.hello_name = hello_name;
    Some(config)
}

fn twilio_sender(r: &mut Reader<'_>, config: &mut TwilioConfig, service_var: &str, from_var: &str) {
    if let Some(sid) = r.text(service_var) {
        if twilio::is_messaging_service_sid(&sid) {
            config.messaging_service_sid = Some(sid);
        } else {
            r.problem(
                service_var,
                format!("`{sid}` is not a Messaging Service SID (MG + 32 hex)"),
            );
        }
    }
    if let Some(from) = r.text(from_var) {
        if twilio::is_sender(&from) {
            config.from = Some(from);
        } else {
            r.problem(
                from_var,
                format!("`{from}` is neither an E.164 number, a short code nor an alphanumeric sender ID"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = ProvidersConfig::from_env(&env(&[])).expect("valid");
        assert!(config.sendgrid.is_none());
        assert!(config.smtp.is_none());
        assert!(config.twilio_secondary.is_none());
        assert_eq!(config.twilio.name, "twilio");
        assert_eq!(config.twilio.base_url, "https://api.twilio.com");
        assert_eq!(config.twilio.account_sid_secret, "TWILIO_ACCOUNT_SID");
        assert!(config.twilio.from.is_none());
    }

    #[test]
    fn everything_set() {
        let config = ProvidersConfig::from_env(&env(&[
            ("EMAIL_FROM", "\"Gardien\" <notify@example.com>"),
            ("SENDGRID_API_BASE_URL", "http://127.0.0.1:9000"),
            ("SENDGRID_TIMEOUT", "2s"),
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_TLS", "none"),
            ("TWILIO_API_BASE_URL", "http://127.0.0.1:9001/"),
            (
                "TWILIO_MESSAGING_SERVICE_SID",
                "MG0123456789abcdef0123456789abcdef",
            ),
            ("TWILIO_SECONDARY_FROM", "+15005550006"),
            ("TWILIO_TIMEOUT", "1500ms"),
        ]))
        .expect("valid");
        let sendgrid = config.sendgrid.expect("sendgrid");
        assert_eq!(sendgrid.from.address, "notify@example.com");
        assert_eq!(sendgrid.from.name.as_deref(), Some("Gardien"));
        assert_eq!(sendgrid.base_url, "http://127.0.0.1:9000/");
        assert_eq!(sendgrid.timeout, Duration::from_secs(2));
        let smtp = config.smtp.expect("smtp");
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.tls),
            ("127.0.0.1", 25, SmtpTls::None)
        );
        assert_eq!(
            config.twilio.messaging_service_sid.as_deref(),
            Some("MG0123456789abcdef0123456789abcdef")
        );
        let secondary = config.twilio_secondary.expect("secondary");
        assert_eq!(secondary.name, "twilio-secondary");
        assert_eq!(secondary.from.as_deref(), Some("+15005550006"));
        assert_eq!(secondary.auth_token_secret, "TWILIO_SECONDARY_AUTH_TOKEN");
        assert_eq!(secondary.timeout, Duration::from_millis(1500));
        assert_eq!(secondary.base_url, "http://127.0.0.1:9001/");
    }

    #[test]
    fn every_problem_is_listed_with_its_variable() {
        let problems = ProvidersConfig::from_env(&env(&[
            ("EMAIL_FROM", "not an address"),
            ("SENDGRID_API_BASE_URL", "ftp://x"),
            ("TWILIO_API_BASE_URL", "https://user:pass@api.twilio.com"),
            ("SMTP_HOST", "mail.example.com"),
            ("SMTP_PORT", "99999"),
            ("SMTP_TLS", "maybe"),
            ("SMTP_TIMEOUT", "0s"),
            ("TWILIO_TIMEOUT", "soon"),
            ("TWILIO_MESSAGING_SERVICE_SID", "MG123"),
            ("TWILIO_FROM", "+0"),
        ]))
        .expect_err("invalid")
        .0;
        for variable in [
            "EMAIL_FROM:",
            "SENDGRID_API_BASE_URL:",
            "TWILIO_API_BASE_URL:",
            "SMTP_PORT:",
            "SMTP_TLS:",
            "SMTP_TIMEOUT:",
            "TWILIO_TIMEOUT:",
            "TWILIO_MESSAGING_SERVICE_SID:",
            "TWILIO_FROM:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(variable)),
                "{variable} missing from {problems:#?}"
            );
        }
        // The URL's password is not repeated back.
        assert!(
            !problems.iter().any(|p| p.contains("pass@")),
            "{problems:#?}"
        );
    }

    #[test]
    fn smtp_needs_a_sender() {
        let problems = ProvidersConfig::from_env(&env(&[("SMTP_HOST", "localhost")]))
            .expect_err("invalid")
            .0;
        assert_eq!(
            problems,
            vec!["EMAIL_FROM: required when SMTP_HOST is set".to_owned()]
        );
    }

    #[test]
    fn senders_parse() {
        assert_eq!(
            EmailSender::parse("a@b.example").expect("plain"),
            EmailSender {
                address: "a@b.example".into(),
                name: None
            }
        );
        assert_eq!(
            EmailSender::parse("Team Gardien <a@b.example>")
                .expect("named")
                .name
                .as_deref(),
            Some("Team Gardien")
        );
        assert!(EmailSender::parse("Team <a@b.example").is_err());
        assert!(EmailSender::parse("<>").is_err());
    }

    #[test]
    fn default_urls_parse() {
        assert!(check_base_url(super::super::sendgrid::DEFAULT_BASE_URL).is_ok());
        assert!(check_base_url(twilio::DEFAULT_BASE_URL).is_ok());
    }
}
