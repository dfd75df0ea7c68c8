//! The strong ETag of a preferences document (`"<version>"`, `"0"` for the defaults of a
//! user with nothing stored) and the `If-Match` precondition against it (RFC 9110 §13.1.1:
//! strong comparison, so a weak tag never matches; `*` matches, since every user has
//! preferences — stored or default).

use axum::http::header::IF_MATCH;
use axum::http::{HeaderMap, HeaderValue};

use crate::error::ApiError;

/// The `ETag` header value of `version`.
pub fn of(version: i64) -> HeaderValue {
    // Digits and quotes: always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// A request's `If-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No `If-Match`: the update is unconditional.
    Absent,
    /// `*`: any current document.
    Any,
    /// The entity tags listed: weak ones are kept as `None` (they never match).
    Tags(Vec<Option<String>>),
}

impl IfMatch {
    /// Reads `If-Match`; a malformed one is `400` naming the header.
    pub fn from_headers(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
        let values: Vec<&HeaderValue> = headers.get_all(IF_MATCH).iter().collect();
        if values.is_empty() {
            return Ok(IfMatch::Absent);
        }
        let malformed = || {
            ApiError::field(
                "If-Match",
                "expected `*` or a list of entity tags such as \"3\" (the ETag you read)",
            )
        };
        let mut tags = Vec::new();
        for value in values {
            let mut rest = value.to_str().map_err(|_| malformed())?;
            loop {
                rest = rest.trim_start_matches([' ', '\t', ',']);
                if rest.is_empty() {
                    break;
                }
                if let Some(after) = rest.strip_prefix('*') {
                    if after.trim_start_matches([' ', '\t', ',']).is_empty() {
                        return Ok(IfMatch::Any);
                    }
                    return Err(malformed());
                }
                let (weak, quoted) = match rest.strip_prefix("W/") {
                    Some(after) => (true, after),
                    None => (false, rest),
                };
                // An entity tag: any characters but `"`, between quotes.
                let inner = quoted.strip_prefix('"').ok_or_else(malformed)?;
                let end = inner.find('"').ok_or_else(malformed)?;
                tags.push((!weak).then(|| inner[..end].to_owned()));
                rest = &inner[end + 1..];
                if !(rest.is_empty() || rest.starts_with([' ', '\t', ','])) {
                    return Err(malformed());
                }
            }
        }
        if tags.is_empty() {
            return Err(malformed());
        }
        Ok(IfMatch::Tags(tags))
    }

    /// Whether an update of the document at `version` may proceed.
    pub fn allows(&self, version: i64) -> bool {
        match self {
            IfMatch::Absent | IfMatch::Any => true,
            IfMatch::Tags(tags) => {
                let current = version.to_string();
                tags.iter().flatten().any(|t| *t == current)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<IfMatch, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(IF_MATCH, HeaderValue::from_str(value).expect("header"));
        IfMatch::from_headers(&headers)
    }

    #[test]
    fn tags_match_strongly() {
        assert_eq!(of(7), HeaderValue::from_static("\"7\""));
        assert!(parse("\"3\"").expect("tag").allows(3));
        assert!(!parse("\"3\"").expect("tag").allows(4));
        assert!(parse("\"1\", \"4\"").expect("tags").allows(4));
        assert!(!parse("W/\"3\"").expect("weak").allows(3));
        assert!(parse("*").expect("any").allows(0));
        assert!(IfMatch::from_headers(&HeaderMap::new())
            .expect("absent")
            .allows(9));
        assert_eq!(
            parse("\"a,b\"").expect("a comma inside a tag"),
            IfMatch::Tags(vec![Some("a,b".into())])
        );
        assert!(parse("3").is_err());
        assert!(parse("\"3").is_err());
        assert!(parse("\"3\"x").is_err());
        assert!(parse(",").is_err());
        assert!(parse("*, \"3\"").is_err());
    }
}
