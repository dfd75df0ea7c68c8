//! Cross-origin resource sharing, following the Fetch standard.
//!
//! The gateway is the only CORS authority: it answers preflights itself (they never reach an
//! upstream), decorates actual responses for allowed origins, and removes whatever
//! `Access-Control-*` headers an upstream sent (the existing API sends
//! `Access-Control-Allow-Origin: *`, which browsers reject on credentialed requests).

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::origin::{AllowedOrigin, OriginRefusal, OriginSet};
use crate::policy::schema::CorsSpec;
use crate::policy::{Diagnostics, Env, Environment};

/// Preflight answers this long a request-headers list are refused as malformed.
const MAX_REQUEST_HEADERS_LEN: usize = 4096;
/// Methods a preflight may ask for when the policy does not list them.
const DEFAULT_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];
/// Preflight cache lifetime when the policy does not set one.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);
/// Chromium caps preflight caching at two hours; a longer value only misleads.
const MAX_MAX_AGE: Duration = Duration::from_secs(7200);

/// Why a CORS request was refused; also the `reason` label of
/// `gardien_cors_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsRefusal {
    /// The `Origin` header is not `scheme://host[:port]`.
    MalformedOrigin,
    /// A well-formed origin the policy does not allow (including an unlisted `null`).
    OriginNotAllowed,
    /// The preflight asks for a method the policy does not allow.
    MethodNotAllowed,
    /// The preflight asks for a request header the policy does not allow.
    HeaderNotAllowed,
}

impl CorsRefusal {
    pub const ALL: [CorsRefusal; 4] = [
        CorsRefusal::MalformedOrigin,
        CorsRefusal::OriginNotAllowed,
        CorsRefusal::MethodNotAllowed,
        CorsRefusal::HeaderNotAllowed,
    ];

    /// Stable snake_case name, used as metric label and in the error `code`.
    pub fn as_str(self) -> &'static str {
        match self {
            CorsRefusal::MalformedOrigin => "malformed_origin",
            CorsRefusal::OriginNotAllowed => "origin_not_allowed",
            CorsRefusal::MethodNotAllowed => "method_not_allowed",
            CorsRefusal::HeaderNotAllowed => "header_not_allowed",
        }
    }

    /// The `code` of the JSON error answering a refused preflight.
    pub fn error_code(self) -> gardien_errors::ErrorCode {
        use gardien_errors::ErrorCode;
        match self {
            CorsRefusal::MalformedOrigin => ErrorCode::CorsMalformedOrigin,
            CorsRefusal::OriginNotAllowed => ErrorCode::CorsOriginNotAllowed,
            CorsRefusal::MethodNotAllowed => ErrorCode::CorsMethodNotAllowed,
            CorsRefusal::HeaderNotAllowed => ErrorCode::CorsHeaderNotAllowed,
        }
    }

    /// Human text of the JSON error.
    pub fn message(self) -> &'static str {
        match self {
            CorsRefusal::MalformedOrigin => "the Origin header is not a valid origin",
            CorsRefusal::OriginNotAllowed => "this origin is not allowed by the CORS policy",
            CorsRefusal::MethodNotAllowed => {
                "the requested method is not allowed by the CORS policy"
            }
            CorsRefusal::HeaderNotAllowed => "a requested header is not allowed by the CORS policy",
        }
    }
}

impl From<OriginRefusal> for CorsRefusal {
    fn from(refusal: OriginRefusal) -> Self {
        match refusal {
            OriginRefusal::Malformed => CorsRefusal::MalformedOrigin,
            OriginRefusal::NotAllowed | OriginRefusal::Null => CorsRefusal::OriginNotAllowed,
        }
    }
}

/// What the request side decided, carried to the response side.
#[derive(Debug, Clone, Default)]
pub enum CorsOutcome {
    /// No `Origin` header: not a CORS request.
    #[default]
    NotCors,
    /// Allowed: the response echoes this origin.
    Allowed(HeaderValue),
    /// Refused: the response carries no CORS headers (the browser then blocks it).
    Refused(CorsRefusal),
}

/// The `Origin` header of a request. Browsers send at most one; a request with several is
/// not from a browser and gets no CORS answer, rather than an echo of whichever came first.
#[derive(Debug, Clone, Copy)]
pub enum OriginHeader<'a> {
    Absent,
    One(&'a HeaderValue),
    Repeated,
}

impl<'a> OriginHeader<'a> {
    pub fn of(headers: &'a http::HeaderMap) -> Self {
        let mut values = headers.get_all(header::ORIGIN).iter();
        match (values.next(), values.next()) {
            (None, _) => OriginHeader::Absent,
            (Some(origin), None) => OriginHeader::One(origin),
            (Some(_), Some(_)) => OriginHeader::Repeated,
        }
    }

    /// The value, when there is exactly one.
    pub fn value(self) -> Option<&'a HeaderValue> {
        match self {
            OriginHeader::One(origin) => Some(origin),
            _ => None,
        }
    }
}

/// The validated `cors:` section, with every response header value prepared once.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: OriginSet,
    credentials: bool,
    methods: Vec<Box<str>>,
    /// Lower-case; `*` means any header (only without credentials).
    headers: Vec<Box<str>>,
    any_header: bool,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

static ALLOW_ORIGIN_ANY: HeaderValue = HeaderValue::from_static("*");
static TRUE: HeaderValue = HeaderValue::from_static("true");
static PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);

impl CorsPolicy {
    /// Validates `cors:` and reads the origins named in `origins_from_env`. In `dev` an unset
    /// variable there is skipped with a warning; elsewhere it is an error, because a
    /// frontend silently refused in production is the failure this gateway exists to end.
    pub fn compile(
        spec: &CorsSpec,
        environment: Environment,
        env: &dyn Env,
        diag: &mut Diagnostics,
    ) -> Option<Self> {
        let errors_before = diag.errors().len();
        let mut origins = OriginSet::default();
        for (i, entry) in spec.origins.iter().enumerate() {
            match AllowedOrigin::parse(entry) {
                Ok(origin) => origins.insert(origin),
                Err(message) => diag.error(format!("cors.origins[{i}]"), message),
            }
        }
        for (i, name) in spec.origins_from_env.iter().enumerate() {
            let path = format!("cors.origins_from_env[{i}]");
            match env.var(name).filter(|v| !v.trim().is_empty()) {
                Some(list) => {
                    for entry in list.split(',').filter(|e| !e.trim().is_empty()) {
                        match AllowedOrigin::parse(entry) {
                            Ok(origin) => origins.insert(origin),
                            Err(message) => diag.error(
                                path.clone(),
                                format!("environment variable {name}: {message}"),
                            ),
                        }
                    }
                }
                None if environment == Environment::Dev => diag.warn(
                    path,
                    format!("environment variable {name} is not set; its origins are skipped"),
                ),
                None => diag.error(
                    path,
                    format!(
                        "environment variable {name} is not set (required outside dev; remove it from the list if it is optional)"
                    ),
                ),
            }
        }
        if origins.allows_any() && spec.credentials {
            diag.error(
                "cors.origins",
                "`*` cannot be combined with `credentials: true`: browsers refuse a wildcard on credentialed requests; list the origins",
            );
        }
        if origins.is_empty() && diag.errors().len() == errors_before {
            diag.warn(
                "cors.origins",
                "no origin is allowed: every cross-origin request will be refused",
            );
        }

        let methods = spec
            .methods
            .clone()
            .unwrap_or_else(|| DEFAULT_METHODS.iter().map(|m| (*m).to_owned()).collect());
        let mut checked_methods = Vec::with_capacity(methods.len());
        for (i, method) in methods.iter().enumerate() {
            match http::Method::from_bytes(method.trim().as_bytes()) {
                Ok(m) if m.as_str() == "*" => diag.error(
                    format!("cors.methods[{i}]"),
                    "list the methods; `*` is not supported",
                ),
                Ok(m) => checked_methods.push(m.as_str().to_ascii_uppercase().into_boxed_str()),
                Err(_) => diag.error(
                    format!("cors.methods[{i}]"),
                    format!("`{method}` is not an HTTP method"),
                ),
            }
        }
        let mut headers = Vec::with_capacity(spec.headers.len());
        let mut any_header = false;
        for (i, name) in spec.headers.iter().enumerate() {
            let name = name.trim();
            if name == "*" {
                if spec.credentials {
                    diag.error(
                        format!("cors.headers[{i}]"),
                        "`*` cannot be combined with `credentials: true`; list the headers",
                    );
                }
                any_header = true;
            } else if HeaderName::from_bytes(name.as_bytes()).is_err() {
                diag.error(
                    format!("cors.headers[{i}]"),
                    format!("`{name}` is not a valid header name"),
                );
            } else {
                headers.push(name.to_ascii_lowercase().into_boxed_str());
            }
        }
        for (i, name) in spec.expose.iter().enumerate() {
            if HeaderName::from_bytes(name.trim().as_bytes()).is_err() && name.trim() != "*" {
                diag.error(
                    format!("cors.expose[{i}]"),
                    format!("`{name}` is not a valid header name"),
                );
            }
        }
        let max_age = spec.max_age.unwrap_or(DEFAULT_MAX_AGE);
        if max_age > MAX_MAX_AGE {
            diag.warn(
                "cors.max_age",
                "browsers cap preflight caching at 2h (Chromium) or 24h (Firefox); a longer value has no effect",
            );
        }
        if diag.errors().len() > errors_before {
            return None;
        }

        let join = |items: &[String]| items.join(", ");
        let method_list: Vec<String> = checked_methods.iter().map(|m| m.to_string()).collect();
        let header_list: Vec<String> = spec.headers.iter().map(|h| h.trim().to_owned()).collect();
        let expose_list: Vec<String> = spec.expose.iter().map(|h| h.trim().to_owned()).collect();
        Some(CorsPolicy {
            origins,
            credentials: spec.credentials,
            methods: checked_methods,
            headers,
            any_header,
            allow_methods: header_value(&join(&method_list))?,
            allow_headers: (!header_list.is_empty())
                .then(|| header_value(&join(&header_list)))
                .flatten(),
            expose_headers: (!expose_list.is_empty())
                .then(|| header_value(&join(&expose_list)))
                .flatten(),
            max_age: HeaderValue::from(max_age.as_secs()),
        })
    }

    /// Number of exact origins and of patterns, for the start-up summary.
    pub fn origin_counts(&self) -> (usize, usize) {
        self.origins.counts()
    }

    /// True for a CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
    pub fn is_preflight(method: &http::Method, headers: &http::HeaderMap) -> bool {
        method == http::Method::OPTIONS
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
            && headers.contains_key(header::ORIGIN)
    }

    /// Decides an actual (non-preflight) request from its `Origin` header.
    pub fn check_actual(&self, origin: OriginHeader<'_>) -> CorsOutcome {
        let origin = match origin {
            OriginHeader::Absent => return CorsOutcome::NotCors,
            OriginHeader::Repeated => return CorsOutcome::Refused(CorsRefusal::MalformedOrigin),
            OriginHeader::One(origin) => origin,
        };
        match self.origins.check(origin.as_bytes()) {
            Ok(()) => CorsOutcome::Allowed(origin.clone()),
            Err(refusal) => CorsOutcome::Refused(refusal.into()),
        }
    }

    /// Decides a preflight. `Ok` carries the origin to echo.
    pub fn check_preflight(
        &self,
        origin: &HeaderValue,
        request_method: &HeaderValue,
        request_headers: Option<&HeaderValue>,
    ) -> Result<(), CorsRefusal> {
        self.origins.check(origin.as_bytes())?;
        let method = request_method.as_bytes();
        if !self.methods.iter().any(|m| m.as_bytes() == method) {
            return Err(CorsRefusal::MethodNotAllowed);
        }
        if let Some(requested) = request_headers {
            self.check_request_headers(requested.as_bytes())?;
        }
        Ok(())
    }

    /// `Access-Control-Request-Headers` is a comma-separated list of names (Chromium sends
    /// them lower-case and sorted); every one must be allowed.
    fn check_request_headers(&self, list: &[u8]) -> Result<(), CorsRefusal> {
        if self.any_header {
            return Ok(());
        }
        if list.len() > MAX_REQUEST_HEADERS_LEN {
            return Err(CorsRefusal::HeaderNotAllowed);
        }
        for name in list.split(|&b| b == b',') {
            let name = name.trim_ascii();
            if name.is_empty() {
                continue;
            }
            if !self
                .headers
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(name))
            {
                return Err(CorsRefusal::HeaderNotAllowed);
            }
        }
        Ok(())
    }

    /// Adds the headers of an allowed preflight's `204`.
    pub fn write_preflight_headers(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        if let Some(allow_headers) = &self.allow_headers {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers.clone());
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        headers.insert(header::VARY, PREFLIGHT_VARY.clone());
    }

    /// Removes the upstream's CORS headers, then adds ours for an allowed origin, and
    /// `Vary: Origin` whenever the answer depends on the origin.
    pub fn write_response_headers(&self, outcome: &CorsOutcome, headers: &mut HeaderMap) {
        strip_cors_headers(headers);
        if let CorsOutcome::Allowed(origin) = outcome {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin(origin),
            );
            if self.credentials {
                headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
            }
            if let Some(expose) = &self.expose_headers {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
        }
        if self.varies_by_origin() {
            add_vary_origin(headers);
        }
    }

    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.origins.allows_any() && !self.credentials {
            ALLOW_ORIGIN_ANY.clone()
        } else {
            origin.clone()
        }
    }

    /// With `*` and no credentials every origin gets the same answer; otherwise the answer
    /// depends on the origin and caches must key on it.
    fn varies_by_origin(&self) -> bool {
        !self.origins.allows_any() || self.credentials
    }
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// Removes every `Access-Control-*` header (the upstream's; the gateway is the authority).
pub fn strip_cors_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(&name);
    }
}

/// Appends `Origin` to `Vary` unless it is already there or `Vary: *`.
fn add_vary_origin(headers: &mut HeaderMap) {
    let already = headers.get_all(header::VARY).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|token| {
            let token = token.trim_ascii();
            token == b"*" || token.eq_ignore_ascii_case(b"origin")
        })
    });
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn spec(origins: &[&str], credentials: bool) -> CorsSpec {
        CorsSpec {
            origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            origins_from_env: vec![],
            credentials,
            methods: Some(vec!["GET".into(), "POST".into(), "PUT".into()]),
            headers: vec!["Authorization".into(), "Content-Type".into()],
            expose: vec!["X-Request-Id".into()],
            max_age: Some(Duration::from_secs(600)),
        }
    }

    fn compile(spec: &CorsSpec) -> CorsPolicy {
        let mut diag = Diagnostics::default();
        let env: HashMap<String, String> = HashMap::new();
        let policy = CorsPolicy::compile(spec, Environment::Dev, &env, &mut diag);
        assert!(!diag.has_errors(), "{:?}", diag.errors());
        policy.expect("compiles")
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("header value")
    }

    #[test]
    fn preflight_checks_origin_method_and_headers() {
        let policy = compile(&spec(&["https://app.example.com"], true));
        let origin = hv("https://app.example.com");
        assert_eq!(
            policy.check_preflight(&origin, &hv("PUT"), Some(&hv("authorization,content-type"))),
            Ok(())
        );
        assert_eq!(
            policy.check_preflight(&origin, &hv("DELETE"), None),
            Err(CorsRefusal::MethodNotAllowed)
        );
        assert_eq!(
            policy.check_preflight(&origin, &hv("put"), None),
            Err(CorsRefusal::MethodNotAllowed),
            "methods are case-sensitive (Fetch)"
        );
        assert_eq!(
            policy.check_preflight(&origin, &hv("POST"), Some(&hv("content-type, x-evil"))),
            Err(CorsRefusal::HeaderNotAllowed)
        );
        assert_eq!(
            policy.check_preflight(&hv("https://evil.test"), &hv("GET"), None),
            Err(CorsRefusal::OriginNotAllowed)
        );
        assert_eq!(
            policy.check_preflight(&hv("not an origin"), &hv("GET"), None),
            Err(CorsRefusal::MalformedOrigin)
        );
    }

    #[test]
    fn preflight_headers_echo_the_origin_with_credentials() {
        let policy = compile(&spec(&["https://app.example.com"], true));
        let mut headers = HeaderMap::new();
        policy.write_preflight_headers(&hv("https://app.example.com"), &mut headers);
        let get = |name: &str| {
            headers
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        assert_eq!(
            get("access-control-allow-origin").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            get("access-control-allow-credentials").as_deref(),
            Some("true")
        );
        assert_eq!(
            get("access-control-allow-methods").as_deref(),
            Some("GET, POST, PUT")
        );
        assert_eq!(
            get("access-control-allow-headers").as_deref(),
            Some("Authorization, Content-Type")
        );
        assert_eq!(get("access-control-max-age").as_deref(), Some("600"));
        assert!(get("vary").is_some_and(|v| v.contains("Origin")));
    }

    #[test]
    fn actual_response_replaces_upstream_cors_headers() {
        let policy = compile(&spec(&["https://app.example.com"], true));
        let mut response = HeaderMap::new();
        response.insert("Access-Control-Allow-Origin", HeaderValue::from_static("*"));
        response.insert(
            "Access-Control-Allow-Methods",
            HeaderValue::from_static("*"),
        );
        response.insert("Vary", HeaderValue::from_static("Accept"));
        let outcome = policy.check_actual(OriginHeader::One(&hv("https://app.example.com")));
        policy.write_response_headers(&outcome, &mut response);
        let all: Vec<_> = response
            .get_all("access-control-allow-origin")
            .iter()
            .collect();
        assert_eq!(all, vec![&hv("https://app.example.com")]);
        assert!(response.get("access-control-allow-methods").is_none());
        assert_eq!(
            response.get("access-control-expose-headers"),
            Some(&hv("X-Request-Id"))
        );
        let vary: Vec<_> = response.get_all("vary").iter().collect();
        assert_eq!(vary, vec![&hv("Accept"), &hv("Origin")]);
    }

    #[test]
    fn refused_origin_gets_no_cors_headers_but_vary() {
        let policy = compile(&spec(&["https://app.example.com"], true));
        let mut response = HeaderMap::new();
        response.insert("Access-Control-Allow-Origin", HeaderValue::from_static("*"));
        let outcome = policy.check_actual(OriginHeader::One(&hv("https://evil.test")));
        assert!(matches!(
            outcome,
            CorsOutcome::Refused(CorsRefusal::OriginNotAllowed)
        ));
        policy.write_response_headers(&outcome, &mut response);
        assert!(response
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")));
        assert_eq!(response.get("vary"), Some(&hv("Origin")));
    }

    #[test]
    fn wildcard_without_credentials_answers_star() {
        let policy = compile(&spec(&["*"], false));
        let mut response = HeaderMap::new();
        let outcome = policy.check_actual(OriginHeader::One(&hv("https://any.test")));
        policy.write_response_headers(&outcome, &mut response);
        assert_eq!(response.get("access-control-allow-origin"), Some(&hv("*")));
        assert!(response.get("vary").is_none());
    }

    #[test]
    fn wildcard_with_credentials_is_refused() {
        let mut diag = Diagnostics::default();
        let env: HashMap<String, String> = HashMap::new();
        let policy = CorsPolicy::compile(&spec(&["*"], true), Environment::Dev, &env, &mut diag);
        assert!(policy.is_none());
        assert_eq!(diag.errors()[0].path, "cors.origins");
    }

    #[test]
    fn origins_from_env_accept_lists_and_are_required_outside_dev() {
        let mut s = spec(&[], true);
        s.origins_from_env = vec!["FRONTEND_URL".into(), "FRONTEND_URL_PROD".into()];
        let env: HashMap<String, String> = HashMap::from([(
            "FRONTEND_URL".to_owned(),
            "https://a.example.com, https://b.example.com".to_owned(),
        )]);
        let mut diag = Diagnostics::default();
        let policy = CorsPolicy::compile(&s, Environment::Dev, &env, &mut diag).expect("dev");
        assert!(matches!(
            policy.check_actual(OriginHeader::One(&hv("https://b.example.com"))),
            CorsOutcome::Allowed(_)
        ));
        assert_eq!(diag.warnings().len(), 1);

        let mut diag = Diagnostics::default();
        assert!(CorsPolicy::compile(&s, Environment::Production, &env, &mut diag).is_none());
        assert_eq!(diag.errors()[0].path, "cors.origins_from_env[1]");
        assert!(diag.errors()[0].message.contains("FRONTEND_URL_PROD"));
    }

    #[test]
    fn bad_entries_are_all_reported_with_their_paths() {
        let mut s = spec(&["https://*", "*.com", "https://a.com/x"], true);
        s.methods = Some(vec!["GET".into(), "BAD METHOD".into()]);
        s.headers = vec!["Content Type".into()];
        let mut diag = Diagnostics::default();
        let env: HashMap<String, String> = HashMap::new();
        assert!(CorsPolicy::compile(&s, Environment::Dev, &env, &mut diag).is_none());
        let paths: Vec<_> = diag.errors().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "cors.origins[0]",
                "cors.origins[1]",
                "cors.origins[2]",
                "cors.methods[1]",
                "cors.headers[0]"
            ]
        );
    }
}
