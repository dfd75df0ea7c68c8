//! What a send request means for each channel, decided before anything is written: which
//! template, rendered in the user's locale; whether the user's preferences allow it;
//! where it goes; and when (quiet hours hold everything but `security`).
//!
//! A channel the operator turned off (`NOTIFY_<CHANNEL>_PROVIDERS=none`) is skipped with
//! `channel_off`, so it is not mistaken for a delivery that failed.
//!
//! A request whose template does not render (a variable missing, a render error) is
//! refused whole, whatever the preferences say, so a caller's mistake is seen at once
//! rather than only for the users who would have received it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::db::Db;
use crate::delivery::provider::Channel;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::notifications::model::{reason, Checked, DeliveryStatus, RenderedMessage};
use crate::preferences::model::{Channel as PreferenceChannel, Preferences, SECURITY};
use crate::preferences::store as preferences;
use crate::templates::model::Channel as TemplateChannel;
use crate::templates::store::{self as templates, StoredTemplate};
use crate::templates::{render, render_error};

/// One channel's outbox row, as it will be written.
#[derive(Debug, Clone)]
pub struct PlannedDelivery {
    pub channel: Channel,
    /// `queued` or `skipped`.
    pub status: DeliveryStatus,
    pub reason: Option<&'static str>,
    pub template_key: String,
    pub template_version: i64,
    pub locale_used: String,
    pub recipient: Option<String>,
    pub message: RenderedMessage,
    /// When a worker may take it (later than now during quiet hours).
    pub not_before: jiff::Timestamp,
}

/// The whole notification.
#[derive(Debug, Clone)]
pub struct Plan {
    pub category: String,
    pub locale: String,
    pub deliveries: Vec<PlannedDelivery>,
}

fn template_channel(channel: Channel) -> TemplateChannel {
    match channel {
        Channel::Email => TemplateChannel::Email,
        Channel::Sms => TemplateChannel::Sms,
    }
}

fn preference_channel(channel: Channel) -> PreferenceChannel {
    match channel {
        Channel::Email => PreferenceChannel::Email,
        Channel::Sms => PreferenceChannel::Sms,
    }
}

/// The template of `key` for each channel: `key` itself for its own channel, then
/// `key.<channel>` for the others.
async fn templates_by_channel(
    db: &Db,
    key: &str,
) -> Result<BTreeMap<&'static str, (Channel, StoredTemplate)>, ApiError> {
    let mut found = BTreeMap::new();
    if let Some(template) = templates::current(db, key).await? {
        let channel = match template.channel {
            TemplateChannel::Email => Channel::Email,
            TemplateChannel::Sms => Channel::Sms,
        };
        found.insert(channel.name(), (channel, template));
    }
    for channel in Channel::ALL {
        if found.contains_key(channel.name()) {
            continue;
        }
        let suffixed = format!("{key}.{}", channel.name());
        if let Some(template) = templates::current(db, &suffixed).await? {
            if template.channel == template_channel(channel) {
                found.insert(channel.name(), (channel, template));
            }
        }
    }
    Ok(found)
}

/// Decides every channel of `request` at `now`.
/// The plan of `request` at `now`; a channel in `off` (turned off by the operator) is
/// skipped (`channel_off`).
pub async fn plan(
    db: &Db,
    request: &Checked,
    now: jiff::Timestamp,
    off: &[Channel],
) -> Result<Plan, ApiError> {
    let mut by_channel = templates_by_channel(db, &request.template_key).await?;
    if by_channel.is_empty() {
        return Err(ApiError {
            fields: vec![FieldError {
                path: "template_key".into(),
                message: format!(
                    "no template `{0}`, `{0}.email` or `{0}.sms`",
                    request.template_key
                ),
            }],
            ..ApiError::unprocessable(ErrorCode::UnknownTemplate, "no template has this key")
        });
    }
    let chosen: Vec<(Channel, StoredTemplate)> = match &request.channels {
        None => by_channel.into_values().collect(),
        Some(channels) => {
            let mut chosen = Vec::new();
            let mut missing = Vec::new();
            for (i, channel) in channels.iter().enumerate() {
                match by_channel.remove(channel.name()) {
                    Some(pair) => chosen.push(pair),
                    None => missing.push(FieldError {
                        path: format!("channels[{i}]"),
                        message: format!(
                            "no {0} template: neither `{1}` nor `{1}.{0}` is an {0} template",
                            channel.name(),
                            request.template_key
                        ),
                    }),
                }
            }
            if !missing.is_empty() {
                return Err(ApiError {
                    fields: missing,
                    ..ApiError::unprocessable(
                        ErrorCode::TemplateMissing,
                        "a channel asked for has no template under this key",
                    )
                });
            }
            chosen
        }
    };

    let preferences =
        preferences::effective(db, &request.user_id, request.email.as_deref()).await?;
    let variables = Value::Object(request.variables.clone());
    let mut deliveries = Vec::with_capacity(chosen.len());
    for (channel, template) in &chosen {
        let rendered = render::render(template, &preferences.locale, &variables).map_err(|e| {
            let locale_used = render::resolve_locale(
                &preferences.locale,
                &template.content.locales,
                &template.content.default_locale,
            );
            render_error(e, locale_used)
        })?;
        let category = template.content.category.clone();
        let (status, why, not_before) = if off.contains(channel) {
            (DeliveryStatus::Skipped, Some(reason::CHANNEL_OFF), now)
        } else {
            decide(&preferences, request, *channel, &category, now)
        };
        let recipient = address(&preferences, request, *channel);
        deliveries.push(PlannedDelivery {
            channel: *channel,
            status,
            reason: why,
            template_key: template.key.clone(),
            template_version: template.version,
            locale_used: rendered.locale_used,
            recipient,
            message: RenderedMessage {
                subject: rendered.subject,
                html: rendered.html,
                text: rendered.text,
                category,
            },
            not_before,
        });
    }
    let category = deliveries
        .first()
        .map(|d| d.message.category.clone())
        .unwrap_or_default();
    Ok(Plan {
        category,
        locale: preferences.locale,
        deliveries,
    })
}

/// Where `channel` reaches the user: the contact in their preferences, else the request's.
fn address(preferences: &Preferences, request: &Checked, channel: Channel) -> Option<String> {
    match channel {
        // `effective` already fell back to the request's email.
        Channel::Email => preferences.contacts.email.clone(),
        Channel::Sms => preferences
            .contacts
            .phone
            .clone()
            .or_else(|| request.phone.clone()),
    }
}

/// Queued (now or after quiet hours) or skipped, and why.
fn decide(
    preferences: &Preferences,
    request: &Checked,
    channel: Channel,
    category: &str,
    now: jiff::Timestamp,
) -> (DeliveryStatus, Option<&'static str>, jiff::Timestamp) {
    if !preferences.allows(category, preference_channel(channel)) {
        return (DeliveryStatus::Skipped, Some(reason::PREFERENCE_OFF), now);
    }
    if address(preferences, request, channel).is_none() {
        return (DeliveryStatus::Skipped, Some(reason::NO_ADDRESS), now);
    }
    if category != SECURITY {
        if let Some(end) = preferences
            .quiet_hours
            .as_ref()
            .and_then(|q| q.ends_after(now))
        {
            if request.expires_at.is_some_and(|expires| expires <= end) {
                return (DeliveryStatus::Skipped, Some(reason::QUIET_HOURS), now);
            }
            return (DeliveryStatus::Queued, None, end);
        }
    }
    (DeliveryStatus::Queued, None, now)
}
