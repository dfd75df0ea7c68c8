//! The plain variables the providers read ([`super::config`] reads them through these
//! constants; each provider's declaration lists the ones it uses), for `check`'s messages
//! and `gardien-backend env-docs`.

use gardien_secrets::catalog::EnvVar;

pub const EMAIL_FROM: EnvVar = EnvVar::plain(
    "EMAIL_FROM",
    "unset",
    "the sender of every email, `name <address>` or `address`; setting it configures SendGrid (and SMTP requires it)",
);
pub const SENDGRID_API_BASE_URL: EnvVar = EnvVar::plain(
    "SENDGRID_API_BASE_URL",
    "`https://api.sendgrid.com`",
    "SendGrid's endpoint (tests and staging point it elsewhere)",
);
pub const SENDGRID_TIMEOUT: EnvVar = EnvVar::plain(
    "SENDGRID_TIMEOUT",
    "`10s`",
    "longest wait for one Mail Send request",
);
pub const SMTP_HOST: EnvVar = EnvVar::plain(
    "SMTP_HOST",
    "unset",
    "the SMTP relay; setting it configures the SMTP provider",
);
pub const SMTP_PORT: EnvVar = EnvVar::plain(
    "SMTP_PORT",
    "`587` (`465` with `SMTP_TLS=tls`, `25` with `none`)",
    "the SMTP relay's port",
);
pub const SMTP_TLS: EnvVar = EnvVar::plain(
    "SMTP_TLS",
    "`starttls`",
    "`starttls` (required, not opportunistic), `tls` (implicit), `none` (loopback sinks only: credentials are never sent in clear to another host)",
);
pub const SMTP_TIMEOUT: EnvVar = EnvVar::plain(
    "SMTP_TIMEOUT",
    "`10s`",
    "longest wait for one SMTP conversation",
);
pub const SMTP_HELO_NAME: EnvVar = EnvVar::plain(
    "SMTP_HELO_NAME",
    "`[127.0.0.1]` (an address literal)",
    "the name given in `EHLO`",
);
pub const TWILIO_API_BASE_URL: EnvVar = EnvVar::plain(
    "TWILIO_API_BASE_URL",
    "`https://api.twilio.com`",
    "Twilio's endpoint (both accounts)",
);
pub const TWILIO_TIMEOUT: EnvVar = EnvVar::plain(
    "TWILIO_TIMEOUT",
    "`10s`",
    "longest wait for one Messages request",
);
pub const TWILIO_MESSAGING_SERVICE_SID: EnvVar = EnvVar::plain(
    "TWILIO_MESSAGING_SERVICE_SID",
    "unset",
    "the primary account's Messaging Service (`MG` + 32 hex; wins over `TWILIO_FROM`); it or `TWILIO_FROM` configures `twilio`",
);
pub const TWILIO_FROM: EnvVar = EnvVar::plain(
    "TWILIO_FROM",
    "unset",
    "the primary account's sender (E.164 number, short code or alphanumeric ID)",
);
pub const TWILIO_SECONDARY_MESSAGING_SERVICE_SID: EnvVar = EnvVar::plain(
    "TWILIO_SECONDARY_MESSAGING_SERVICE_SID",
    "unset",
    "the secondary account's Messaging Service; it or `TWILIO_SECONDARY_FROM` configures `twilio-secondary`",
);
pub const TWILIO_SECONDARY_FROM: EnvVar = EnvVar::plain(
    "TWILIO_SECONDARY_FROM",
    "unset",
    "the secondary account's sender",
);
