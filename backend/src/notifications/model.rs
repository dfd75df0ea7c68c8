//! The API types of `POST /api/notifications` and `GET /api/notifications/{id}`, and the
//! validation of a send request's shape. What a request means (templates, preferences,
//! quiet hours) is decided in `plan`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::delivery::provider::Channel;
use crate::error::{ApiError, FieldError};
use crate::preferences::validate;
use crate::templates::model::valid_key;

/// Longest `user_id`.
pub const USER_ID_MAX: usize = 200;
/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// `POST /api/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The user to notify (the `sub` gardien forwards as `X-User-Id`).
    #[schema(min_length = 1, max_length = 200, pattern = "^[!-~]+$")]
    pub user_id: String,
    /// The template to render. For each channel, the template of that key if it is of that
    /// channel, else the template `<template_key>.<channel>` (`welcome.email`,
    /// `welcome.sms`), so one key can name an email and an sms.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", example = "password_reset")]
    pub template_key: String,
    /// Values of the template's variables.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Map<String, Value>>,
    /// The channels to send on; by default every channel the key has a template for.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub channels: Option<Vec<Channel>>,
    /// Same as the `Idempotency-Key` header (give one or the other, or both equal).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub idempotency_key: Option<String>,
    /// Addresses to use when the user's preferences do not pin one (the address the user
    /// signed up with, known to the caller). A contact the user set in their preferences
    /// wins.
    #[serde(default)]
    pub to: Option<Recipient>,
    /// Deliver no later than this (RFC 3339). A notification quiet hours would hold past it
    /// is `skipped` (`quiet_hours`); one not delivered by then is `failed` (`expired`).
    #[serde(default)]
    #[schema(format = DateTime, example = "2026-12-01T08:00:00Z")]
    pub expires_at: Option<String>,
}

/// Where to reach the user when their preferences say nothing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = "^[!-?A-~]+@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$",
        example = "ada@example.com"
    )]
    pub email: Option<String>,
    /// E.164.
    #[serde(default)]
    #[schema(pattern = "^\\+[1-9][0-9]{7,14}$", example = "+33612345678")]
    pub phone: Option<String>,
}

/// A send request, checked.
#[derive(Debug, Clone)]
pub struct Checked {
    pub user_id: String,
    pub template_key: String,
    pub variables: Map<String, Value>,
    pub channels: Option<Vec<Channel>>,
    pub idempotency_key: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub expires_at: Option<jiff::Timestamp>,
}

fn visible_ascii(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

impl SendRequest {
    /// Every shape problem at once, by field path; `header_key` is the `Idempotency-Key`
    /// header, which must agree with `idempotency_key`.
    pub fn check(
        self,
        header_key: Option<&str>,
        now: jiff::Timestamp,
    ) -> Result<Checked, ApiError> {
        let mut fields = Vec::new();
        let mut field = |path: &str, message: &str| {
            fields.push(FieldError {
                path: path.to_owned(),
                message: message.to_owned(),
            });
        };
        if !visible_ascii(&self.user_id) || self.user_id.len() > USER_ID_MAX {
            field(
                "user_id",
                "1 to 200 visible ASCII characters (the user's `sub`)",
            );
        }
        if !valid_key(&self.template_key) {
            field("template_key", "a template key: [a-z0-9][a-z0-9._-]{0,63}");
        }
        if let Some(channels) = &self.channels {
            if channels.is_empty() {
                field("channels", "name at least one channel, or leave it out");
            }
            for (i, channel) in channels.iter().enumerate() {
                if channels[..i].contains(channel) {
                    field(&format!("channels[{i}]"), "named twice");
                }
            }
        }
        let key_ok = |k: &str| visible_ascii(k) && k.len() <= IDEMPOTENCY_KEY_MAX;
        if let Some(key) = &self.idempotency_key {
            if !key_ok(key) {
                field("idempotency_key", "1 to 255 visible ASCII characters");
            }
        }
        if let Some(key) = header_key {
            if !key_ok(key) {
                field("Idempotency-Key", "1 to 255 visible ASCII characters");
            } else if self.idempotency_key.as_deref().is_some_and(|k| k != key) {
                field(
                    "idempotency_key",
                    "differs from the Idempotency-Key header; give one, or both equal",
                );
            }
        }
        let (mut email, mut phone) = (None, None);
        if let Some(to) = &self.to {
            if let Some(text) = &to.email {
                email = validate::email(text);
                if email.is_none() {
                    field("to.email", "not an email address");
                }
            }
            if let Some(text) = &to.phone {
                phone = validate::phone(text);
                if phone.is_none() {
                    field("to.phone", "not an E.164 number (+ then 8 to 15 digits)");
                }
            }
        }
        let mut expires_at = None;
        if let Some(text) = &self.expires_at {
            match text.parse::<jiff::Timestamp>() {
                Ok(at) if at <= now => field("expires_at", "is already past"),
                Ok(at) => expires_at = Some(at),
                Err(_) => field(
                    "expires_at",
                    "not an RFC 3339 time with an offset, e.g. 2026-12-01T08:00:00Z",
                ),
            }
        }
        if !fields.is_empty() {
            return Err(ApiError::fields(fields));
        }
        Ok(Checked {
            idempotency_key: header_key.map(str::to_owned).or(self.idempotency_key),
            user_id: self.user_id,
            template_key: self.template_key,
            variables: self.variables.unwrap_or_default(),
            channels: self.channels,
            email,
            phone,
            expires_at,
        })
    }
}

/// Where a channel's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for a worker: due now, after quiet hours, or after a retry's backoff.
    Queued,
    /// A worker holds it and is handing it to a provider.
    Sending,
    /// A provider accepted it.
    Sent,
    /// It will not be delivered: see `reason`.
    Failed,
    /// Not sent, by the user's choice or for want of an address: see `reason`.
    Skipped,
}

impl DeliveryStatus {
    pub const fn name(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            DeliveryStatus::Queued,
            DeliveryStatus::Sending,
            DeliveryStatus::Sent,
            DeliveryStatus::Failed,
            DeliveryStatus::Skipped,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// Why a delivery was skipped or failed.
pub mod reason {
    /// Skipped: the user turned this channel or this category off.
    pub const PREFERENCE_OFF: &str = "preference_off";
    /// Skipped: quiet hours would hold it past `expires_at`.
    pub const QUIET_HOURS: &str = "quiet_hours";
    /// Skipped: the operator turned the channel off (`NOTIFY_<CHANNEL>_PROVIDERS=none`).
    pub const CHANNEL_OFF: &str = "channel_off";
    /// Skipped: no address for the channel (no email, no phone number).
    pub const NO_ADDRESS: &str = "no_address";
    /// Failed: a provider said the recipient cannot be reached.
    pub const RECIPIENT_REFUSED: &str = "recipient_refused";
    /// Failed: every provider of the channel was tried and none accepted it.
    pub const PROVIDERS_EXHAUSTED: &str = "providers_exhausted";
    /// Failed: not delivered by `expires_at`.
    pub const EXPIRED: &str = "expired";
}

/// One channel in the `202` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelOutcome {
    pub channel: Channel,
    /// `queued` or `skipped`.
    pub status: DeliveryStatus,
    /// Why it was skipped: `channel_off`, `preference_off`, `quiet_hours`, `no_address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When delivery will start, if not now (quiet hours).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub scheduled_for: Option<String>,
}

/// The `202` answer (replayed as it was for a repeated idempotency key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendAnswer {
    /// The notification's id; `GET /api/notifications/{id}` follows it.
    pub id: String,
    pub channels: Vec<ChannelOutcome>,
}

/// One attempt to hand a delivery to a provider.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1, 2, … per channel.
    pub number: i64,
    pub provider: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// `accepted`; `retryable`, `auth`, `recipient`, `rejected` (the provider's failure,
    /// classified); `circuit_open` (skipped: the provider's circuit is open); `started`
    /// (in flight); `abandoned` (the worker stopped before the outcome was known).
    pub outcome: String,
    /// The provider's HTTP status (or SMTP reply code).
    pub status: Option<i64>,
    /// The provider's error code (Twilio `21211`…).
    pub code: Option<String>,
    pub error: Option<String>,
}

/// The rendered message, as recorded in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RenderedMessage {
    /// Email only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Email only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// The email's text body, or the sms.
    pub text: String,
    /// The template's category.
    pub category: String,
}

/// One channel of a notification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub channel: Channel,
    pub status: DeliveryStatus,
    /// `skipped`: `channel_off`, `preference_off`, `quiet_hours`, `no_address`; `failed`:
    /// `recipient_refused`, `providers_exhausted`, `expired`.
    pub reason: Option<String>,
    /// The address it goes to.
    pub recipient: Option<String>,
    /// The template rendered and its version.
    pub template_key: Option<String>,
    pub template_version: Option<i64>,
    /// The locale rendered, after fallback.
    pub locale: Option<String>,
    /// When the next attempt may start (quiet hours, backoff).
    #[schema(format = DateTime)]
    pub scheduled_for: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// The provider that accepted it.
    pub provider: Option<String>,
    /// The provider's id for it (SendGrid `X-Message-Id`, Twilio `sid`).
    pub provider_message_id: Option<String>,
    /// Accepted in sandbox or log mode: nothing was delivered.
    pub sandbox: bool,
    #[schema(format = DateTime)]
    pub sent_at: Option<String>,
    pub last_error: Option<String>,
    pub message: Option<RenderedMessage>,
    pub attempts: Vec<AttemptView>,
}

/// `GET /api/notifications/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub user_id: String,
    pub template_key: String,
    pub category: String,
    /// The user's locale when it was sent.
    pub locale: String,
    /// Who sent it.
    pub requested_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub channels: Vec<DeliveryView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> SendRequest {
        serde_json::from_value(body).expect("request shape")
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().expect("ts")
    }

    #[test]
    fn every_problem_is_named() {
        let error = request(serde_json::json!({
            "user_id": "",
            "template_key": "Bad Key",
            "channels": ["email", "email"],
            "to": {"email": "nope", "phone": "0612"},
            "expires_at": "2025-01-01T00:00:00Z"
        }))
        .check(Some("k\u{7f}"), now())
        .expect_err("refused");
        let paths: Vec<&str> = error.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "user_id",
                "template_key",
                "channels[1]",
                "Idempotency-Key",
                "to.email",
                "to.phone",
                "expires_at"
            ]
        );
    }

    #[test]
    fn header_and_body_keys_must_agree() {
        let body =
            serde_json::json!({"user_id": "u1", "template_key": "t", "idempotency_key": "a"});
        let error = request(body.clone())
            .check(Some("b"), now())
            .expect_err("disagree");
        assert_eq!(error.fields[0].path, "idempotency_key");
        let checked = request(body).check(Some("a"), now()).expect("agree");
        assert_eq!(checked.idempotency_key.as_deref(), Some("a"));
    }
}
