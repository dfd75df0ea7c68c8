//! Reading a policy file: YAML → `${VAR}` expansion → sections → validated [`Policy`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::diagnostics::{Diagnostics, PolicyError, Problem};
use super::env::{expand, Env};
use super::model::{Policy, ServerSettings};
use super::schema::{
    ClientIpSpec, CorsSpec, Environment, JwtSpec, RateLimitsSpec, RouteSpec, SecurityHeadersSpec,
    ServerSpec, UpstreamSpec,
};
use crate::edge::adaptive::{AdaptiveSettings, UpstreamLoad};
use crate::edge::client_address::ClientAddressPolicy;
use crate::edge::cors::CorsPolicy;
use crate::edge::identity::IdentityPolicy;
use crate::edge::jwt::JwtPolicy;
use crate::edge::rate_limit::RateLimits;
use crate::edge::security_headers::SecurityHeaders;
use crate::routing::Router;
use crate::secrets::{EnvSecrets, SecretLookup};
use crate::upstream::Upstream;

/// The top-level keys a policy may have.
const SECTIONS: [&str; 11] = [
    "environment",
    "listen",
    "admin_listen",
    "client_ip",
    "upstreams",
    "routes",
    "cors",
    "security_headers",
    "jwt",
    "rate_limits",
    "server",
];

const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
const DEFAULT_REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// A policy that loaded, with the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub policy: Policy,
    pub warnings: Vec<Problem>,
}

/// Reads and validates the policy at `path`, secrets read from `env` too.
pub fn load_file(path: &Path, env: &dyn Env) -> Result<Loaded, PolicyError> {
    load_file_with_secrets(path, env, &EnvSecrets(env))
}

/// Reads and validates the policy at `path`, secrets read from `secrets` (the store).
pub fn load_file_with_secrets(
    path: &Path,
    env: &dyn Env,
    secrets: &dyn SecretLookup,
) -> Result<Loaded, PolicyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_with_secrets(&text, env, secrets),
        Err(e) => Err(PolicyError {
            problems: vec![Problem {
                path: "policy".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }],
            warnings: Vec::new(),
        }),
    }
}

/// Validates a policy given as YAML text, secrets read from `env` too.
pub fn parse(text: &str, env: &dyn Env) -> Result<Loaded, PolicyError> {
    parse_with_secrets(text, env, &EnvSecrets(env))
}

/// Validates a policy given as YAML text: variables from `env`, secrets from `secrets`.
pub fn parse_with_secrets(
    text: &str,
    env: &dyn Env,
    secrets: &dyn SecretLookup,
) -> Result<Loaded, PolicyError> {
    let mut diag = Diagnostics::default();
    let policy = match serde_yaml::from_str::<Value>(text) {
        Ok(mut root) => {
            expand_env(&mut root, &mut String::new(), env, &mut diag);
            let sections = read_sections(root, &mut diag);
            compile(sections, env, secrets, &mut diag)
        }
        Err(e) => {
            diag.error("policy", format!("invalid YAML: {e}"));
            None
        }
    };
    let (errors, warnings) = diag.into_parts();
    match policy {
        Some(policy) if errors.is_empty() => Ok(Loaded { policy, warnings }),
        _ => Err(PolicyError {
            problems: if errors.is_empty() {
                vec![Problem {
                    path: "policy".into(),
                    message: "the policy is incomplete".into(),
                }]
            } else {
                errors
            },
            warnings,
        }),
    }
}

/// The policy's environment and `jwt:` section, read as far as the text allows (problems
/// are left to [`parse`]): what the secrets the policy needs are worked out from before it
/// compiles. `None` when the text is not YAML.
pub fn environment_and_jwt(text: &str, env: &dyn Env) -> Option<(Environment, Option<JwtSpec>)> {
    let mut root = serde_yaml::from_str::<Value>(text).ok()?;
    let mut ignored = Diagnostics::default();
    expand_env(&mut root, &mut String::new(), env, &mut ignored);
    let sections = read_sections(root, &mut ignored);
    Some((
        sections.environment.unwrap_or(Environment::Production),
        sections.jwt,
    ))
}

/// `rate_limits.redis.password_secret` when the store is `redis`, read as far as the text
/// allows (problems are left to [`parse`]): a secret to resolve before the policy compiles.
pub fn redis_password_secret(text: &str, env: &dyn Env) -> Option<String> {
    let mut root = serde_yaml::from_str::<Value>(text).ok()?;
    let mut ignored = Diagnostics::default();
    expand_env(&mut root, &mut String::new(), env, &mut ignored);
    let limits = read_sections(root, &mut ignored).rate_limits;
    if limits.store != Some(crate::policy::schema::StoreSpec::Redis) {
        return None;
    }
    limits.redis?.password_secret
}

/// Replaces `${VAR}` references in every string value (never in keys). A value that was
/// exactly one reference is read again as a YAML scalar, so `port: "${PORT}"` can be a
/// number and `credentials: "${CORS_CREDENTIALS:-true}"` a boolean.
fn expand_env(value: &mut Value, path: &mut String, env: &dyn Env, diag: &mut Diagnostics) {
    match value {
        Value::String(text) => match expand(text, env) {
            Ok(expanded) => {
                let scalar = expanded
                    .whole_reference
                    .then(|| serde_yaml::from_str::<Value>(&expanded.value).ok())
                    .flatten()
                    .filter(|v| matches!(v, Value::Bool(_) | Value::Number(_)));
                *value = scalar.unwrap_or(Value::String(expanded.value));
            }
            Err(errors) => {
                for error in errors {
                    diag.error(display_path(path), error.to_string());
                }
            }
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(item, path, env, diag);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key.as_str().unwrap_or("?"));
                expand_env(item, path, env, diag);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, env, diag),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "policy".into()
    } else {
        path.to_owned()
    }
}

/// The sections of a policy, each read on its own so one bad section does not hide the
/// problems of the others.
#[derive(Default)]
struct Sections {
    environment: Option<Environment>,
    listen: Option<String>,
    admin_listen: Option<String>,
    client_ip: Option<ClientIpSpec>,
    upstreams: Vec<(String, Option<UpstreamSpec>)>,
    routes: Vec<RouteSpec>,
    /// `None`: no `routes:` key; `Some(n)`: n entries, some of which may have failed to read.
    routes_declared: Option<usize>,
    cors: CorsSpec,
    security_headers: SecurityHeadersSpec,
    jwt: Option<JwtSpec>,
    rate_limits: RateLimitsSpec,
    server: ServerSpec,
}

fn read_sections(root: Value, diag: &mut Diagnostics) -> Sections {
    let mut s = Sections::default();
    let map = match root {
        Value::Mapping(map) => map,
        Value::Null => {
            diag.error("policy", "the file is empty");
            return s;
        }
        _ => {
            diag.error(
                "policy",
                "a policy is a YAML mapping of sections (environment:, listen:, …)",
            );
            return s;
        }
    };
    for (key, value) in map {
        let Some(key) = key.as_str().map(str::to_owned) else {
            diag.error("policy", "top-level keys are names");
            continue;
        };
        match key.as_str() {
            "environment" => s.environment = section(value, "environment", diag),
            "listen" => s.listen = section(value, "listen", diag),
            "admin_listen" => s.admin_listen = section(value, "admin_listen", diag),
            "client_ip" => s.client_ip = read_client_ip(value, diag),
            "trusted_proxies" => diag.error(
                "trusted_proxies",
                "replaced by `client_ip`, which says how the client address is found: \
                 `client_ip: google_load_balancer` behind Google's external Application Load \
                 Balancer, `client_ip: cloud_run` on Cloud Run, `client_ip: direct` when \
                 exposed directly, or `{ from: x_forwarded_for, trusted_hops: N, \
                 trusted_peers: [CIDR…] }` (docs/POLICY.md#client_ip)",
            ),
            "upstreams" => s.upstreams = read_upstreams(value, diag),
            "routes" => {
                s.routes_declared = Some(value.as_sequence().map_or(0, Vec::len));
                s.routes = read_routes(value, diag);
            }
            "cors" => s.cors = section(value, "cors", diag).unwrap_or_default(),
            "security_headers" => {
                s.security_headers = section(value, "security_headers", diag).unwrap_or_default()
            }
            "server" => s.server = section(value, "server", diag).unwrap_or_default(),
            "jwt" => s.jwt = Some(read_jwt(value, diag)),
            "rate_limits" => {
                s.rate_limits = section(value, "rate_limits", diag).unwrap_or_default()
            }
            other => diag.error(
                other,
                format!(
                    "unknown field `{other}`{}; expected one of: {}",
                    super::suggest(other, SECTIONS),
                    SECTIONS.join(", ")
                ),
            ),
        }
    }
    for required in [
        "environment",
        "listen",
        "admin_listen",
        "upstreams",
        "routes",
    ] {
        let missing = match required {
            "environment" => s.environment.is_none(),
            "listen" => s.listen.is_none(),
            "admin_listen" => s.admin_listen.is_none(),
            "upstreams" => s.upstreams.is_empty(),
            _ => s.routes_declared.is_none(),
        };
        if missing && !diag.errors().iter().any(|p| p.path.starts_with(required)) {
            diag.error(required, "missing (required)");
        }
    }
    s
}

/// Deserializes one section, reporting each failure at `path` + the path inside it.
///
/// serde stops at the first error, but ops need every problem in one run: after an error
/// in a field of a mapping, that field is dropped and the section read again, so the other
/// fields are still read and validated (the policy is refused anyway). A field dropped
/// this way is not reported a second time as missing.
fn section<T: DeserializeOwned>(value: Value, path: &str, diag: &mut Diagnostics) -> Option<T> {
    let mut value = value;
    let mut dropped: Vec<String> = Vec::new();
    loop {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) => return Some(parsed),
            Err(error) => error,
        };
        let message = error.inner().to_string();
        let repeats_a_dropped_field = dropped
            .iter()
            .any(|field| message == format!("missing field `{field}`"));
        if repeats_a_dropped_field {
            return None;
        }
        let inner = error.path().to_string();
        let full = match inner.as_str() {
            "." => path.to_owned(),
            i if i.starts_with('[') => format!("{path}{i}"),
            i => format!("{path}.{i}"),
        };
        diag.error(full, message);
        let first_field = error
            .path()
            .iter()
            .next()
            .and_then(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                _ => None,
            });
        let removed = match (&first_field, &mut value) {
            (Some(field), Value::Mapping(map)) => map.remove(field.as_str()).is_some(),
            _ => false,
        };
        match first_field {
            Some(field) if removed => dropped.push(field),
            _ => return None,
        }
    }
}

/// `client_ip:`: a preset name or a mapping.
fn read_client_ip(value: Value, diag: &mut Diagnostics) -> Option<ClientIpSpec> {
    match value {
        Value::String(name) => Some(ClientIpSpec::Preset(name)),
        value @ Value::Mapping(_) => section(value, "client_ip", diag).map(ClientIpSpec::Custom),
        _ => {
            diag.error(
                "client_ip",
                "a preset (direct, cloud_run, google_load_balancer) or a mapping { from: peer | x_forwarded_for, trusted_hops: N }",
            );
            None
        }
    }
}

fn read_upstreams(value: Value, diag: &mut Diagnostics) -> Vec<(String, Option<UpstreamSpec>)> {
    let Value::Mapping(map) = value else {
        diag.error("upstreams", "a mapping of name → { url: … }");
        return Vec::new();
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, spec) in map {
        let Some(name) = name.as_str().map(str::to_owned) else {
            diag.error("upstreams", "upstream names are strings");
            continue;
        };
        let spec = section(spec, &format!("upstreams.{name}"), diag);
        out.push((name, spec));
    }
    out
}

/// `jwt:` with each issuer read on its own, so one issuer's typo does not hide the others
/// (nor make every protected route look unprotected).
fn read_jwt(mut value: Value, diag: &mut Diagnostics) -> JwtSpec {
    let issuers = match &mut value {
        Value::Mapping(map) => map.remove("issuers"),
        _ => None,
    };
    let mut spec: JwtSpec = section(value, "jwt", diag).unwrap_or_default();
    spec.issuers = match issuers {
        None => Vec::new(),
        Some(Value::Sequence(items)) => {
            spec.issuers_declared = items.len();
            items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| section(item, &format!("jwt.issuers[{i}]"), diag))
                .collect()
        }
        Some(_) => {
            diag.error("jwt.issuers", "a list of issuers");
            Vec::new()
        }
    };
    spec
}

fn read_routes(value: Value, diag: &mut Diagnostics) -> Vec<RouteSpec> {
    let Value::Sequence(items) = value else {
        diag.error("routes", "a list of routes, first match wins");
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| section(item, &format!("routes[{i}]"), diag))
        .collect()
}

fn compile(
    s: Sections,
    env: &dyn Env,
    secrets: &dyn SecretLookup,
    diag: &mut Diagnostics,
) -> Option<Policy> {
    let environment = s.environment.unwrap_or(Environment::Production);
    let listen = s
        .listen
        .as_deref()
        .and_then(|a| socket_addr(a, "listen", diag));
    let admin_listen = s
        .admin_listen
        .as_deref()
        .and_then(|a| socket_addr(a, "admin_listen", diag));
    if let (Some(a), Some(b)) = (listen, admin_listen) {
        // Port 0 twice is two ports the system picks, not one address twice.
        if a == b && a.port() != 0 {
            diag.error("admin_listen", "must differ from `listen`");
        }
    }
    if s.client_ip.is_none() && environment != Environment::Dev {
        diag.error(
            "client_ip",
            format!(
                "missing (required in {}): say how the client address is found, or every \
                 user behind a load balancer shares one rate-limit bucket: \
                 `google_load_balancer`, `cloud_run`, `direct`, or \
                 {{ from: x_forwarded_for, trusted_hops: N }} (docs/POLICY.md#client_ip)",
                environment.as_str()
            ),
        );
    }
    let client_ip = ClientAddressPolicy::compile(s.client_ip.as_ref(), diag);

    let names: Vec<String> = s.upstreams.iter().map(|(name, _)| name.clone()).collect();
    let mut upstreams = Vec::with_capacity(s.upstreams.len());
    for (name, spec) in &s.upstreams {
        if let Some(upstream) = spec
            .as_ref()
            .and_then(|spec| Upstream::compile(name, spec, diag))
        {
            upstreams.push(upstream);
        }
    }
    let jwt = s
        .jwt
        .as_ref()
        .map(|spec| JwtPolicy::compile(spec, environment, secrets, diag));
    let identity = IdentityPolicy::compile(
        s.jwt.as_ref().and_then(|j| j.forward_claims.as_ref()),
        s.jwt.as_ref().and_then(|j| j.roles_claim.as_deref()),
        s.jwt.as_ref().and_then(|j| j.identity_secret.as_deref()),
        s.jwt.as_ref().and_then(|j| j.identity_rotation_delay),
        environment,
        secrets,
        diag,
    );
    // Compile the routes that could be read; when none could, their errors are already
    // listed and "at least one route" would only add noise.
    let has_issuers = s.jwt.as_ref().is_some_and(|j| j.issuers_declared > 0);
    let router = match s.routes_declared {
        Some(declared) if declared == 0 || !s.routes.is_empty() => {
            Router::compile(&s.routes, &names, has_issuers, diag)
        }
        _ => Router::default(),
    };
    let route_names: Vec<String> = s.routes.iter().map(|r| r.name.clone()).collect();
    let rate_limits = RateLimits::compile(&s.rate_limits, &route_names, env, secrets, diag);
    let adaptive = s
        .rate_limits
        .adaptive
        .as_ref()
        .map(|spec| AdaptiveSettings::compile(spec, diag));
    let loads = names.iter().map(|name| UpstreamLoad::new(name)).collect();
    let cors = CorsPolicy::compile(&s.cors, environment, env, diag);
    let security_headers = SecurityHeaders::compile(&s.security_headers, environment, diag);
    let server = server_settings(&s.server, diag);

    if diag.has_errors() || upstreams.len() != names.len() {
        return None;
    }
    Some(Policy {
        environment: s.environment?,
        listen: listen?,
        admin_listen: admin_listen?,
        client_ip,
        upstreams,
        router,
        cors: cors?,
        security_headers: security_headers?,
        jwt,
        identity,
        rate_limits,
        adaptive,
        loads,
        server,
    })
}

fn socket_addr(text: &str, path: &str, diag: &mut Diagnostics) -> Option<SocketAddr> {
    match text.trim().parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            diag.error(
                path,
                format!("`{text}` is not a listen address: write ip:port, as 127.0.0.1:8080 or 0.0.0.0:8080"),
            );
            None
        }
    }
}

fn server_settings(spec: &ServerSpec, diag: &mut Diagnostics) -> ServerSettings {
    let threads = match spec.threads {
        Some(0) => {
            diag.error("server.threads", "must be at least 1");
            1
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let max_header_bytes = spec.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if max_header_bytes < 1024 {
        diag.error(
            "server.max_header_bytes",
            "must be at least 1024: browsers alone send several hundred bytes",
        );
    }
    let request_header_timeout = spec
        .request_header_timeout
        .unwrap_or(DEFAULT_REQUEST_HEADER_TIMEOUT);
    if request_header_timeout < Duration::from_millis(100) {
        diag.error(
            "server.request_header_timeout",
            "must be at least 100ms: slower clients would never get a request through",
        );
    }
    // Pingora counts keep-alive in whole seconds.
    let keepalive_timeout = spec.keepalive_timeout.unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT);
    if !keepalive_timeout.is_zero() && keepalive_timeout.subsec_nanos() != 0 {
        diag.error(
            "server.keepalive_timeout",
            "must be whole seconds (as 5s or 60s), or 0s to turn keep-alive off",
        );
    }
    if spec.max_connections == Some(0) {
        diag.error(
            "server.max_connections",
            "must be at least 1 (leave it out for no limit)",
        );
    }
    let access_log_sample = spec
        .access_log
        .as_ref()
        .and_then(|a| a.sample)
        .unwrap_or(0.0);
    if !(0.0..=1.0).contains(&access_log_sample) {
        diag.error(
            "server.access_log.sample",
            "must be between 0 (no access log) and 1 (every request)",
        );
    }
    ServerSettings {
        access_log_sample: access_log_sample.clamp(0.0, 1.0),
        max_header_bytes,
        request_header_timeout,
        keepalive_timeout: (!keepalive_timeout.is_zero()).then_some(keepalive_timeout),
        max_connections: spec.max_connections,
        watch_policy: spec.watch_policy.unwrap_or(true),
        h2c: spec.h2c.unwrap_or(false),
        threads,
        work_stealing: spec.work_stealing.unwrap_or(true),
        graceful_shutdown_timeout: spec
            .graceful_shutdown_timeout
            .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const MINIMAL: &str = r#"
environment: dev
listen: "127.0.0.1:8080"
admin_listen: "127.0.0.1:9090"
upstreams:
  api: { url: "http://127.0.0.1:3000" }
routes:
  - { name: api, prefix: /api/, upstream: api, auth: public }
cors:
  origins: ["http://localhost:5173"]
"#;

    fn no_env() -> HashMap<String, String> {
        HashMap::new()
    }

    fn problems(text: &str, env: &HashMap<String, String>) -> Vec<(String, String)> {
        match parse(text, env) {
            Ok(_) => panic!("policy should be refused"),
            Err(e) => e
                .problems
                .into_iter()
                .map(|p| (p.path, p.message))
                .collect(),
        }
    }

    #[test]
    fn minimal_policy_loads() {
        let loaded = parse(MINIMAL, &no_env()).expect("valid");
        assert_eq!(loaded.policy.environment, Environment::Dev);
        assert_eq!(loaded.policy.router.routes().len(), 1);
    }

    #[test]
    fn typos_are_errors_with_suggestions() {
        let text = MINIMAL
            .replace("cors:\n  origins:", "cors:\n  orgins:")
            .replace("routes:", "routs:");
        let found = problems(&text, &no_env());
        let paths: Vec<_> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"routs"), "{found:?}");
        assert!(paths.contains(&"cors.orgins"), "{found:?}");
        let routs = &found.iter().find(|(p, _)| p == "routs").expect("routs").1;
        assert!(routs.contains("did you mean `routes`"), "{routs}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let text = MINIMAL.replace(
            "upstreams:\n  api: { url: \"http://127.0.0.1:3000\" }",
            "upstreams:\n  api: { url: \"http://127.0.0.1:3000\", connect_timeout: fast }",
        ) + "server: { threads: many }\n";
        let found = problems(&text, &no_env());
        let paths: Vec<_> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec!["upstreams.api.connect_timeout", "server.threads"],
            "{found:?}"
        );
    }

    #[test]
    fn every_problem_is_listed_in_one_run() {
        let text = r#"
environment: dev
listen: "${GARDIEN_LISTEN}"
admin_listen: "nowhere"
upstreams:
  api: { url: "http://127.0.0.1:3000" }
routes:
  - { name: api, prefix: /api/, upstream: apii, auth: public }
cors:
  origins: ["https://*", "*.com", "https://a.com/path"]
"#;
        let found = problems(text, &no_env());
        let paths: Vec<_> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "listen",
                "admin_listen",
                "routes[0].upstream",
                "cors.origins[0]",
                "cors.origins[1]",
                "cors.origins[2]"
            ],
            "{found:?}"
        );
        assert!(found[0].1.contains("GARDIEN_LISTEN"));
    }

    #[test]
    fn whole_references_become_numbers_and_booleans() {
        let text = MINIMAL.to_owned() + "server: { threads: \"${THREADS:-3}\" }\n";
        let text = text.replace(
            "  origins:",
            "  credentials: \"${CREDS:-true}\"\n  origins:",
        );
        let loaded = parse(&text, &no_env()).expect("valid");
        assert_eq!(loaded.policy.server.threads, 3);
    }

    #[test]
    fn environment_values_are_read() {
        let env = HashMap::from([("GARDIEN_LISTEN".to_owned(), "127.0.0.1:18080".to_owned())]);
        let text = MINIMAL.replace(
            "\"127.0.0.1:8080\"",
            "\"${GARDIEN_LISTEN:-127.0.0.1:8080}\"",
        );
        let loaded = parse(&text, &env).expect("valid");
        assert_eq!(loaded.policy.listen.port(), 18080);
    }

    #[test]
    fn invalid_yaml_and_empty_files_are_explained() {
        let found = problems("environment: [dev", &no_env());
        assert_eq!(found[0].0, "policy");
        assert!(found[0].1.contains("invalid YAML"));
        let found = problems("", &no_env());
        assert!(found[0].1.contains("empty"));
    }

    #[test]
    fn a_bad_issuer_is_reported_alone() {
        let text = MINIMAL.replace(", auth: public }", " }").to_owned()
            + "jwt:\n  issuers:\n    - { issuer: a, audiences: [x], algorithms: [RS256], jwks_urll: 'https://a/jwks' }\n";
        let found = problems(&text, &no_env());
        let paths: Vec<_> = found.iter().map(|(p, _)| p.as_str()).collect();
        // The typo, and its consequence; the protected route does not add a third error.
        assert_eq!(
            paths,
            vec!["jwt.issuers[0].jwks_urll", "jwt.issuers[0].jwks_url"],
            "{found:?}"
        );
    }

    #[test]
    fn missing_required_sections_are_named() {
        let found = problems("environment: dev\n", &no_env());
        let paths: Vec<_> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec!["listen", "admin_listen", "upstreams", "routes"],
            "{found:?}"
        );
    }

    #[test]
    fn shipped_policies_are_valid_with_their_environment() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let env = HashMap::from([
            (
                "API_UPSTREAM_URL".to_owned(),
                "https://api.example.run.app".to_owned(),
            ),
            (
                "BACKEND_UPSTREAM_URL".to_owned(),
                "http://10.0.0.5:8081".to_owned(),
            ),
            (
                "FRONTEND_URL".to_owned(),
                "https://app.example.com".to_owned(),
            ),
            (
                "FRONTEND_URL_PROD".to_owned(),
                "https://www.example.com".to_owned(),
            ),
            (
                "JWT_ISSUER".to_owned(),
                "https://id.example.com/".to_owned(),
            ),
            ("JWT_AUDIENCE".to_owned(), "api.example.com".to_owned()),
            (
                "JWKS_URL".to_owned(),
                "https://id.example.com/.well-known/jwks.json".to_owned(),
            ),
            ("GARDIEN_INTERNAL_SECRET".to_owned(), "x".repeat(48)),
            ("REDIS_URL".to_owned(), "redis://10.0.0.3:6379".to_owned()),
        ]);
        for platform in ["cloud_run", "google_load_balancer", "direct"] {
            let mut env = env.clone();
            env.insert("GARDIEN_CLIENT_IP".to_owned(), platform.to_owned());
            for name in ["dev.yaml", "staging.yaml", "production.yaml"] {
                let loaded = load_file(&root.join(name), &env)
                    .unwrap_or_else(|e| panic!("{name} on {platform}: {e}"));
                assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
                assert!(
                    loaded.policy.summary().contains(platform),
                    "{name}: {}",
                    loaded.policy.summary()
                );
            }
        }
        // Production without the platform named refuses, naming the variable.
        let refused = load_file(&root.join("production.yaml"), &env).expect_err("no platform");
        assert!(
            refused
                .problems
                .iter()
                .any(|p| p.path == "client_ip" && p.message.contains("GARDIEN_CLIENT_IP")),
            "{:?}",
            refused.problems
        );
        let dev = load_file(&root.join("dev.yaml"), &no_env()).expect("dev needs no variable");
        let warned: Vec<_> = dev.warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            warned,
            vec![
                "jwt.issuers[0].jwks_url",
                "jwt.identity_secret",
                "cors.origins_from_env[0]"
            ]
        );
        assert_eq!(dev.policy.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(dev.policy.admin_listen.to_string(), "127.0.0.1:9090");
        assert!(load_file(&root.join("production.yaml"), &no_env()).is_err());
    }

    #[test]
    fn work_stealing_is_on_unless_turned_off() {
        let server = parse(MINIMAL, &no_env()).expect("valid").policy.server;
        assert!(server.work_stealing, "Pingora's default");
        let text = MINIMAL.to_owned() + "server: { work_stealing: false }\n";
        let server = parse(&text, &no_env()).expect("valid").policy.server;
        assert!(!server.work_stealing);
        let text = MINIMAL.to_owned() + "server: { work_stealing: sometimes }\n";
        let error = parse(&text, &no_env()).expect_err("not a boolean");
        assert!(error.to_string().contains("work_stealing"), "{error}");
    }

    #[test]
    fn connection_settings_have_defaults_and_are_checked() {
        let server = parse(MINIMAL, &no_env()).expect("valid").policy.server;
        assert_eq!(server.request_header_timeout, Duration::from_secs(10));
        assert_eq!(server.keepalive_timeout, Some(Duration::from_secs(60)));
        assert_eq!(server.max_connections, None);

        let text = format!(
            "{MINIMAL}server: {{ request_header_timeout: 2s, keepalive_timeout: 0s, max_connections: 5 }}\n"
        );
        let server = parse(&text, &no_env()).expect("valid").policy.server;
        assert_eq!(server.request_header_timeout, Duration::from_secs(2));
        assert_eq!(server.keepalive_timeout, None, "0s turns keep-alive off");
        assert_eq!(server.max_connections, Some(5));

        let text = format!(
            "{MINIMAL}server: {{ request_header_timeout: 10ms, keepalive_timeout: 1500ms, max_connections: 0 }}\n"
        );
        let paths: Vec<_> = problems(&text, &no_env())
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(
            paths,
            vec![
                "server.request_header_timeout",
                "server.keepalive_timeout",
                "server.max_connections"
            ]
        );
    }

    #[test]
    fn the_access_log_is_off_by_default_and_sampled_between_0_and_1() {
        let server = parse(MINIMAL, &no_env()).expect("valid").policy.server;
        assert_eq!(server.access_log_sample, 0.0);
        let text = format!("{MINIMAL}server: {{ access_log: {{ sample: 0.25 }} }}\n");
        let server = parse(&text, &no_env()).expect("valid").policy.server;
        assert_eq!(server.access_log_sample, 0.25);
        for bad in ["1.5", "-0.1"] {
            let text = format!("{MINIMAL}server: {{ access_log: {{ sample: {bad} }} }}\n");
            let paths: Vec<_> = problems(&text, &no_env())
                .into_iter()
                .map(|(path, _)| path)
                .collect();
            assert_eq!(paths, vec!["server.access_log.sample"], "{bad}");
        }
    }

    #[test]
    fn h2c_is_off_by_default_and_must_be_a_boolean() {
        let server = parse(MINIMAL, &no_env()).expect("valid").policy.server;
        assert!(!server.h2c);
        let text = format!("{MINIMAL}server: {{ h2c: true }}\n");
        assert!(parse(&text, &no_env()).expect("valid").policy.server.h2c);
        let text = format!("{MINIMAL}server: {{ h2c: \"yes please\" }}\n");
        let problems = problems(&text, &no_env());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "server.h2c", "{problems:?}");
    }

    #[test]
    fn both_listeners_may_ask_for_port_zero() {
        let text = MINIMAL
            .replace("\"127.0.0.1:8080\"", "\"127.0.0.1:0\"")
            .replace("\"127.0.0.1:9090\"", "\"127.0.0.1:0\"");
        assert!(parse(&text, &no_env()).is_ok());
        let same = MINIMAL.replace("\"127.0.0.1:9090\"", "\"127.0.0.1:8080\"");
        assert_eq!(problems(&same, &no_env())[0].0, "admin_listen");
    }
}
