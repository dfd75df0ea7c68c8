//! From a JSON value to a valid, normalised [`Preferences`], naming every wrong field by its
//! dotted path (`categories.promos`, `quiet_hours.time_zone`); and the rule that security
//! notifications stay on. Hand-written rather than serde so that one answer lists every
//! problem, missing fields included, each at its own path.

use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode, FieldError};

use super::merge;
use super::model::{
    minutes, Channel, ChannelSwitches, Contacts, Digest, Preferences, QuietHours,
    BUILT_IN_CATEGORIES, DEFAULT_LOCALE, EMAIL_MAX_LENGTH, SECURITY, SECURITY_CHANNELS,
};

/// The members of the document.
const FIELDS: [&str; 6] = [
    "channels",
    "categories",
    "quiet_hours",
    "locale",
    "digest",
    "contacts",
];
const QUIET_HOURS_FIELDS: [&str; 3] = ["start", "end", "time_zone"];
const CONTACTS_FIELDS: [&str; 2] = ["email", "phone"];

/// How a missing member is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A `PUT`: the full document; a missing member is an error (except a category added
    /// by templates, which takes its default: clients cannot be expected to know them all).
    Replace,
    /// The result of a merge patch: a member the patch reset (`null`) takes its default.
    Merged,
}

/// A `PUT` body as preferences over the known `categories`, or `400 validation_failed`
/// listing every wrong, missing or unknown field.
pub fn document(value: &Value, categories: &[String]) -> Result<Preferences, ApiError> {
    parse(value, Mode::Replace, categories, Vec::new())
}

/// `current` with the merge `patch` applied, validated as a whole. Members the patch may
/// not name are reported from the patch itself (even when `null`), followed by the
/// problems of the merged document.
pub fn merged(
    current: &Preferences,
    patch: &Value,
    categories: &[String],
) -> Result<Preferences, ApiError> {
    let unknown = patch_members(patch, categories)?;
    let mut document = serde_json::to_value(current)
        .map_err(|e| ApiError::internal(format!("preferences do not encode: {e}")))?;
    merge::apply(&mut document, patch);
    parse(&document, Mode::Merged, categories, unknown)
}

fn parse(
    value: &Value,
    mode: Mode,
    categories: &[String],
    errors: Vec<FieldError>,
) -> Result<Preferences, ApiError> {
    let Some(map) = value.as_object() else {
        return Err(ApiError::field("body", "expected a JSON object"));
    };
    let mut check = Check {
        mode,
        categories,
        errors,
    };
    check.unknown_members(map, "", &FIELDS, "unknown field");
    let channels = match map.get("channels") {
        None => check.missing("channels", ChannelSwitches::default_global()),
        Some(v) => check.switches(v, "channels", ChannelSwitches::default_global()),
    };
    let categories = check.categories(map.get("categories"));
    let quiet_hours = match map.get("quiet_hours") {
        None => check.missing("quiet_hours", None),
        Some(v) => check.quiet_hours(v),
    };
    let locale = match map.get("locale") {
        None => check.missing("locale", DEFAULT_LOCALE.to_owned()),
        Some(Value::String(text)) => locale(text).unwrap_or_else(|| {
            check.error(
                "locale",
                "expected a language tag: 2 or 3 letters, then optionally a 4-letter script and a region (`en`, `fr-CA`, `zh-Hant-TW`, `es-419`)",
            );
            DEFAULT_LOCALE.to_owned()
        }),
        Some(_) => check.wrong_type("locale", "a string"),
    };
    let digest = match map.get("digest") {
        None => check.missing("digest", Digest::Off),
        Some(Value::String(text)) => Digest::ALL
            .into_iter()
            .find(|d| d.name() == text)
            .unwrap_or_else(|| {
                check.error("digest", "expected one of `off`, `daily`, `weekly`");
                Digest::Off
            }),
        Some(_) => check.wrong_type("digest", "one of `off`, `daily`, `weekly`"),
    };
    let contacts = match map.get("contacts") {
        None => check.missing(
            "contacts",
            Contacts {
                email: None,
                phone: None,
            },
        ),
        Some(v) => check.contacts(v),
    };
    if !check.errors.is_empty() {
        return Err(ApiError::fields(check.errors));
    }
    Ok(Preferences {
        channels,
        categories,
        quiet_hours,
        locale,
        digest,
        contacts,
    })
}

/// The keys a merge patch may not name, even with `null` (which would otherwise pass
/// silently): unknown members, categories and channels. Types are checked on the result.
/// A patch that is not an object is refused outright.
fn patch_members(patch: &Value, categories: &[String]) -> Result<Vec<FieldError>, ApiError> {
    let Some(map) = patch.as_object() else {
        return Err(ApiError::field(
            "body",
            "expected a JSON object (a merge patch of the preferences)",
        ));
    };
    // Reports unknown keys, which the merged document then leaves alone.
    let mut check = Check {
        mode: Mode::Replace,
        categories,
        errors: Vec::new(),
    };
    check.unknown_members(map, "", &FIELDS, "unknown field");
    let channel_names: Vec<&str> = Channel::ALL.iter().map(|c| c.name()).collect();
    if let Some(Value::Object(channels)) = map.get("channels") {
        check.unknown_members(channels, "channels", &channel_names, CHANNEL_HINT);
    }
    if let Some(Value::Object(by_category)) = map.get("categories") {
        for (name, switches) in by_category {
            let path = format!("categories.{name}");
            if !categories.contains(name) {
                check.unknown_category(&path);
            } else if let Value::Object(switches) = switches {
                check.unknown_members(switches, &path, &channel_names, CHANNEL_HINT);
            }
        }
    }
    if let Some(Value::Object(quiet_hours)) = map.get("quiet_hours") {
        check.unknown_members(
            quiet_hours,
            "quiet_hours",
            &QUIET_HOURS_FIELDS,
            "unknown field",
        );
    }
    if let Some(Value::Object(contacts)) = map.get("contacts") {
        check.unknown_members(contacts, "contacts", &CONTACTS_FIELDS, "unknown field");
    }
    Ok(check.errors)
}

/// `422 security_notifications_required` unless security notifications can still reach
/// the user on every one of [`SECURITY_CHANNELS`], naming each switch that would stop them.
pub fn security(preferences: &Preferences) -> Result<(), ApiError> {
    let security = preferences.categories.get(SECURITY).copied();
    let mut fields = Vec::new();
    for channel in SECURITY_CHANNELS {
        if !preferences.channels.get(channel) {
            fields.push(FieldError {
                path: format!("channels.{}", channel.name()),
                message: "security notifications need this channel; it must stay true".into(),
            });
        }
        if security.is_some_and(|s| !s.get(channel)) {
            fields.push(FieldError {
                path: format!("categories.{SECURITY}.{}", channel.name()),
                message: "security notifications cannot be turned off on this channel".into(),
            });
        }
    }
    if fields.is_empty() {
        return Ok(());
    }
    let mut error = ApiError::unprocessable(
                ErrorCode::SecurityNotificationsRequired,
        "security notifications cannot be turned off: they always go by email and in-app, so channels.email, channels.in_app, categories.security.email and categories.security.in_app must stay true; nothing was changed",
    );
    error.fields = fields;
    Err(error)
}

const CHANNEL_HINT: &str = "unknown channel; the channels are email, sms, push and in_app";

/// The errors found so far, and how to treat missing members.
struct Check<'a> {
    mode: Mode,
    categories: &'a [String],
    errors: Vec<FieldError>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Check<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records a type error; the placeholder returned is never used (the document fails).
    fn wrong_type<T: Default>(&mut self, path: &str, expected: &str) -> T {
        self.error(path, format!("expected {expected}"));
        T::default()
    }

    /// A missing member: an error in a `PUT`, its default after a merge.
    fn missing<T>(&mut self, path: &str, default: T) -> T {
        if self.mode == Mode::Replace {
            self.error(
                path,
                "is required (PUT takes the full document; PATCH merges)",
            );
        }
        default
    }

    /// Reports keys of `map` not in `known`. After a merge they came from the patch, which
    /// [`patch_members`] already reported.
    fn unknown_members(
        &mut self,
        map: &Map<String, Value>,
        parent: &str,
        known: &[&str],
        message: &str,
    ) {
        if self.mode == Mode::Merged {
            return;
        }
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.error(join(parent, key), message);
            }
        }
    }

    fn unknown_category(&mut self, path: &str) {
        let known = self.categories.join(", ");
        self.error(
            path,
            format!("unknown category; the categories are {known}"),
        );
    }

    fn switches(
        &mut self,
        value: &Value,
        path: &str,
        defaults: ChannelSwitches,
    ) -> ChannelSwitches {
        let Value::Object(map) = value else {
            self.error(
                path,
                "expected an object with a boolean per channel (email, sms, push, in_app)",
            );
            return defaults;
        };
        let channel_names: Vec<&str> = Channel::ALL.iter().map(|c| c.name()).collect();
        self.unknown_members(map, path, &channel_names, CHANNEL_HINT);
        let mut switches = defaults;
        for channel in Channel::ALL {
            let field = join(path, channel.name());
            match map.get(channel.name()) {
                None => {
                    let on = self.missing(&field, defaults.get(channel));
                    switches.set(channel, on);
                }
                Some(Value::Bool(on)) => switches.set(channel, *on),
                Some(_) => self.error(field, "expected a boolean"),
            }
        }
        switches
    }

    fn categories(
        &mut self,
        value: Option<&Value>,
    ) -> std::collections::BTreeMap<String, ChannelSwitches> {
        let defaults = |categories: &[String]| {
            categories
                .iter()
                .map(|c| (c.clone(), ChannelSwitches::default_for(c)))
                .collect()
        };
        let map = match value {
            None => return self.missing("categories", defaults(self.categories)),
            Some(Value::Object(map)) => map,
            Some(_) => {
                self.error(
                    "categories",
                    "expected an object with the switches of each category",
                );
                return defaults(self.categories);
            }
        };
        if self.mode == Mode::Replace {
            for name in map.keys() {
                if !self.categories.contains(name) {
                    self.unknown_category(&format!("categories.{name}"));
                }
            }
        }
        let mut result = std::collections::BTreeMap::new();
        for name in self.categories {
            let path = format!("categories.{name}");
            let default = ChannelSwitches::default_for(name);
            let switches = match map.get(name) {
                None if BUILT_IN_CATEGORIES.contains(&name.as_str()) => {
                    self.missing(&path, default)
                }
                None => default,
                Some(v) => self.switches(v, &path, default),
            };
            result.insert(name.clone(), switches);
        }
        result
    }

    fn quiet_hours(&mut self, value: &Value) -> Option<QuietHours> {
        let map = match value {
            Value::Null => return None,
            Value::Object(map) => map,
            _ => {
                self.error(
                    "quiet_hours",
                    "expected null or an object with start, end and time_zone",
                );
                return None;
            }
        };
        self.unknown_members(map, "quiet_hours", &QUIET_HOURS_FIELDS, "unknown field");
        let text = |check: &mut Self, key: &str| -> Option<String> {
            let path = format!("quiet_hours.{key}");
            match map.get(key) {
                // No default for part of a window: a window needs all three.
                None => {
                    check.error(path, "is required");
                    None
                }
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    check.error(path, "expected a string");
                    None
                }
            }
        };
        let start = text(self, "start");
        let end = text(self, "end");
        let zone = text(self, "time_zone");
        let time = |check: &mut Self, key: &str, value: Option<String>| {
            let value = value?;
            if minutes(&value).is_some() {
                Some(value)
            } else {
                check.error(
                    format!("quiet_hours.{key}"),
                    "expected a 24-hour time HH:MM (00:00 to 23:59)",
                );
                None
            }
        };
        let start = time(self, "start", start);
        let end = time(self, "end", end);
        let zone = zone.and_then(|z| {
            time_zone(&z).or_else(|| {
                self.error(
                    "quiet_hours.time_zone",
                    "expected an IANA time zone name such as Europe/Paris",
                );
                None
            })
        });
        let (start, end, time_zone) = (start?, end?, zone?);
        if start == end {
            self.error(
                "quiet_hours.end",
                "must differ from start (a window may cross midnight: 22:00 to 07:00)",
            );
            return None;
        }
        Some(QuietHours {
            start,
            end,
            time_zone,
        })
    }

    fn contacts(&mut self, value: &Value) -> Contacts {
        let mut contacts = Contacts {
            email: None,
            phone: None,
        };
        let Value::Object(map) = value else {
            self.error("contacts", "expected an object with email and phone");
            return contacts;
        };
        self.unknown_members(map, "contacts", &CONTACTS_FIELDS, "unknown field");
        contacts.email = match map.get("email") {
            None => self.missing("contacts.email", None),
            Some(Value::Null) => None,
            Some(Value::String(text)) => email(text).or_else(|| {
                self.error(
                    "contacts.email",
                    "expected an email address such as ada@example.com",
                );
                None
            }),
            Some(_) => self.wrong_type("contacts.email", "a string or null"),
        };
        contacts.phone = match map.get("phone") {
            None => self.missing("contacts.phone", None),
            Some(Value::Null) => None,
            Some(Value::String(text)) => phone(text).or_else(|| {
                self.error(
                    "contacts.phone",
                    "expected an E.164 number: + then 8 to 15 digits, the first not 0 (+33612345678)",
                );
                None
            }),
            Some(_) => self.wrong_type("contacts.phone", "a string or null"),
        };
        contacts
    }
}

/// A language tag normalised (`FR-ca` → `fr-CA`, `zh-hant-tw` → `zh-Hant-TW`), or `None`
/// when its shape is not language[-Script][-REGION].
pub fn locale(text: &str) -> Option<String> {
    let mut parts = text.split('-');
    let language = parts.next()?;
    if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let mut tag = language.to_ascii_lowercase();
    let mut next = parts.next();
    if let Some(script) =
        next.filter(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        tag.push('-');
        tag.push_str(&script[..1].to_ascii_uppercase());
        tag.push_str(&script[1..].to_ascii_lowercase());
        next = parts.next();
    }
    if let Some(region) = next {
        let letters = region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic());
        let digits = region.len() == 3 && region.bytes().all(|b| b.is_ascii_digit());
        if !(letters || digits) {
            return None;
        }
        tag.push('-');
        tag.push_str(&region.to_ascii_uppercase());
    }
    parts.next().is_none().then_some(tag)
}

/// An E.164 number (`+`, then 8 to 15 digits, the first not 0).
pub fn phone(text: &str) -> Option<String> {
    let digits = text.strip_prefix('+')?;
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    ok.then(|| text.to_owned())
}

/// An email address of plain shape, its domain lower-cased: printable ASCII without `@` or
/// spaces before the one `@`, then at least two dot-separated labels of letters, digits and
/// inner hyphens; at most 254 characters.
pub fn email(text: &str) -> Option<String> {
    if text.len() > EMAIL_MAX_LENGTH {
        return None;
    }
    let (local, domain) = text.split_once('@')?;
    let local_ok = !local.is_empty() && local.bytes().all(|b| b.is_ascii_graphic() && b != b'@');
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    (local_ok && domain_ok).then(|| format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// An IANA time zone name in its canonical spelling (`europe/paris` → `Europe/Paris`).
pub fn time_zone(text: &str) -> Option<String> {
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let zone = jiff::tz::TimeZone::get(text).ok()?;
    Some(zone.iana_name().unwrap_or(text).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_normalise() {
        assert_eq!(locale("fr").as_deref(), Some("fr"));
        assert_eq!(locale("FR-ca").as_deref(), Some("fr-CA"));
        assert_eq!(locale("zh-hant-tw").as_deref(), Some("zh-Hant-TW"));
        assert_eq!(locale("es-419").as_deref(), Some("es-419"));
        assert_eq!(locale("sr-Latn").as_deref(), Some("sr-Latn"));
        assert_eq!(locale("f"), None);
        assert_eq!(locale("fren"), None);
        assert_eq!(locale("fr_CA"), None);
        assert_eq!(locale("fr-"), None);
        assert_eq!(locale("fr-CA-x"), None);
        assert_eq!(locale("fr-1234"), None);
    }

    #[test]
    fn phones_are_e164() {
        assert!(phone("+33612345678").is_some());
        assert!(phone("+12345678").is_some());
        assert!(phone("+123456789012345").is_some());
        assert!(phone("+1234567").is_none());
        assert!(phone("+1234567890123456").is_none());
        assert!(phone("+0612345678").is_none());
        assert!(phone("0612345678").is_none());
        assert!(phone("+33 612345678").is_none());
    }

    #[test]
    fn emails_have_a_plain_shape() {
        assert_eq!(email("Ada@Example.COM").as_deref(), Some("Ada@example.com"));
        assert!(email("a+b@mail.example.co").is_some());
        assert!(email("ada@localhost").is_none());
        assert!(email("ada@@example.com").is_none());
        assert!(email("a da@example.com").is_none());
        assert!(email("ada@-example.com").is_none());
        assert!(email("@example.com").is_none());
    }

    #[test]
    fn zones_are_canonical() {
        assert_eq!(time_zone("Europe/Paris").as_deref(), Some("Europe/Paris"));
        assert_eq!(time_zone("Mars/Olympus"), None);
        assert_eq!(time_zone(" Europe/Paris"), None);
    }
}
