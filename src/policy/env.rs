//! Environment variable references in policy values: `${NAME}` and `${NAME:-default}`.
//!
//! Variables are read through the [`Env`] trait rather than `std::env` so tests can pass a
//! map and never touch the process environment.

/// A source of environment variables: the trait both binaries and the secrets chain read
/// variables through (`ProcessEnv` is the process's; tests pass a `HashMap`).
pub use gardien_secrets::{ProcessVars as ProcessEnv, Vars as Env};

/// Why a value's references could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `${NAME}` with `NAME` unset and no default.
    Unset(String),
    /// `${` without its `}`, or a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    Syntax(String),
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpandError::Unset(name) => write!(
                f,
                "environment variable {name} is not set and has no default (write ${{{name}:-default}} to give one)"
            ),
            ExpandError::Syntax(message) => f.write_str(message),
        }
    }
}

/// A value after expansion, and whether it was exactly one reference (`"${PORT}"`), in which
/// case the caller may read it as a number or boolean.
#[derive(Debug, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    pub whole_reference: bool,
}

/// Expands every `${NAME}` / `${NAME:-default}` in `input`. `$$` is a literal `$`; a `$` not
/// followed by `{` is kept as is. As in POSIX shells, `:-` uses the default when the variable
/// is unset *or empty*. Every unset variable is reported, not only the first.
pub fn expand(input: &str, env: &dyn Env) -> Result<Expanded, Vec<ExpandError>> {
    let mut out = String::with_capacity(input.len());
    let mut errors = Vec::new();
    let mut rest = input;
    let mut references = 0;
    let mut literal_text = false;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        literal_text |= dollar > 0;
        let after = &rest[dollar + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            literal_text = true;
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            literal_text = true;
            rest = after;
            continue;
        };
        let Some(close) = body_start.find('}') else {
            errors.push(ExpandError::Syntax(format!(
                "unterminated reference `${{{body_start}`: add the closing `}}`"
            )));
            return Err(errors);
        };
        let body = &body_start[..close];
        rest = &body_start[close + 1..];
        references += 1;
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_valid_name(name) {
            errors.push(ExpandError::Syntax(format!(
                "`${{{body}}}` is not a valid reference: names are letters, digits and `_`, not starting with a digit"
            )));
            continue;
        }
        match (env.var(name), default) {
            (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => errors.push(ExpandError::Unset(name.to_owned())),
        }
    }
    out.push_str(rest);
    literal_text |= !rest.is_empty();
    if errors.is_empty() {
        Ok(Expanded {
            value: out,
            whole_reference: references == 1 && !literal_text,
        })
    } else {
        Err(errors)
    }
}

/// One `${NAME}` or `${NAME:-default}` in a value, for `gardien env-docs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    /// `None`: the variable is required.
    pub default: Option<String>,
}

/// Every well-formed reference in `input`, in order, read as [`expand`] reads them (`$$` is
/// a literal `$`); a malformed one is skipped (loading the policy reports it).
pub fn references(input: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        let after = &rest[dollar + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            rest = after;
            continue;
        };
        let Some(close) = body_start.find('}') else {
            break;
        };
        let body = &body_start[..close];
        rest = &body_start[close + 1..];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default.to_owned())),
            None => (body, None),
        };
        if is_valid_name(name) {
            found.push(Reference {
                name: name.to_owned(),
                default,
            });
        }
    }
    found
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn references_are_listed_with_their_defaults() {
        let found = references("$${LITERAL}${A}:${B:-b:c}/${1X}/${C:-}");
        let pairs: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|r| (r.name.as_str(), r.default.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            vec![("A", None), ("B", Some("b:c")), ("C", Some(""))]
        );
        assert!(references("${UNTERMINATED").is_empty());
    }

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([("HOST", "10.0.0.1"), ("EMPTY", ""), ("PORT", "8080")])
    }

    fn ok(input: &str) -> Expanded {
        expand(input, &env()).expect("expands")
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(ok("http://a:1").value, "http://a:1");
        assert!(!ok("http://a:1").whole_reference);
    }

    #[test]
    fn set_variable_is_substituted() {
        assert_eq!(ok("${HOST}:${PORT}").value, "10.0.0.1:8080");
    }

    #[test]
    fn default_used_when_unset_or_empty() {
        assert_eq!(ok("${NOPE:-127.0.0.1:8080}").value, "127.0.0.1:8080");
        assert_eq!(ok("${EMPTY:-x}").value, "x");
        assert_eq!(ok("${HOST:-x}").value, "10.0.0.1");
    }

    #[test]
    fn whole_reference_is_flagged() {
        assert!(ok("${PORT}").whole_reference);
        assert!(!ok("p${PORT}").whole_reference);
        assert!(!ok("${PORT}${PORT}").whole_reference);
    }

    #[test]
    fn dollar_escapes() {
        assert_eq!(ok("a$$b").value, "a$b");
        assert_eq!(ok("cost $5").value, "cost $5");
    }

    #[test]
    fn every_unset_variable_is_reported() {
        let errors = expand("${A}/${B:-b}/${C}", &env()).expect_err("unset");
        assert_eq!(
            errors,
            vec![
                ExpandError::Unset("A".into()),
                ExpandError::Unset("C".into())
            ]
        );
        assert!(errors[0].to_string().contains("A is not set"));
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(
            expand("${HOST", &env()).expect_err("unterminated")[0],
            ExpandError::Syntax(_)
        ));
        assert!(matches!(
            expand("${1X}", &env()).expect_err("bad name")[0],
            ExpandError::Syntax(_)
        ));
    }
}
