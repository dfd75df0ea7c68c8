//! The on-disk shape of a policy file, exactly as ops write it.
//!
//! These types only describe the YAML; they check nothing beyond types and field names
//! (`deny_unknown_fields` everywhere, so a typo is an error). [`super::compile`] turns them
//! into the validated model the gateway runs on. Every field is documented in `docs/POLICY.md`.

use std::time::Duration;

use serde::Deserialize;

/// `environment:`: decides defaults and how strict `check` is. The type is shared with
/// gardien-backend (`GARDIEN_ENVIRONMENT`) and the secrets chain.
pub use gardien_secrets::Environment;

/// `client_ip:`: how the client's address is found (see `crate::edge::client_address`).
/// A preset name (`direct`, `cloud_run`, `google_load_balancer`) or a mapping. Read by the
/// loader by hand: a string is a preset, a mapping a [`ClientIpCustomSpec`].
#[derive(Debug, Clone)]
pub enum ClientIpSpec {
    Preset(String),
    Custom(ClientIpCustomSpec),
}

/// `client_ip:` written out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIpCustomSpec {
    /// `peer` (the socket peer) or `x_forwarded_for`.
    pub from: ClientIpFrom,
    /// With `x_forwarded_for`: how many entries the platform appends to the header; the
    /// client is that many entries from the right. Required there, 1 to 16.
    #[serde(default)]
    pub trusted_hops: Option<u64>,
    /// With `x_forwarded_for`: CIDRs of the peers allowed to forward; empty: any peer.
    #[serde(default)]
    pub trusted_peers: Vec<String>,
}

/// `client_ip.from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientIpFrom {
    Peer,
    XForwardedFor,
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
    /// An HTTP health check; without one, readiness only opens a TCP connection.
    #[serde(default)]
    pub health: Option<HealthSpec>,
}

/// `upstreams.<name>.health`: `GET path` must answer 2xx (see `crate::upstream_health`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Path (and query) requested, starting with `/`.
    pub path: String,
    /// Time between the starts of two probes. Default 5s.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// The whole probe must end within this, or it fails. Default 1s; less than `interval`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Consecutive passing probes that bring a down upstream up. Default 1.
    pub healthy_after: Option<u32>,
    /// Consecutive failing probes that take an up upstream down. Default 2.
    pub unhealthy_after: Option<u32>,
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
    /// `public`: no token needed. Absent or `required`: a valid JWT is needed.
    #[serde(default)]
    pub auth: Option<RouteAuthSpec>,
    /// Roles the token must carry (any one of them); implies `auth: required`.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

/// `routes[].auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuthSpec {
    Public,
    Required,
}

/// `jwt:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    /// Trusted issuers; the token's `iss` picks one.
    #[serde(default)]
    pub issuers: Vec<IssuerSpec>,
    /// How many entries `issuers` had in the file, readable or not (set by the loader).
    #[serde(skip)]
    pub issuers_declared: usize,
    /// Claim → header sent upstream. Default `{sub: X-User-Id, email: X-User-Email,
    /// roles: X-User-Roles}`.
    #[serde(default)]
    pub forward_claims: Option<std::collections::BTreeMap<String, String>>,
    /// The claim holding roles (a string or an array of strings). Default `roles`.
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Verified tokens remembered, so a token sent again skips the signature check.
    /// Default 10000; 0 turns the cache off.
    #[serde(default)]
    pub cache_size: Option<usize>,
    /// Name of the secret keying `X-Gardien-Identity`. Default `GARDIEN_INTERNAL_SECRET`.
    #[serde(default)]
    pub identity_secret: Option<String>,
    /// After a rotation of that secret, how long gardien keeps signing with the value
    /// before it, so every verifier has refreshed first. Default twice
    /// `SECRETS_REFRESH_INTERVAL`.
    #[serde(default, with = "humantime_serde")]
    pub identity_rotation_delay: Option<Duration>,
}

/// One entry of `jwt.issuers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// Compared exactly with the token's `iss`.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed `alg` values. `none` is never allowed.
    pub algorithms: Vec<String>,
    /// Where the issuer publishes its keys (asymmetric algorithms).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Name of the secret holding the HMAC key (HS256/HS384/HS512).
    #[serde(default)]
    pub secret: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`. Default 30s.
    #[serde(default, with = "humantime_serde")]
    pub leeway: Option<Duration>,
    /// Claims every token must carry, beyond `exp`.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Longest time between two JWKS fetches; `Cache-Control: max-age` may shorten it
    /// (not below 30s). Default 10m.
    #[serde(default, with = "humantime_serde")]
    pub jwks_refresh: Option<Duration>,
    /// Shortest time between two fetches caused by unknown `kid`s. Default 10s.
    #[serde(default, with = "humantime_serde")]
    pub jwks_cooldown: Option<Duration>,
    /// Age past which `/readyz` reports the key set as stale. Default 1h.
    #[serde(default, with = "humantime_serde")]
    pub jwks_stale_after: Option<Duration>,
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
    /// Tokio's work-stealing scheduler across the threads (Pingora's default), or one
    /// single-threaded runtime per thread, each connection staying on its thread. Default
    /// true (docs/BENCHMARKS.md compares both).
    pub work_stealing: Option<bool>,
    /// On SIGTERM, how long to keep serving in-flight requests. Default 5s.
    #[serde(default, with = "humantime_serde")]
    pub graceful_shutdown_timeout: Option<Duration>,
    /// Largest total size of a request's header names and values; larger requests get
    /// `431`. Default 65536 (64 KiB).
    pub max_header_bytes: Option<usize>,
    /// Reload the policy when its file changes (SIGHUP always reloads). Default true.
    pub watch_policy: Option<bool>,
    /// The whole request head must arrive within this, or `408` and close. Default 10s.
    #[serde(default, with = "humantime_serde")]
    pub request_header_timeout: Option<Duration>,
    /// How long an idle keep-alive connection stays open; `0s` turns keep-alive off.
    /// Default 60s.
    #[serde(default, with = "humantime_serde")]
    pub keepalive_timeout: Option<Duration>,
    /// Open client connections at most; past it new ones are closed at accept. Default:
    /// no limit.
    pub max_connections: Option<usize>,
    /// The access log (one line per request, Cloud Logging's `httpRequest`). Default off.
    pub access_log: Option<AccessLogSpec>,
    /// Also serve cleartext HTTP/2 with prior knowledge (h2c) on `listen`, next to
    /// HTTP/1.1: what Cloud Run's end-to-end HTTP/2 sends. Default false.
    pub h2c: Option<bool>,
}

/// `server.access_log`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    /// Share of requests logged, 0 to 1 (`1.0`: every request). Default 0.
    pub sample: Option<f64>,
}

/// `rate_limits:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsSpec {
    /// `local` (in this process) or `redis` (shared by every replica). Default `local`.
    #[serde(default)]
    pub store: Option<StoreSpec>,
    /// Settings of `store: redis`.
    #[serde(default)]
    pub redis: Option<RedisSpec>,
    /// Keys tracked per rule in memory at most; the least recently used go first. Default
    /// 100000.
    #[serde(default)]
    pub max_keys: Option<usize>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// The adaptive controller; absent: rates stay as written.
    #[serde(default)]
    pub adaptive: Option<AdaptiveSpec>,
}

/// `rate_limits.store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreSpec {
    Local,
    Redis,
}

/// `rate_limits.redis`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://…` for TLS. Required with
    /// `store: redis`.
    pub url: Option<String>,
    /// PEM file of the CA that signed the server's certificate (`rediss://` only), e.g.
    /// Memorystore's server CA. Default: the system's roots.
    pub ca_file: Option<String>,
    /// Name of the secret holding the AUTH password (read through the secrets chain), so
    /// the password stays out of the URL. A user name, for ACLs, stays in the URL.
    pub password_secret: Option<String>,
    /// Gateway replicas sharing the limits: while Redis is unreachable each one allows
    /// `rate / replicas` locally. Default 1.
    pub replicas: Option<u32>,
    /// Longest wait for one decision before falling back to local limiting. Default 50ms.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Prefix of the Redis keys. Default `gardien:rl`.
    pub key_prefix: Option<String>,
}

/// One entry of `rate_limits.rules`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// Route names the rule applies to; every route when absent.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    /// `ip`, `user`, `api_key`, `route`, or a list of them (combined).
    pub key: KeySpec,
    /// The header holding the API key, for `key: api_key`. Default `X-Api-Key`.
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// `5/min`, `100/s`, `1000/h`, `20/10s`.
    pub rate: String,
    /// Requests allowed at once above the steady rate. Default: the rate's count.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Send `RateLimit-Policy` / `RateLimit` headers for this rule. Default true.
    #[serde(default)]
    pub headers: Option<bool>,
}

/// `rules[].key`: one part or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeySpec {
    One(String),
    Many(Vec<String>),
}

/// `rate_limits.adaptive`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveSpec {
    /// p95 latency above which rates are lowered. Default 250ms.
    #[serde(default, with = "humantime_serde")]
    pub latency_target: Option<Duration>,
    /// Share of 5xx and connection errors above which rates are lowered. Default 0.05.
    pub error_ratio_target: Option<f64>,
    /// Lowest factor applied to rates. Default 0.2.
    pub min_factor: Option<f64>,
    /// Multiplicative decrease when unhealthy. Default 0.5.
    pub decrease: Option<f64>,
    /// Additive increase per interval when healthy. Default 0.05.
    pub increase: Option<f64>,
    /// Sliding window the controller looks at. Default 10s.
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// How often the controller decides. Default 1s.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Fewest requests in the window for a decision. Default 20.
    pub min_requests: Option<u64>,
    /// Requests in flight per upstream at most; beyond, `503` at once. Default 1024.
    pub max_in_flight: Option<usize>,
}
