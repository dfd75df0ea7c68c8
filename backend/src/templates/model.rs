//! The API types of notification templates and the validation of their shape. The
//! template bodies themselves (syntax, variables, sms length) are checked by `render`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldError};

/// Longest key; keys are `[a-z0-9][a-z0-9._-]{0,63}`.
pub const KEY_MAX: usize = 64;
/// Longest category; categories are `[a-z0-9_-]{1,32}`.
pub const CATEGORY_MAX: usize = 32;
/// Most declared variables per template.
pub const VARIABLES_MAX: usize = 100;
/// Longest variable name.
pub const VARIABLE_MAX: usize = 64;
/// Most locales per template.
pub const LOCALES_MAX: usize = 50;
/// Longest locale tag (`zh-Hant-TW`…).
pub const LOCALE_MAX: usize = 35;
/// Longest source of an email subject.
pub const SUBJECT_SOURCE_MAX: usize = 2_000;
/// Longest source of an email html body.
pub const HTML_SOURCE_MAX: usize = 500_000;
/// Longest source of an email text body.
pub const TEXT_SOURCE_MAX: usize = 200_000;
/// Longest source of an sms (the rendered text is limited to [`SMS_MAX`]).
pub const SMS_SOURCE_MAX: usize = 8_000;
/// Longest rendered sms, in characters.
pub const SMS_MAX: usize = 1_600;

/// How a template is delivered; fixed for the life of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            _ => None,
        }
    }
}

/// The three parts of an email, each a minijinja template; only `html` is HTML-escaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailContent {
    /// One line: line breaks in the rendered subject become spaces.
    #[schema(min_length = 1, max_length = 2000)]
    pub subject: String,
    #[schema(min_length = 1, max_length = 500000)]
    pub html: String,
    #[schema(min_length = 1, max_length = 200000)]
    pub text: String,
}

/// An sms: one text template, rendering to at most 1600 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsContent {
    #[schema(min_length = 1, max_length = 8000)]
    pub text: String,
}

/// One locale's content: exactly one of `email` / `sms`, the one of the template's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocaleContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsContent>,
}

impl LocaleContent {
    /// The templates of this locale as `(part, source)`, for the given channel.
    pub fn parts(&self, channel: Channel) -> Vec<(&'static str, &str)> {
        match (channel, &self.email, &self.sms) {
            (Channel::Email, Some(e), _) => vec![
                ("subject", e.subject.as_str()),
                ("html", e.html.as_str()),
                ("text", e.text.as_str()),
            ],
            (Channel::Sms, _, Some(s)) => vec![("text", s.text.as_str())],
            _ => Vec::new(),
        }
    }
}

/// What one version of a template holds (stored as the JSON `content` of a version row).
/// The channel and key live on the template: they never change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    pub category: String,
    pub default_locale: String,
    pub variables: Vec<String>,
    pub locales: BTreeMap<String, LocaleContent>,
}

/// `POST /api/notifications/templates`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub key: String,
    /// Any category: a new one appears among the preference categories.
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    pub category: String,
    pub channel: Channel,
    /// One of the keys of `locales`; the last resort of the locale fallback.
    #[schema(pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")]
    pub default_locale: String,
    /// The variables the templates may use (identifiers); every one they use must be here.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub variables: Vec<String>,
    /// Content per locale (`en`, `fr`, `fr-CA`…), shaped for the channel.
    pub locales: BTreeMap<String, LocaleContent>,
}

/// `PUT /api/notifications/templates/{key}`: the whole new content. `channel` must stay the
/// template's channel.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceTemplate {
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    pub category: String,
    pub channel: Channel,
    #[schema(pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")]
    pub default_locale: String,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub variables: Vec<String>,
    pub locales: BTreeMap<String, LocaleContent>,
}

impl CreateTemplate {
    /// Splits into key, channel and content.
    pub fn into_parts(self) -> (String, Channel, Content) {
        (
            self.key,
            self.channel,
            Content {
                category: self.category,
                default_locale: self.default_locale,
                variables: self.variables,
                locales: self.locales,
            },
        )
    }
}

impl ReplaceTemplate {
    pub fn into_parts(self) -> (Channel, Content) {
        (
            self.channel,
            Content {
                category: self.category,
                default_locale: self.default_locale,
                variables: self.variables,
                locales: self.locales,
            },
        )
    }
}

/// One template in the list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateSummary {
    pub key: String,
    pub category: String,
    pub channel: Channel,
    pub default_locale: String,
    /// The locales the template has content for, sorted.
    pub locales: Vec<String>,
    /// The current version (also the `ETag` of the template).
    pub version: i64,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// `GET /api/notifications/templates`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateList {
    /// Sorted by key.
    pub templates: Vec<TemplateSummary>,
}

/// A template's current version, in full.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateView {
    pub key: String,
    pub category: String,
    pub channel: Channel,
    /// The current version (also the `ETag`).
    pub version: i64,
    pub default_locale: String,
    pub variables: Vec<String>,
    pub locales: BTreeMap<String, LocaleContent>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Who made the current version.
    pub updated_by: String,
}

/// One entry of a template's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: String,
    /// What made this version: `created`, `updated`, `restored from version N`,
    /// `re-created after deletion`.
    pub summary: String,
}

/// `GET /api/notifications/templates/{key}/versions`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionList {
    pub key: String,
    pub current_version: i64,
    /// Oldest first; includes the versions made before a deletion of the key.
    pub versions: Vec<VersionSummary>,
}

/// `GET /api/notifications/templates/{key}/versions/{n}`: one version in full.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionView {
    pub key: String,
    pub version: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: String,
    pub summary: String,
    pub category: String,
    pub default_locale: String,
    pub variables: Vec<String>,
    pub locales: BTreeMap<String, LocaleContent>,
}

/// `POST /api/notifications/templates/{key}/preview`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The recipient's locale (`fr-CA`); falls back to `fr`, then the default locale.
    /// Absent: the default locale.
    #[serde(default)]
    #[schema(nullable = false, pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$")]
    pub locale: Option<String>,
    /// The values of the template's variables; absent: none.
    #[serde(default)]
    #[schema(value_type = Object, nullable = false)]
    pub variables: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The filters of `GET /api/notifications/templates` (documentation; the handler reads the
/// raw query to refuse unknown parameters).
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only templates of this category.
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub category: Option<String>,
    /// Only templates of this channel.
    #[param(inline)]
    pub channel: Option<Channel>,
}

/// What a preview renders; nothing is sent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PreviewAnswer {
    /// The locale whose content was rendered, after fallback.
    pub locale_used: String,
    /// Email only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub subject: Option<String>,
    /// Email only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub html: Option<String>,
    pub text: String,
    /// Declared variables absent from `variables` that this locale does not use (those it
    /// uses make the preview fail with `422 missing_variables`).
    pub missing_variables: Vec<String>,
}

fn field(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= KEY_MAX
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
}

/// `[a-z0-9_-]{1,32}`.
pub fn valid_category(category: &str) -> bool {
    !category.is_empty()
        && category.len() <= CATEGORY_MAX
        && category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An identifier: `[A-Za-z_][A-Za-z0-9_]{0,63}`, and not a minijinja literal or `loop`.
pub fn valid_variable(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= VARIABLE_MAX
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !matches!(
            name,
            "true" | "false" | "none" | "True" | "False" | "None" | "loop" | "self"
        )
}

/// A language tag: `[A-Za-z]{2,3}(-[A-Za-z0-9]{min_subtag,8}){0,3}`. Stored locales need
/// subtags of 2+ characters; a requested one may be any well-formed tag.
fn valid_locale_with(locale: &str, min_subtag: usize) -> bool {
    if locale.len() > LOCALE_MAX {
        return false;
    }
    let mut parts = locale.split('-');
    let language = parts.next().unwrap_or("");
    if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    let mut count = 0;
    for part in parts {
        count += 1;
        if count > 3
            || !(min_subtag..=8).contains(&part.len())
            || !part.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return false;
        }
    }
    true
}

/// A locale a template may hold content for.
pub fn valid_locale(locale: &str) -> bool {
    valid_locale_with(locale, 2)
}

/// A locale a preview (or delivery) may ask for.
pub fn valid_requested_locale(locale: &str) -> bool {
    valid_locale_with(locale, 1)
}

/// Checks the shape of `content` for `channel`: formats, limits, `default_locale` among the
/// locales, each locale shaped for the channel. Does not look inside the templates.
pub fn check_shape(channel: Channel, content: &Content) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !valid_category(&content.category) {
        errors.push(field("category", "must be 1 to 32 of a-z, 0-9, `_`, `-`"));
    }
    if content.variables.len() > VARIABLES_MAX {
        errors.push(field(
            "variables",
            format!("at most {VARIABLES_MAX} variables"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, name) in content.variables.iter().enumerate() {
        if !valid_variable(name) {
            errors.push(field(
                format!("variables[{i}]"),
                "must be an identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 64, not a keyword such as `loop` or `none`)",
            ));
        } else if !seen.insert(name.as_str()) {
            errors.push(field(
                format!("variables[{i}]"),
                format!("`{name}` is declared twice"),
            ));
        }
    }
    if content.locales.is_empty() {
        errors.push(field("locales", "at least one locale"));
    }
    if content.locales.len() > LOCALES_MAX {
        errors.push(field("locales", format!("at most {LOCALES_MAX} locales")));
    }
    let mut lowercase = BTreeSet::new();
    for (locale, value) in &content.locales {
        let path = format!("locales.{locale}");
        if !valid_locale(locale) {
            errors.push(field(
                &path,
                "not a locale tag such as `en`, `fr` or `fr-CA`",
            ));
            continue;
        }
        if !lowercase.insert(locale.to_ascii_lowercase()) {
            errors.push(field(
                &path,
                "another locale differs from this one only by case",
            ));
        }
        errors.extend(check_locale_shape(channel, &path, value));
    }
    if !valid_locale(&content.default_locale) {
        errors.push(field(
            "default_locale",
            "not a locale tag such as `en`, `fr` or `fr-CA`",
        ));
    } else if !content.locales.contains_key(&content.default_locale) {
        errors.push(field(
            "default_locale",
            format!(
                "`{}` is not one of the locales of `locales`",
                content.default_locale
            ),
        ));
    }
    errors
}

fn check_locale_shape(channel: Channel, path: &str, value: &LocaleContent) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut length = |part: &str, source: &str, max: usize| {
        let chars = source.chars().count();
        if chars == 0 {
            errors.push(field(format!("{path}.{part}"), "must not be empty"));
        } else if chars > max {
            errors.push(field(
                format!("{path}.{part}"),
                format!("at most {max} characters"),
            ));
        }
    };
    match (channel, &value.email, &value.sms) {
        (Channel::Email, Some(email), None) => {
            length("email.subject", &email.subject, SUBJECT_SOURCE_MAX);
            length("email.html", &email.html, HTML_SOURCE_MAX);
            length("email.text", &email.text, TEXT_SOURCE_MAX);
        }
        (Channel::Sms, None, Some(sms)) => length("sms.text", &sms.text, SMS_SOURCE_MAX),
        (Channel::Email, _, _) => errors.push(field(
            path,
            "an email template needs `{\"email\": {\"subject\", \"html\", \"text\"}}` and no `sms`",
        )),
        (Channel::Sms, _, _) => errors.push(field(
            path,
            "an sms template needs `{\"sms\": {\"text\"}}` and no `email`",
        )),
    }
    errors
}

/// The key in a path, or `404` (a key that cannot exist is not found).
pub fn path_key(key: &str) -> Result<&str, ApiError> {
    if valid_key(key) {
        Ok(key)
    } else {
        Err(ApiError::not_found("template"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(valid_key("welcome.email_v2-a"));
        assert!(!valid_key("-x"));
        assert!(!valid_key("Welcome"));
        assert!(!valid_key(&"a".repeat(65)));
        assert!(valid_category("security"));
        assert!(!valid_category(""));
        assert!(valid_variable("first_name"));
        assert!(!valid_variable("1x"));
        assert!(!valid_variable("loop"));
        assert!(valid_locale("fr-CA"));
        assert!(valid_locale("zh-Hant-TW"));
        assert!(!valid_locale("f"));
        assert!(!valid_locale("fr_CA"));
        assert!(valid_requested_locale("de-1-x"));
    }
}
