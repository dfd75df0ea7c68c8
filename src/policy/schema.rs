//! The on-disk shape of a policy file, exactly as ops write it.
//!
//! These types only describe the YAML; they check nothing beyond types and field names
//! (`deny_unknown_fields` everywhere, so a typo is an error). [`super::compile`] turns them
//! into the validated model the gateway runs on. Every field is documented in `docs/POLICY.md`.

use std::time::Duration;

use serde::Deserialize;

/// `environment:`: decides defaults and how strict `check` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Dev,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

/// One entry of `upstreams:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// `http://host:port` or `https://host[:port]`; no path.
    pub url: String,
    /// Time allowed to open a TCP (and TLS) connection. Default 5s.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// Longest wait for the upstream to send (part of) its response. Default 60s.
    #[serde(default, with = "humantime_serde")]
    pub read_timeout: Option<Duration>,
    /// Longest wait while sending the request to the upstream. Default 60s.
    #[serde(default, with = "humantime_serde")]
    pub write_timeout: Option<Duration>,
    /// How long an idle keep-alive connection stays in the pool. Default 60s.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Send the client's `Host` instead of the upstream's own. Default false (Cloud Run
    /// routes on `Host`, so it must be the upstream's).
    #[serde(default)]
    pub preserve_host: bool,
    /// Verify the upstream's TLS certificate (https only). Default true.
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// How often a host name is resolved again. Default 30s.
    #[serde(default, with = "humantime_serde")]
    pub dns_refresh: Option<Duration>,
}

/// One entry of `routes:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: String,
    /// Path prefix, segment-aware: `/api/reports` matches `/api/reports` and
    /// `/api/reports/1`, not `/api/reportsx`.
    pub prefix: String,
    /// Name of an entry in `upstreams:`.
    pub upstream: String,
    /// Methods this route takes; any method when absent.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
}

/// `cors:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    /// Exact origins (`https://app.example.com`), subdomain patterns
    /// (`https://*.example.com`), `null` (literally), or `*` (only without credentials).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Names of environment variables holding origins (comma-separated lists allowed).
    #[serde(default)]
    pub origins_from_env: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true`. Default false.
    #[serde(default)]
    pub credentials: bool,
    /// Methods a preflight may ask for. Default GET, HEAD, POST.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Request headers a preflight may ask for (case-insensitive).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers the browser lets the page read.
    #[serde(default)]
    pub expose: Vec<String>,
    /// How long the browser may cache a preflight answer. Default 600s (Chromium caps at 7200s).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

/// `security_headers:`. A field left out gets the documented default; the value `off`
/// sends no such header.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityHeadersSpec {
    pub strict_transport_security: Option<String>,
    pub content_security_policy: Option<String>,
    pub frame_options: Option<String>,
    pub referrer_policy: Option<String>,
    pub permissions_policy: Option<String>,
    pub cross_origin_opener_policy: Option<String>,
    pub content_type_options: Option<String>,
    /// Upstream response headers to remove. Default `[Server, X-Powered-By]`.
    pub remove: Option<Vec<String>>,
}

/// `server:`: process settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Worker threads of the proxy. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// On SIGTERM, how long to keep serving in-flight requests. Default 5s.
    #[serde(default, with = "humantime_serde")]
    pub graceful_shutdown_timeout: Option<Duration>,
    /// Largest total size of a request's header names and values; larger requests get
    /// `431`. Default 65536 (64 KiB).
    pub max_header_bytes: Option<usize>,
    /// Reload the policy when its file changes (SIGHUP always reloads). Default true.
    pub watch_policy: Option<bool>,
}
