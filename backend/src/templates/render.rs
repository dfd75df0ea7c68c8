//! Rendering with minijinja, and the checks made when a template is saved.
//!
//! Strict mode: an undefined variable is an error, never an empty string. Each part is
//! compiled under its field path (`locales.fr.email.html`), so errors name it, and the
//! auto-escape callback HTML-escapes only the names ending in `.html`: the subject and the
//! text bodies are plain text. Templates stand alone: `include`, `extends` and `import`
//! are refused (there is nothing to load).
//!
//! [`render`] is what delivery calls; the preview endpoint calls it too.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::error::FieldError;
use crate::templates::model::{Channel, Content, LocaleContent, SMS_MAX};
use crate::templates::store::StoredTemplate;

/// A rendered template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The locale whose content was rendered, after fallback.
    pub locale_used: String,
    /// Email only; one line.
    pub subject: Option<String>,
    /// Email only; variables HTML-escaped.
    pub html: Option<String>,
    /// The email text body, or the sms.
    pub text: String,
    /// Declared variables not given that this locale does not use.
    pub missing_variables: Vec<String>,
}

/// Why a template did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("variables must be a JSON object")]
    VariablesNotAnObject,
    /// Declared variables the chosen locale uses, not given (sorted).
    #[error("missing variables: {}", .0.join(", "))]
    MissingVariables(Vec<String>),
    /// A part failed to render; `message` holds the line and column.
    #[error("{path}: {message}")]
    Template { path: String, message: String },
    /// The rendered sms is longer than [`SMS_MAX`] characters.
    #[error("the sms renders to {length} characters; the limit is {SMS_MAX}")]
    SmsTooLong { length: usize },
    /// The template has no content for any locale (never stored so).
    #[error("the template has no content")]
    NoContent,
}

/// Most minijinja instructions one render may run: templates are written by admins, but a
/// loop over a large range must not hold a request (or a worker) for long. Plenty for any
/// real message: a 500 kB html body of static text is a few thousand instructions.
pub const RENDER_FUEL: u64 = 2_000_000;

/// The environment every template compiles and renders in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_keep_trailing_newline(true);
    env
}

/// The field path of a part: `locales.<locale>.<channel>.<part>` — also its template name.
pub fn part_path(locale: &str, channel: Channel, part: &str) -> String {
    format!("locales.{locale}.{}.{part}", channel.as_str())
}

/// `<kind> at line L, column C: <detail>`, from the error's line and byte range.
fn describe(error: &minijinja::Error, source: &str) -> String {
    let mut text = error.kind().to_string();
    if let Some(line) = error.line() {
        text.push_str(&format!(" at line {line}"));
        if let Some(start) = error.range().map(|r| r.start) {
            if let Some(before) = source.get(..start) {
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                text.push_str(&format!(", column {column}"));
            }
        }
    }
    if let Some(detail) = error.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    text
}

/// The root names a compiled template reads from its context, minus the environment's
/// globals (`range`, `dict`…).
fn used_roots(env: &Environment<'_>, template: &minijinja::Template<'_, '_>) -> BTreeSet<String> {
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    template
        .undeclared_variables(true)
        .into_iter()
        .map(|v| v.split('.').next().unwrap_or_default().to_owned())
        .filter(|v| !globals.contains(v.as_str()))
        .collect()
}

/// Statements that load other templates, which do not exist here.
fn loads_other_templates(source: &str) -> Option<&'static str> {
    let mut rest = source;
    while let Some(i) = rest.find("{%") {
        rest = &rest[i + 2..];
        let statement = rest.trim_start_matches(['-', '+']).trim_start();
        for word in ["include", "extends", "import", "from"] {
            if let Some(after) = statement.strip_prefix(word) {
                if after
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
                {
                    return Some(word);
                }
            }
        }
    }
    None
}

/// A lower bound of the rendered length of an sms: the literal text of a template without
/// statements (`{% %}`), expressions and comments removed (whitespace trimmed by `-`
/// markers taken into account). `None` with statements: then only rendering tells.
pub fn static_length(source: &str) -> Option<usize> {
    if source.contains("{%") {
        return None;
    }
    let mut length = 0;
    let mut rest = source;
    let mut trim_start = false;
    loop {
        let next = [rest.find("{{"), rest.find("{#")]
            .into_iter()
            .flatten()
            .min();
        let (literal, tag) = match next {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let trim_end = tag.is_some_and(|t| t[2..].starts_with('-'));
        let mut literal = literal;
        if trim_start {
            literal = literal.trim_start();
        }
        if trim_end {
            literal = literal.trim_end();
        }
        length += literal.chars().count();
        let Some(tag) = tag else {
            return Some(length);
        };
        let close = if tag.starts_with("{{") { "}}" } else { "#}" };
        let Some(end) = tag[2..].find(close) else {
            return Some(length);
        };
        trim_start = tag[2..2 + end].ends_with('-');
        rest = &tag[2 + end + 2..];
    }
}

/// Checks the templates of `content` (whose shape `model::check_shape` accepted): each part
/// compiles (else its path and a message with line and column), uses only declared
/// variables, loads no other template, and an sms does not statically exceed
/// [`SMS_MAX`] characters.
pub fn check(channel: Channel, content: &Content) -> Vec<FieldError> {
    let env = environment();
    let declared: BTreeSet<&str> = content.variables.iter().map(String::as_str).collect();
    let mut errors = Vec::new();
    for (locale, value) in &content.locales {
        for (part, source) in value.parts(channel) {
            let path = part_path(locale, channel, part);
            if let Some(word) = loads_other_templates(source) {
                errors.push(FieldError {
                    path,
                    message: format!("`{word}` is not available: a template stands alone"),
                });
                continue;
            }
            let template = match env.template_from_named_str(&path, source) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(FieldError {
                        message: describe(&e, source),
                        path,
                    });
                    continue;
                }
            };
            for name in used_roots(&env, &template) {
                if !declared.contains(name.as_str()) {
                    errors.push(FieldError {
                        path: path.clone(),
                        message: format!(
                            "uses the variable `{name}`, which is not declared in `variables`"
                        ),
                    });
                }
            }
            if channel == Channel::Sms {
                if let Some(length) = static_length(source).filter(|l| *l > SMS_MAX) {
                    errors.push(FieldError {
                        path,
                        message: format!(
                            "renders to at least {length} characters; an sms is at most {SMS_MAX}"
                        ),
                    });
                }
            }
        }
    }
    errors
}

/// The locale to render for `requested`: itself, then itself without its last subtag
/// (`fr-CA` → `fr`), down to the language, then `default_locale`. Case-insensitive.
pub fn resolve_locale<'a>(
    requested: &str,
    locales: &'a BTreeMap<String, LocaleContent>,
    default_locale: &'a str,
) -> &'a str {
    let mut candidate = requested;
    loop {
        if let Some((found, _)) = locales
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(candidate))
        {
            return found;
        }
        match candidate.rfind('-') {
            Some(i) => candidate = &candidate[..i],
            None => return default_locale,
        }
    }
}

/// Renders `template` for `locale` (with fallback) and `variables` (a JSON object; `null`
/// is no variable). Fails with the declared variables the locale uses that are not given,
/// with the first part that fails to render (path, line and column), or with an sms over
/// [`SMS_MAX`] characters.
pub fn render(
    template: &StoredTemplate,
    locale: &str,
    variables: &serde_json::Value,
) -> Result<Rendered, RenderError> {
    let empty = serde_json::Map::new();
    let given = match variables {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => &empty,
        _ => return Err(RenderError::VariablesNotAnObject),
    };
    let content = &template.content;
    let locale_used = resolve_locale(locale, &content.locales, &content.default_locale);
    let value = content
        .locales
        .get(locale_used)
        .ok_or(RenderError::NoContent)?;
    let channel = template.channel;
    let env = environment();
    let parts: Vec<(&str, String, &str)> = value
        .parts(channel)
        .into_iter()
        .map(|(part, source)| (part, part_path(locale_used, channel, part), source))
        .collect();
    let mut compiled = Vec::new();
    let mut used = BTreeSet::new();
    for (part, path, source) in &parts {
        let compiled_part =
            env.template_from_named_str(path, source)
                .map_err(|e| RenderError::Template {
                    message: describe(&e, source),
                    path: path.clone(),
                })?;
        used.extend(used_roots(&env, &compiled_part));
        compiled.push((*part, path, *source, compiled_part));
    }
    if compiled.is_empty() {
        return Err(RenderError::NoContent);
    }
    let missing: Vec<&String> = content
        .variables
        .iter()
        .filter(|v| !given.contains_key(v.as_str()))
        .collect();
    let used_missing: BTreeSet<String> = missing
        .iter()
        .filter(|v| used.contains(v.as_str()))
        .map(|v| (*v).clone())
        .collect();
    if !used_missing.is_empty() {
        return Err(RenderError::MissingVariables(
            used_missing.into_iter().collect(),
        ));
    }
    let context = minijinja::Value::from_serialize(given);
    let mut rendered = Rendered {
        locale_used: locale_used.to_owned(),
        subject: None,
        html: None,
        text: String::new(),
        missing_variables: missing
            .into_iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    for (part, path, source, compiled_part) in compiled {
        let output = compiled_part
            .render(&context)
            .map_err(|e| RenderError::Template {
                message: describe(&e, source),
                path: path.clone(),
            })?;
        match part {
            "subject" => rendered.subject = Some(one_line(&output)),
            "html" => rendered.html = Some(output),
            _ => rendered.text = output,
        }
    }
    if channel == Channel::Sms {
        let length = rendered.text.chars().count();
        if length > SMS_MAX {
            return Err(RenderError::SmsTooLong { length });
        }
    }
    Ok(rendered)
}

/// A subject is one header line: control characters (line breaks…) become spaces.
fn one_line(subject: &str) -> String {
    subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_length_counts_literal_text() {
        assert_eq!(static_length("hello"), Some(5));
        assert_eq!(static_length("hi {{ name }}!"), Some(4));
        assert_eq!(static_length("hi {{- name -}} !"), Some(3));
        assert_eq!(static_length("a{# note #}b"), Some(2));
        assert_eq!(static_length("{% if x %}a{% endif %}"), None);
    }

    #[test]
    fn loads_are_found() {
        assert_eq!(loads_other_templates("{% include 'x' %}"), Some("include"));
        assert_eq!(
            loads_other_templates("{%- from 'x' import y %}"),
            Some("from")
        );
        assert_eq!(
            loads_other_templates("{% for i in items %}{% endfor %}"),
            None
        );
        assert_eq!(loads_other_templates("{% set importance = 1 %}"), None);
    }

    #[test]
    fn describes_line_and_column() {
        let env = environment();
        let source = "line1\nHi {{ name ";
        let error = env
            .template_from_named_str("x.text", source)
            .expect_err("syntax error");
        let message = describe(&error, source);
        assert!(
            message.starts_with("syntax error at line 2, column 7:"),
            "{message}"
        );
    }
}
