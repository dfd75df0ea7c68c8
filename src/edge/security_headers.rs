//! Security response headers, set per environment by the policy.
//!
//! They are added to every response, upstream or gateway-generated, replacing any value the
//! upstream sent (the gateway is the authority), and the headers that reveal the upstream's
//! software (`Server`, `X-Powered-By`) are removed.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::policy::schema::{Environment, SecurityHeadersSpec};
use crate::policy::Diagnostics;

/// The value that turns a header off.
const OFF: &str = "off";

/// The validated `security_headers:` section.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

/// One header the policy can set: its field name, header name, and default by environment.
struct Field {
    field: &'static str,
    header: &'static str,
    default: fn(Environment) -> Option<&'static str>,
    pick: fn(&SecurityHeadersSpec) -> Option<&String>,
}

const FIELDS: [Field; 7] = [
    Field {
        field: "strict_transport_security",
        header: "strict-transport-security",
        // Never on dev: a browser that sees HSTS for localhost pins it to https.
        default: |env| match env {
            Environment::Dev => None,
            Environment::Staging => Some("max-age=86400"),
            Environment::Production => Some("max-age=63072000; includeSubDomains"),
        },
        pick: |s| s.strict_transport_security.as_ref(),
    },
    Field {
        field: "content_security_policy",
        header: "content-security-policy",
        // An API returns data, never documents: nothing may load, nothing may frame it.
        default: |_| Some("default-src 'none'; frame-ancestors 'none'"),
        pick: |s| s.content_security_policy.as_ref(),
    },
    Field {
        field: "frame_options",
        header: "x-frame-options",
        default: |_| Some("DENY"),
        pick: |s| s.frame_options.as_ref(),
    },
    Field {
        field: "referrer_policy",
        header: "referrer-policy",
        default: |_| Some("no-referrer"),
        pick: |s| s.referrer_policy.as_ref(),
    },
    Field {
        field: "permissions_policy",
        header: "permissions-policy",
        default: |_| Some("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
        pick: |s| s.permissions_policy.as_ref(),
    },
    Field {
        field: "cross_origin_opener_policy",
        header: "cross-origin-opener-policy",
        default: |_| Some("same-origin"),
        pick: |s| s.cross_origin_opener_policy.as_ref(),
    },
    Field {
        field: "content_type_options",
        header: "x-content-type-options",
        default: |_| Some("nosniff"),
        pick: |s| s.content_type_options.as_ref(),
    },
];

impl SecurityHeaders {
    /// Validates `security_headers:` for `environment`, filling in the documented defaults.
    pub fn compile(
        spec: &SecurityHeadersSpec,
        environment: Environment,
        diag: &mut Diagnostics,
    ) -> Option<Self> {
        let errors_before = diag.errors().len();
        let mut set = Vec::with_capacity(FIELDS.len());
        for field in &FIELDS {
            let path = format!("security_headers.{}", field.field);
            let value = match (field.pick)(spec) {
                Some(v) if v.trim() == OFF => None,
                Some(v) => Some(v.trim().to_owned()),
                None => (field.default)(environment).map(str::to_owned),
            };
            let Some(value) = value else { continue };
            // `HeaderValue` admits obs-text (bytes ≥ 0x80); a policy value must be plain
            // visible ASCII so every client reads it the same way.
            let visible_ascii = value.bytes().all(|b| (0x20..0x7f).contains(&b));
            match HeaderValue::from_str(&value) {
                Ok(v) if !value.is_empty() && visible_ascii => {
                    set.push((HeaderName::from_static(field.header), v));
                }
                _ => diag.error(
                    path,
                    "not a valid header value (visible ASCII only; use `off` to send none)",
                ),
            }
        }
        Self::check_environment(spec, environment, diag);

        let names = spec
            .remove
            .clone()
            .unwrap_or_else(|| vec!["Server".into(), "X-Powered-By".into()]);
        let mut remove = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            match HeaderName::from_bytes(name.trim().as_bytes()) {
                Ok(name) => remove.push(name),
                Err(_) => diag.error(
                    format!("security_headers.remove[{i}]"),
                    format!("`{name}` is not a valid header name"),
                ),
            }
        }
        (diag.errors().len() == errors_before).then_some(SecurityHeaders { set, remove })
    }

    /// HSTS belongs to staging and production; on dev it would pin localhost to https.
    fn check_environment(
        spec: &SecurityHeadersSpec,
        environment: Environment,
        diag: &mut Diagnostics,
    ) {
        let hsts = spec.strict_transport_security.as_deref().map(str::trim);
        match (environment, hsts) {
            (Environment::Dev, Some(v)) if v != OFF => diag.warn(
                "security_headers.strict_transport_security",
                "HSTS on a dev policy makes browsers refuse plain http://localhost for max-age",
            ),
            (Environment::Staging | Environment::Production, Some(OFF)) => diag.error(
                "security_headers.strict_transport_security",
                format!(
                    "HSTS cannot be turned off in {}: it is what keeps browsers on https",
                    environment.as_str()
                ),
            ),
            _ => {}
        }
        // Preloading is a request to browser vendors to hard-code the domain as https-only:
        // undoing it takes months and `max-age` keeps it for years. gardien serves an API
        // host, where nothing needs it; only an operator who means it writes it.
        let preload = hsts.is_some_and(|v| {
            v.split(';')
                .any(|directive| directive.trim().eq_ignore_ascii_case("preload"))
        });
        if preload {
            diag.warn(
                "security_headers.strict_transport_security",
                "`preload` asks browsers to hard-code this domain (and, with \
                 includeSubDomains, every subdomain) as https-only; removal from the preload \
                 lists takes months and max-age keeps it for up to two years. Keep it only if \
                 the whole domain is meant to be https forever (docs/POLICY.md)",
            );
        }
    }

    /// Removes the upstream's identifying headers and sets the security headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The header names this policy sets, for `/status` and the start-up summary.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.set.iter().map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(
        spec: &SecurityHeadersSpec,
        env: Environment,
    ) -> (Option<SecurityHeaders>, Diagnostics) {
        let mut diag = Diagnostics::default();
        (SecurityHeaders::compile(spec, env, &mut diag), diag)
    }

    fn applied(headers: &SecurityHeaders) -> HeaderMap {
        let mut response = HeaderMap::new();
        response.insert("server", HeaderValue::from_static("Express"));
        response.insert("x-powered-by", HeaderValue::from_static("Express"));
        response.insert("x-frame-options", HeaderValue::from_static("ALLOWALL"));
        headers.apply(&mut response);
        response
    }

    #[test]
    fn defaults_per_environment() {
        let (dev, _) = compile(&SecurityHeadersSpec::default(), Environment::Dev);
        let dev = applied(&dev.expect("dev"));
        assert!(dev.get("strict-transport-security").is_none());
        assert_eq!(
            dev.get("x-content-type-options").expect("nosniff"),
            "nosniff"
        );
        assert_eq!(dev.get_all("x-frame-options").iter().count(), 1);
        assert_eq!(dev.get("x-frame-options").expect("xfo"), "DENY");
        assert!(dev.get("server").is_none());
        assert!(dev.get("x-powered-by").is_none());

        let (prod, _) = compile(&SecurityHeadersSpec::default(), Environment::Production);
        let prod = applied(&prod.expect("prod"));
        assert!(prod
            .get("strict-transport-security")
            .expect("hsts")
            .to_str()
            .expect("ascii")
            .contains("max-age=63072000"));
    }

    #[test]
    fn off_disables_and_values_override() {
        let spec = SecurityHeadersSpec {
            frame_options: Some("off".into()),
            referrer_policy: Some("strict-origin".into()),
            ..Default::default()
        };
        let (headers, _) = compile(&spec, Environment::Staging);
        let response = applied(&headers.expect("compiles"));
        assert_eq!(
            response.get("x-frame-options").expect("upstream's kept"),
            "ALLOWALL",
            "`off`: the gateway neither sets nor removes the header"
        );
        assert_eq!(
            response.get("referrer-policy").expect("rp"),
            "strict-origin"
        );
    }

    #[test]
    fn hsts_cannot_be_off_in_production_and_warns_in_dev() {
        let spec = SecurityHeadersSpec {
            strict_transport_security: Some("off".into()),
            ..Default::default()
        };
        let (headers, diag) = compile(&spec, Environment::Production);
        assert!(headers.is_none());
        assert_eq!(
            diag.errors()[0].path,
            "security_headers.strict_transport_security"
        );

        let spec = SecurityHeadersSpec {
            strict_transport_security: Some("max-age=60".into()),
            ..Default::default()
        };
        let (headers, diag) = compile(&spec, Environment::Dev);
        assert!(headers.is_some());
        assert_eq!(diag.warnings().len(), 1);
    }

    #[test]
    fn hsts_preload_is_allowed_with_a_warning() {
        let spec = SecurityHeadersSpec {
            strict_transport_security: Some("max-age=63072000; includeSubDomains; preload".into()),
            ..Default::default()
        };
        let (headers, diag) = compile(&spec, Environment::Production);
        assert!(headers.is_some());
        assert_eq!(diag.warnings().len(), 1);
        assert!(diag.warnings()[0].message.contains("preload"));
        let spec = SecurityHeadersSpec {
            strict_transport_security: Some("max-age=63072000; includeSubDomains".into()),
            ..Default::default()
        };
        let (_, diag) = compile(&spec, Environment::Production);
        assert!(diag.warnings().is_empty());
    }

    #[test]
    fn bad_values_are_reported_with_their_paths() {
        let spec = SecurityHeadersSpec {
            content_security_policy: Some("default-src\n'none'".into()),
            permissions_policy: Some("caf\u{e9}".into()),
            remove: Some(vec!["Bad Header".into()]),
            ..Default::default()
        };
        let (headers, diag) = compile(&spec, Environment::Dev);
        assert!(headers.is_none());
        let paths: Vec<_> = diag.errors().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "security_headers.content_security_policy",
                "security_headers.permissions_policy",
                "security_headers.remove[0]"
            ]
        );
    }
}
