//! Web origins (`scheme://host[:port]`) as the Fetch standard serialises them, and the set
//! of origins a CORS policy allows.
//!
//! Two parsers live here on purpose: [`OriginRef::parse`] reads the `Origin` request header
//! on the hot path (no allocation unless the host has upper-case letters), and
//! [`AllowedOrigin::parse`] reads the policy file, where a precise message matters more than
//! speed.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashSet};

/// Longest `Origin` header considered: scheme + `://` + a 253-byte DNS name + `:65535`.
pub const MAX_ORIGIN_LEN: usize = 280;

/// `http` or `https`; browsers send no other scheme in a CORS request that can be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An origin read from a request: the host is borrowed from the header unless it had to be
/// lower-cased. The port is always explicit (default ports filled in), so
/// `https://a.com` and `https://a.com:443` are the same origin.
#[derive(Debug, PartialEq, Eq)]
pub struct OriginRef<'a> {
    pub scheme: Scheme,
    pub host: Cow<'a, str>,
    pub port: u16,
}

/// Why a request's `Origin` header is not a usable origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginParseError {
    /// The literal `null` (sandboxed iframes, `file:` pages, some redirects).
    Null,
    /// Anything that is not `http(s)://host[:port]`.
    Malformed,
}

impl<'a> OriginRef<'a> {
    /// Parses an `Origin` header value. Accepts exactly `scheme://host[:port]` with scheme
    /// `http` or `https` (any case), a DNS name, IPv4 or bracketed IPv6 host, and no path,
    /// query, fragment or user info.
    pub fn parse(raw: &'a [u8]) -> Result<Self, OriginParseError> {
        if raw == b"null" {
            return Err(OriginParseError::Null);
        }
        if raw.len() > MAX_ORIGIN_LEN {
            return Err(OriginParseError::Malformed);
        }
        let (scheme, rest) = if let Some(rest) = strip_prefix_ignore_case(raw, b"https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(raw, b"http://") {
            (Scheme::Http, rest)
        } else {
            return Err(OriginParseError::Malformed);
        };
        let (host, port) = split_host_port(rest).ok_or(OriginParseError::Malformed)?;
        let port = match port {
            Some(port) => parse_port(port).ok_or(OriginParseError::Malformed)?,
            None => scheme.default_port(),
        };
        if !is_valid_host(host) {
            return Err(OriginParseError::Malformed);
        }
        // `is_valid_host` admits only ASCII, so this cannot fail; the error arm keeps the
        // hot path free of panics all the same.
        let host = std::str::from_utf8(host).map_err(|_| OriginParseError::Malformed)?;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        Ok(OriginRef { scheme, host, port })
    }
}

fn strip_prefix_ignore_case<'a>(raw: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if raw.len() >= prefix.len() && raw[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&raw[prefix.len()..])
    } else {
        None
    }
}

/// Splits `host[:port]` / `[v6][:port]`. `None` when the shape is wrong.
fn split_host_port(authority: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if authority.first() == Some(&b'[') {
        let close = authority.iter().position(|&b| b == b']')?;
        let host = &authority[..=close];
        return match &authority[close + 1..] {
            [] => Some((host, None)),
            [b':', port @ ..] => Some((host, Some(port))),
            _ => None,
        };
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => Some((&authority[..colon], Some(&authority[colon + 1..]))),
        None => Some((authority, None)),
    }
}

fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(value).ok().filter(|&p| p != 0)
}

/// A DNS name of non-empty labels of letters, digits and `-` (not at a label's ends), an
/// IPv4 literal (which is such a name too), or a bracketed IPv6 literal.
fn is_valid_host(host: &[u8]) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    if host[0] == b'[' {
        let inner = &host[1..host.len() - 1];
        return host.len() > 2
            && host[host.len() - 1] == b']'
            && inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            && inner.contains(&b':');
    }
    host.split(|&b| b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// An exact origin from the policy, stored lower-case with an explicit port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginKey {
    scheme: Scheme,
    host: Box<str>,
    port: u16,
}

// `OriginKey` and `OriginRef` must hash identically so a request's origin can be looked up
// without building an owned key (hashbrown's `Equivalent`).
impl Hash for OriginKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.scheme, &*self.host, self.port).hash(state);
    }
}

impl Hash for OriginRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.scheme, &*self.host, self.port).hash(state);
    }
}

impl Equivalent<OriginKey> for OriginRef<'_> {
    fn equivalent(&self, key: &OriginKey) -> bool {
        self.scheme == key.scheme && self.port == key.port && *self.host == *key.host
    }
}

impl std::fmt::Display for OriginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// `https://*.example.com[:port]`: any host with at least one more label before the suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Scheme,
    /// `.example.com`, lower-case, with its leading dot.
    dotted_suffix: Box<str>,
    port: u16,
}

impl OriginPattern {
    /// True for `a.example.com` and `a.b.example.com`, never for `example.com`,
    /// `evilexample.com` or `example.com.evil.net`: the host must end with `.example.com`
    /// and hosts never have empty labels, so something precedes the dot.
    fn matches(&self, origin: &OriginRef<'_>) -> bool {
        self.scheme == origin.scheme
            && self.port == origin.port
            && origin.host.len() > self.dotted_suffix.len()
            && origin.host.ends_with(&*self.dotted_suffix)
    }
}

/// One entry of `cors.origins` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigin {
    Exact(OriginKey),
    Pattern(OriginPattern),
    /// The literal `null` origin; refused unless listed.
    Null,
    /// `*`: any origin (only without credentials).
    Any,
}

impl AllowedOrigin {
    /// Parses one policy entry, with a message an operator can act on when it is wrong.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        match entry {
            "" => return Err("an origin cannot be empty".into()),
            "null" => return Ok(AllowedOrigin::Null),
            "*" => return Ok(AllowedOrigin::Any),
            _ => {}
        }
        let Some((scheme, rest)) = entry.split_once("://") else {
            return Err(format!(
                "`{entry}` has no scheme: write it as https://{} (or http:// for local development)",
                entry.trim_start_matches('/')
            ));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => {
                return Err(format!(
                    "scheme `{other}` is not allowed: origins are http:// or https://"
                ))
            }
        };
        if let Some(at) = rest.find(['/', '?', '#']) {
            return Err(format!(
                "an origin has no path, query or fragment: remove `{}`",
                &rest[at..]
            ));
        }
        if rest.contains('@') {
            return Err("an origin has no user info (`user@`)".into());
        }
        let (host, port) = split_host_port(rest.as_bytes())
            .ok_or_else(|| format!("`{rest}` is not a valid host[:port]"))?;
        let port = match port {
            Some(digits) => parse_port(digits)
                .ok_or_else(|| "the port must be a number from 1 to 65535".to_string())?,
            None => scheme.default_port(),
        };
        let host = String::from_utf8_lossy(host).to_ascii_lowercase();
        if host == "*" {
            return Err(
                "a subdomain pattern needs a domain after `*.`, as in https://*.example.com".into(),
            );
        }
        if let Some(suffix) = host.strip_prefix("*.") {
            return Self::pattern(scheme, suffix, port);
        }
        if host.contains('*') {
            return Err(format!(
                "`{host}`: a wildcard is only allowed as the whole first label, as in https://*.example.com"
            ));
        }
        if !is_valid_host(host.as_bytes()) {
            return Err(format!("`{host}` is not a valid host name or IP address"));
        }
        Ok(AllowedOrigin::Exact(OriginKey {
            scheme,
            host: host.into_boxed_str(),
            port,
        }))
    }

    fn pattern(scheme: Scheme, suffix: &str, port: u16) -> Result<Self, String> {
        if suffix.is_empty() {
            return Err("a subdomain pattern needs a domain after `*.`".into());
        }
        if !is_valid_host(suffix.as_bytes()) {
            return Err(format!("`{suffix}` is not a valid domain for a pattern"));
        }
        let labels: Vec<&str> = suffix.split('.').collect();
        if labels.len() < 2 {
            return Err(format!(
                "`*.{suffix}` is too broad: a pattern needs a registrable domain (at least two labels, as in *.example.com)"
            ));
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err("a subdomain pattern cannot be an IP address".into());
        }
        Ok(AllowedOrigin::Pattern(OriginPattern {
            scheme,
            dotted_suffix: format!(".{suffix}").into_boxed_str(),
            port,
        }))
    }
}

/// The origins a policy allows, organised for a fast lookup: a hash set of exact origins
/// and a short list of patterns tried in order.
#[derive(Debug, Default, Clone)]
pub struct OriginSet {
    exact: HashSet<OriginKey>,
    patterns: Vec<OriginPattern>,
    allow_null: bool,
    allow_any: bool,
}

impl OriginSet {
    pub fn insert(&mut self, origin: AllowedOrigin) {
        match origin {
            AllowedOrigin::Exact(key) => {
                self.exact.insert(key);
            }
            AllowedOrigin::Pattern(pattern) => {
                if !self.patterns.contains(&pattern) {
                    self.patterns.push(pattern);
                }
            }
            AllowedOrigin::Null => self.allow_null = true,
            AllowedOrigin::Any => self.allow_any = true,
        }
    }

    /// True when `*` was listed.
    pub fn allows_any(&self) -> bool {
        self.allow_any
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty() && !self.allow_null && !self.allow_any
    }

    /// Number of exact origins and of patterns, for the start-up summary.
    pub fn counts(&self) -> (usize, usize) {
        (self.exact.len(), self.patterns.len())
    }

    /// Whether a request's `Origin` header is allowed, and why not when it is not.
    pub fn check(&self, raw: &[u8]) -> Result<(), OriginRefusal> {
        match OriginRef::parse(raw) {
            Ok(origin) => {
                if self.allow_any
                    || self.exact.contains(&origin)
                    || self.patterns.iter().any(|p| p.matches(&origin))
                {
                    Ok(())
                } else {
                    Err(OriginRefusal::NotAllowed)
                }
            }
            Err(OriginParseError::Null) if self.allow_null || self.allow_any => Ok(()),
            Err(OriginParseError::Null) => Err(OriginRefusal::Null),
            Err(OriginParseError::Malformed) => Err(OriginRefusal::Malformed),
        }
    }
}

/// Why an origin is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginRefusal {
    /// A well-formed origin that the policy does not list.
    NotAllowed,
    /// `null`, not listed literally.
    Null,
    /// Not an origin at all.
    Malformed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[&str]) -> OriginSet {
        let mut set = OriginSet::default();
        for entry in entries {
            set.insert(AllowedOrigin::parse(entry).expect("valid entry"));
        }
        set
    }

    fn allowed(set: &OriginSet, origin: &str) -> bool {
        set.check(origin.as_bytes()).is_ok()
    }

    #[test]
    fn exact_origins_compare_scheme_host_and_port() {
        let s = set(&["https://app.example.com", "http://localhost:5173"]);
        assert!(allowed(&s, "https://app.example.com"));
        assert!(
            allowed(&s, "https://APP.Example.COM"),
            "host is case-insensitive"
        );
        assert!(
            allowed(&s, "HTTPS://app.example.com"),
            "scheme is case-insensitive"
        );
        assert!(allowed(&s, "https://app.example.com:443"), "default port");
        assert!(!allowed(&s, "http://app.example.com"), "other scheme");
        assert!(!allowed(&s, "https://app.example.com:8443"), "other port");
        assert!(allowed(&s, "http://localhost:5173"));
        assert!(!allowed(&s, "http://localhost:5174"));
        assert!(!allowed(&s, "http://localhost"));
    }

    #[test]
    fn policy_default_port_is_normalised() {
        let s = set(&["https://a.example.com:443", "http://b.example.com:80"]);
        assert!(allowed(&s, "https://a.example.com"));
        assert!(allowed(&s, "http://b.example.com"));
    }

    #[test]
    fn subdomain_patterns() {
        let s = set(&["https://*.example.com"]);
        assert!(allowed(&s, "https://a.example.com"));
        assert!(allowed(&s, "https://a.b.example.com"));
        assert!(allowed(&s, "https://A.EXAMPLE.com"));
        assert!(!allowed(&s, "https://example.com"));
        assert!(!allowed(&s, "https://evilexample.com"));
        assert!(!allowed(&s, "https://example.com.evil.net"));
        assert!(!allowed(&s, "http://a.example.com"), "scheme");
        assert!(!allowed(&s, "https://a.example.com:8443"), "port");
        assert!(!allowed(&s, "https://.example.com"), "empty label");
    }

    #[test]
    fn null_is_refused_unless_listed() {
        assert_eq!(
            set(&["https://a.com"]).check(b"null"),
            Err(OriginRefusal::Null)
        );
        assert!(allowed(&set(&["null"]), "null"));
        assert!(!allowed(&set(&["null"]), "https://a.com"));
    }

    #[test]
    fn malformed_origins_are_refused() {
        let s = set(&["*"]);
        for bad in [
            "",
            "example.com",
            "ftp://a.com",
            "https://",
            "https://a.com/",
            "https://a.com/path",
            "https://user@a.com",
            "https://a.com:",
            "https://a.com:0",
            "https://a.com:65536",
            "https://a.com:80a",
            "https://a..com",
            "https://-a.com",
            "https://a_b.com",
            "https://a.com?x",
            "https://[::1",
            "https://[]",
            "https://a.com, https://b.com",
        ] {
            assert_eq!(
                s.check(bad.as_bytes()),
                Err(OriginRefusal::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            s.check("https://\u{e9}.com".as_bytes()),
            Err(OriginRefusal::Malformed)
        );
        assert_eq!(s.check(&[0xff, 0xfe]), Err(OriginRefusal::Malformed));
        let long = format!("https://{}.com", "a".repeat(400));
        assert_eq!(s.check(long.as_bytes()), Err(OriginRefusal::Malformed));
    }

    #[test]
    fn ip_hosts() {
        let s = set(&["http://127.0.0.1:3000", "http://[::1]:5173"]);
        assert!(allowed(&s, "http://127.0.0.1:3000"));
        assert!(allowed(&s, "http://[::1]:5173"));
        assert!(!allowed(&s, "http://[::2]:5173"));
    }

    #[test]
    fn any_allows_every_well_formed_origin() {
        let s = set(&["*"]);
        assert!(allowed(&s, "https://whatever.test"));
        assert!(s.allows_any());
    }

    #[test]
    fn bad_policy_entries_are_explained() {
        let cases = [
            ("https://*", "needs a domain"),
            ("*.com", "no scheme"),
            ("https://*.com", "too broad"),
            ("https://a.com/", "no path"),
            ("https://a.com/app", "no path"),
            ("ftp://a.com", "scheme `ftp`"),
            ("https://a*.com", "wildcard"),
            ("https://a.*.com", "wildcard"),
            ("https://a.com:99999", "port"),
            ("https://*.1.2.3", "IP"),
            ("", "empty"),
            ("https://a b.com", "not a valid host"),
        ];
        for (entry, expected) in cases {
            let message = AllowedOrigin::parse(entry).expect_err(entry);
            assert!(
                message.contains(expected),
                "{entry:?}: {message:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn origin_key_displays_in_canonical_form() {
        let AllowedOrigin::Exact(key) =
            AllowedOrigin::parse("HTTPS://App.Example.com:443").expect("valid")
        else {
            panic!("exact origin expected");
        };
        assert_eq!(key.to_string(), "https://app.example.com");
    }
}
