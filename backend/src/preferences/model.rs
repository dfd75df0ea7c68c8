//! The preferences document: the typed [`Preferences`] that is stored, answered and read by
//! delivery, its defaults, and the schemas `/openapi.json` describes it with.
//!
//! Defaults for a user with nothing stored (see [`Preferences::defaults`]):
//! every channel on except `sms`; every category on for every channel except `marketing`,
//! off everywhere; no quiet hours; locale `en`; digest `off`; `contacts.email` follows the
//! identity's email (`X-User-Email`), `contacts.phone` null.
//!
//! Security notifications always go by email and in-app ([`SECURITY_CHANNELS`]): a document
//! turning off either channel, globally or for `security`, is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::ToSchema;

/// Categories every user has; templates may add more.
pub const BUILT_IN_CATEGORIES: [&str; 4] = [SECURITY, "account", "reports", MARKETING];

/// The category that cannot be turned off on [`SECURITY_CHANNELS`].
pub const SECURITY: &str = "security";

/// The one category off by default (opt-in).
pub const MARKETING: &str = "marketing";

/// The channels security notifications always use: they must stay on, globally and for
/// the `security` category, so a user always hears about their account's security.
pub const SECURITY_CHANNELS: [Channel; 2] = [Channel::Email, Channel::InApp];

/// Locale of a user with nothing stored.
pub const DEFAULT_LOCALE: &str = "en";

/// Longest accepted address (RFC 5321 path limit).
pub const EMAIL_MAX_LENGTH: usize = 254;

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Sms,
    Push,
    InApp,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Sms, Channel::Push, Channel::InApp];

    /// The channel's name in the document.
    pub const fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::InApp => "in_app",
        }
    }

    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One switch per channel (`true` = send on this channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSwitches {
    pub email: bool,
    pub sms: bool,
    pub push: bool,
    pub in_app: bool,
}

impl ChannelSwitches {
    /// Every channel set to `on`.
    pub const fn all(on: bool) -> Self {
        ChannelSwitches {
            email: on,
            sms: on,
            push: on,
            in_app: on,
        }
    }

    pub const fn get(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email,
            Channel::Sms => self.sms,
            Channel::Push => self.push,
            Channel::InApp => self.in_app,
        }
    }

    pub fn set(&mut self, channel: Channel, on: bool) {
        match channel {
            Channel::Email => self.email = on,
            Channel::Sms => self.sms = on,
            Channel::Push => self.push = on,
            Channel::InApp => self.in_app = on,
        }
    }

    /// The global switches by default: SMS is opt-in (it costs money and wakes phones).
    pub const fn default_global() -> Self {
        ChannelSwitches {
            email: true,
            sms: false,
            push: true,
            in_app: true,
        }
    }

    /// A category's switches by default: `marketing` is opt-in, everything else on.
    pub fn default_for(category: &str) -> Self {
        ChannelSwitches::all(category != MARKETING)
    }
}

/// A daily window without notifications, in the user's time zone. `start` is included,
/// `end` excluded; when `end` is before `start` the window crosses midnight
/// (`22:00`–`07:00`). Meant for delivery to hold non-security notifications during it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, 24 h.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "22:00")]
    pub start: String,
    /// `HH:MM`, 24 h; differs from `start`.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "07:00")]
    pub end: String,
    /// An IANA time zone name, answered in its canonical spelling.
    #[schema(example = "Europe/Paris")]
    pub time_zone: String,
}

impl QuietHours {
    /// Whether `at` falls in the window, on the user's wall clock.
    pub fn covers(&self, at: jiff::Timestamp) -> bool {
        let (Some(start), Some(end)) = (minutes(&self.start), minutes(&self.end)) else {
            return false;
        };
        let Ok(zone) = jiff::tz::TimeZone::get(&self.time_zone) else {
            return false;
        };
        let time = at.to_zoned(zone).time();
        let now =
            u16::from(time.hour().unsigned_abs()) * 60 + u16::from(time.minute().unsigned_abs());
        if start < end {
            start <= now && now < end
        } else {
            now >= start || now < end
        }
    }
}

impl QuietHours {
    /// When the window covering `at` ends: the next time after `at` the user's wall clock
    /// shows `end` (a time a daylight-saving change skips resolves to the later instant).
    /// `None` when `at` is outside the window.
    pub fn ends_after(&self, at: jiff::Timestamp) -> Option<jiff::Timestamp> {
        if !self.covers(at) {
            return None;
        }
        let end = minutes(&self.end)?;
        let zone = jiff::tz::TimeZone::get(&self.time_zone).ok()?;
        let now = at.to_zoned(zone);
        let (hour, minute) = (i8::try_from(end / 60).ok()?, i8::try_from(end % 60).ok()?);
        let today = now
            .with()
            .hour(hour)
            .minute(minute)
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?;
        let next = if today.timestamp() > at {
            today
        } else {
            today.tomorrow().ok()?
        };
        Some(next.timestamp())
    }
}

/// Minutes since midnight of a valid `HH:MM`.
pub fn minutes(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let digit = |i: usize| {
        bytes[i]
            .is_ascii_digit()
            .then(|| u16::from(bytes[i] - b'0'))
    };
    let hour = digit(0)? * 10 + digit(1)?;
    let minute = digit(3)? * 10 + digit(4)?;
    (hour < 24 && minute < 60).then_some(hour * 60 + minute)
}

/// How often a digest of held notifications is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Digest {
    #[default]
    Off,
    Daily,
    Weekly,
}

impl Digest {
    pub const ALL: [Digest; 3] = [Digest::Off, Digest::Daily, Digest::Weekly];

    pub const fn name(self) -> &'static str {
        match self {
            Digest::Off => "off",
            Digest::Daily => "daily",
            Digest::Weekly => "weekly",
        }
    }
}

/// Where delivery reaches the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contacts {
    /// The address email goes to. `null` in a `PUT` or `PATCH` (or never set) means "the
    /// identity's email" (`X-User-Email`), which answers show in its place — `null` only when
    /// the identity has none (or, for an admin reading another user, is unknown). Sending an
    /// address, even the identity's, pins it.
    #[schema(
        required = true,
        max_length = 254,
        pattern = "^[!-?A-~]+@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$",
        example = "ada@example.com"
    )]
    pub email: Option<String>,
    /// E.164 (`+` then 8 to 15 digits, the first not 0), or `null`.
    #[schema(
        required = true,
        pattern = "^\\+[1-9][0-9]{7,14}$",
        example = "+33612345678"
    )]
    pub phone: Option<String>,
}

/// A user's notification preferences: the whole document `GET` answers and `PUT` takes.
///
/// Stored normalised (locale case, canonical time zone, lower-case email domain); in the
/// stored form `contacts.email` is `None` when it follows the identity's email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "A user's notification preferences. Defaults for a user with nothing stored: every channel on except `sms`; every category on for every channel except `marketing`, off everywhere; `quiet_hours` null; `locale` `en`; `digest` `off`; `contacts.email` the identity's email (X-User-Email), `contacts.phone` null. Security notifications always go by email and in-app: `channels.email`, `channels.in_app`, `categories.security.email` and `categories.security.in_app` must stay true (422 `security_notifications_required` otherwise)."
)]
pub struct Preferences {
    /// Global switch per channel: off silences the channel for every category.
    pub channels: ChannelSwitches,
    /// Switches per category and channel.
    #[schema(schema_with = categories_schema)]
    pub categories: BTreeMap<String, ChannelSwitches>,
    /// No notifications in this window (`null`: none).
    #[schema(required = true)]
    pub quiet_hours: Option<QuietHours>,
    /// BCP 47 tag: language, optional script and region (`fr`, `fr-CA`, `zh-Hant-TW`),
    /// answered with normalised case.
    #[schema(
        pattern = "^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?$",
        example = "fr-CA"
    )]
    pub locale: String,
    pub digest: Digest,
    pub contacts: Contacts,
}

impl Preferences {
    /// The documented defaults over `categories` (built-in and template categories), with
    /// `contacts.email` following the identity.
    pub fn defaults(categories: &[String]) -> Preferences {
        Preferences {
            channels: ChannelSwitches::default_global(),
            categories: categories
                .iter()
                .map(|c| (c.clone(), ChannelSwitches::default_for(c)))
                .collect(),
            quiet_hours: None,
            locale: DEFAULT_LOCALE.to_owned(),
            digest: Digest::Off,
            contacts: Contacts {
                email: None,
                phone: None,
            },
        }
    }

    /// A stored document over today's `categories`: a category added by templates since it
    /// was saved takes its default, one no longer known is left out (kept in storage until
    /// the next write, so it comes back if its templates do).
    pub fn reconcile(mut self, categories: &[String]) -> Preferences {
        let mut stored = std::mem::take(&mut self.categories);
        self.categories = categories
            .iter()
            .map(|c| {
                let switches = stored
                    .remove(c)
                    .unwrap_or_else(|| ChannelSwitches::default_for(c));
                (c.clone(), switches)
            })
            .collect();
        self
    }

    /// The document as answered: `contacts.email` falls back to the identity's email (when
    /// it has a valid shape).
    pub fn with_identity_email(mut self, identity_email: Option<&str>) -> Preferences {
        if self.contacts.email.is_none() {
            self.contacts.email = identity_email.and_then(crate::preferences::validate::email);
        }
        self
    }

    /// Whether a notification of `category` may go out on `channel` (ignoring quiet hours):
    /// both the global and the category switch must be on. A category the document does not
    /// know takes its default.
    pub fn allows(&self, category: &str, channel: Channel) -> bool {
        let switches = self
            .categories
            .get(category)
            .copied()
            .unwrap_or_else(|| ChannelSwitches::default_for(category));
        self.channels.get(channel) && switches.get(channel)
    }
}

fn channel_switches_ref() -> Ref {
    Ref::from_schema_name("ChannelSwitches")
}

/// `categories`: the built-in ones required, those added by templates as additional
/// properties (optional in a `PUT`: a missing one takes its default).
fn categories_schema() -> Schema {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Switches per category: `security`, `account`, `reports`, `marketing`, plus the categories notification templates add (answers list them all; a PUT may leave out a template category, which then takes its default: on everywhere). Unknown categories are refused (400 naming `categories.<name>`).",
        ))
        .additional_properties(Some(channel_switches_ref()));
    for category in BUILT_IN_CATEGORIES {
        object = object
            .property(category, channel_switches_ref())
            .required(category);
    }
    Schema::Object(object.build())
}

/// A merge patch's value: the schema or `null` (which resets to the default).
fn nullable(schema: impl Into<RefOr<Schema>>) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(schema)
        .into()
}

fn categories_patch_schema() -> RefOr<Schema> {
    let switches = || nullable(Ref::from_schema_name("ChannelSwitchesPatch"));
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Per category (a built-in one or one templates add), the switches to change; `null` resets the category to its defaults.",
        ))
        .additional_properties(Some(switches()));
    for category in BUILT_IN_CATEGORIES {
        object = object.property(category, switches());
    }
    nullable(object)
}

/// A JSON Merge Patch (RFC 7386) of the preferences: members present replace, objects merge
/// recursively, `null` resets a member to its default (`quiet_hours` to none,
/// `contacts.email` to the identity's email). The result is validated as a whole.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesPatch {
    pub channels: Option<ChannelSwitchesPatch>,
    #[schema(schema_with = categories_patch_schema)]
    pub categories: Option<BTreeMap<String, Option<ChannelSwitchesPatch>>>,
    /// `null` removes the quiet hours; an object merges into them (a new window needs all
    /// three fields).
    pub quiet_hours: Option<QuietHoursPatch>,
    #[schema(
        pattern = "^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?$",
        example = "fr-CA"
    )]
    pub locale: Option<String>,
    pub digest: Option<Digest>,
    pub contacts: Option<ContactsPatch>,
}

/// Channel switches to change; `null` resets one to its default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSwitchesPatch {
    pub email: Option<bool>,
    pub sms: Option<bool>,
    pub push: Option<bool>,
    pub in_app: Option<bool>,
}

/// Quiet-hours fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursPatch {
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "22:00")]
    pub start: Option<String>,
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "07:00")]
    pub end: Option<String>,
    #[schema(example = "Europe/Paris")]
    pub time_zone: Option<String>,
}

/// Contacts to change; `null` resets `email` to the identity's and removes `phone`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactsPatch {
    #[schema(
        max_length = 254,
        pattern = "^[!-?A-~]+@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$"
    )]
    pub email: Option<String>,
    #[schema(pattern = "^\\+[1-9][0-9]{7,14}$")]
    pub phone: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_cross_midnight() {
        let window = QuietHours {
            start: "22:00".into(),
            end: "07:00".into(),
            time_zone: "Europe/Paris".into(),
        };
        // 21:30 UTC in January is 22:30 in Paris.
        let late: jiff::Timestamp = "2025-01-10T21:30:00Z".parse().expect("ts");
        let noon: jiff::Timestamp = "2025-01-10T11:00:00Z".parse().expect("ts");
        let early: jiff::Timestamp = "2025-01-10T05:59:00Z".parse().expect("ts");
        let seven: jiff::Timestamp = "2025-01-10T06:00:00Z".parse().expect("ts");
        assert!(window.covers(late));
        assert!(window.covers(early));
        assert!(!window.covers(noon));
        assert!(!window.covers(seven));
    }

    #[test]
    fn quiet_hours_end_on_the_users_clock() {
        let window = QuietHours {
            start: "22:00".into(),
            end: "07:00".into(),
            time_zone: "Europe/Paris".into(),
        };
        let ts = |s: &str| s.parse::<jiff::Timestamp>().expect("ts");
        // 22:30 in Paris (UTC+1 in January): ends at 07:00 Paris the next day, 06:00 UTC.
        assert_eq!(
            window.ends_after(ts("2025-01-10T21:30:00Z")),
            Some(ts("2025-01-11T06:00:00Z"))
        );
        // 05:59 in Paris: ends the same morning.
        assert_eq!(
            window.ends_after(ts("2025-01-10T04:59:00Z")),
            Some(ts("2025-01-10T06:00:00Z"))
        );
        // Summer time (UTC+2): 07:00 Paris is 05:00 UTC.
        assert_eq!(
            window.ends_after(ts("2025-07-10T21:30:00Z")),
            Some(ts("2025-07-11T05:00:00Z"))
        );
        assert_eq!(window.ends_after(ts("2025-01-10T11:00:00Z")), None);
    }

    #[test]
    fn defaults_and_allows() {
        let categories: Vec<String> = BUILT_IN_CATEGORIES.iter().map(|c| c.to_string()).collect();
        let defaults = Preferences::defaults(&categories);
        assert!(defaults.allows("security", Channel::Email));
        assert!(!defaults.allows("security", Channel::Sms));
        assert!(!defaults.allows("marketing", Channel::Push));
        assert!(defaults.allows("promos-from-templates", Channel::Push));
    }

    #[test]
    fn times_parse() {
        assert_eq!(minutes("00:00"), Some(0));
        assert_eq!(minutes("23:59"), Some(1439));
        assert_eq!(minutes("24:00"), None);
        assert_eq!(minutes("7:00"), None);
        assert_eq!(minutes("07:60"), None);
    }
}
