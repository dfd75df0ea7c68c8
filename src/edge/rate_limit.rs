//! Rate limiting at the edge (GCRA): rules from the policy, keyed by client address, user,
//! API key or route, decided in this process or in Redis so every replica shares one limit.
//!
//! Rules whose key does not involve the user run **before** JWT validation (a flood of
//! bad tokens is limited too); rules keyed by `user` run after it. A refused request gets
//! `429` with `Retry-After` and never reaches an upstream. Every decision is also described
//! in the IETF `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers),
//! from the GCRA state as [`quota`] maps it.

mod local;
mod quota;
mod redis;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

pub use self::local::LocalLimiter;
pub use self::quota::{Bucket, MAX_BUCKET, SCALE};
pub use self::redis::{RedisStore, StoreState};
use crate::admin::metrics::Metrics;
use crate::policy::schema::{KeySpec, RateLimitsSpec, RuleSpec, StoreSpec};
use crate::policy::{Diagnostics, Env};
use crate::secrets::SecretLookup;

const DEFAULT_MAX_KEYS: usize = 100_000;
const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// A rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    /// `5/min`, `100/s`, `1000/h`, `20/10s`, `3/day`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (count, per) = text.split_once('/').ok_or_else(|| {
            format!("`{text}` is not a rate: write count/period, as 5/min or 100/s")
        })?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| format!("`{count}` is not a positive whole number of requests"))?;
        let per = per.trim();
        let split = per.find(|c: char| !c.is_ascii_digit()).unwrap_or(per.len());
        let (multiplier, unit) = per.split_at(split);
        let multiplier: u64 = if multiplier.is_empty() {
            1
        } else {
            multiplier
                .parse()
                .map_err(|_| format!("`{per}` is not a period"))?
        };
        let unit = match unit {
            "ms" => Duration::from_millis(1),
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => {
                return Err(format!(
                    "unknown period unit `{other}`: use s, min, h or day"
                ))
            }
        };
        let period = unit
            .checked_mul(u32::try_from(multiplier).map_err(|_| "period too long".to_owned())?)
            .filter(|p| !p.is_zero())
            .ok_or_else(|| "the period must be more than 0".to_owned())?;
        Ok(Rate { count, period })
    }
}

/// One decision of one rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// `remaining` requests left now; the bucket is full again after `reset`.
    Allowed { remaining: u32, reset: Duration },
    /// One request fits again after `retry_after`; the bucket is full after `reset`.
    Refused {
        retry_after: Duration,
        reset: Duration,
    },
}

/// A part of a rule's key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPart {
    Ip,
    User,
    ApiKey(HeaderName),
    Route,
}

/// When a rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before JWT validation (no `user` in the key).
    PreAuth,
    /// After it (`user` in the key).
    PostAuth,
}

/// What a rule needs to know about a request.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    pub route: usize,
    pub route_name: &'a str,
    pub client_ip: IpAddr,
    /// The verified token's `sub`, after authentication.
    pub user: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The adaptive factor of the route's upstream (1 when not adaptive).
    pub factor: f64,
}

/// One validated rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    routes: Option<Vec<String>>,
    parts: Vec<KeyPart>,
    rate: Rate,
    burst: u32,
    /// The whole rule's bucket (the Redis store decides with it).
    bucket: Bucket,
    headers: bool,
    /// `"login";q=5;w=60`, shared by every request's `RateLimit-Policy`.
    policy_item: Arc<str>,
    /// `"login"`, the item name in `RateLimit`.
    quoted_name: Arc<str>,
    /// This rule's decision counters, resolved once (not a label lookup per request).
    counters: OnceLock<(prometheus::IntCounter, prometheus::IntCounter)>,
    /// Decides with the local store; with `store: redis`, while Redis is unreachable,
    /// at `rate / replicas`.
    local: LocalLimiter,
}

impl Rule {
    pub fn phase(&self) -> Phase {
        if self.parts.contains(&KeyPart::User) {
            Phase::PostAuth
        } else {
            Phase::PreAuth
        }
    }

    fn applies_to(&self, route_name: &str) -> bool {
        self.routes
            .as_ref()
            .is_none_or(|routes| routes.iter().any(|r| r == route_name))
    }

    /// The rule's key for a request; `None` when the request lacks a part (no user on a
    /// public route, no API key header): the rule then does not apply.
    fn key(&self, facts: &RequestFacts<'_>) -> Option<String> {
        let mut key = String::with_capacity(48);
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                key.push('|');
            }
            match part {
                KeyPart::Ip => push_ip(&mut key, facts.client_ip),
                KeyPart::User => key.push_str(facts.user?),
                KeyPart::Route => key.push_str(facts.route_name),
                // API keys are credentials: only their digest is kept, here and in Redis.
                KeyPart::ApiKey(header) => {
                    let value = facts.headers.get(header)?;
                    let digest = Sha256::digest(value.as_bytes());
                    key.push_str(&hex::encode(&digest[..16]));
                }
            }
        }
        Some(key)
    }
}

/// Appends `ip` as `Display` writes it. IPv4 goes through `itoa` rather than the
/// formatting machinery: every request of an `ip` rule builds its key, and formatting showed
/// in the full policy's profile (callgrind, docs/BENCHMARKS.md).
fn push_ip(key: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    key.push('.');
                }
                key.push_str(digits.format(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(key, "{v6}");
        }
    }
}

/// A refusal: which rule, and when to come back.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub rule: String,
    pub retry_after_secs: u64,
}

/// One rule's state for the `RateLimit-Policy` / `RateLimit` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderItem {
    policy: Arc<str>,
    name: Arc<str>,
    remaining: u32,
    reset_secs: u64,
}

/// The `RateLimit-Policy` and `RateLimit` values for the rules that ran (one list item each).
/// Written with `itoa` rather than `write!`: this runs on every response, and the
/// formatting machinery showed as a measurable part of the full policy's cost (callgrind,
/// docs/BENCHMARKS.md).
pub fn header_values(items: &[HeaderItem]) -> (String, String) {
    let mut policy = String::with_capacity(items.len() * 24);
    let mut state = String::with_capacity(items.len() * 24);
    let mut digits = itoa::Buffer::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            policy.push_str(", ");
            state.push_str(", ");
        }
        policy.push_str(&item.policy);
        state.push_str(&item.name);
        state.push_str(";r=");
        state.push_str(digits.format(item.remaining));
        state.push_str(";t=");
        state.push_str(digits.format(item.reset_secs));
    }
    (policy, state)
}

/// The decisions of the rules that ran for a request.
#[derive(Debug, Default)]
pub struct Verdict {
    pub refused: Option<Refusal>,
    /// One item per rule that ran with headers on.
    pub header_items: Vec<HeaderItem>,
}

/// Where decisions are made.
#[derive(Debug)]
pub enum Store {
    Local,
    Redis(Arc<RedisStore>),
}

/// The validated `rate_limits:` section.
#[derive(Debug)]
pub struct RateLimits {
    rules: Vec<Rule>,
    store: Store,
}

impl RateLimits {
    /// Validates `rate_limits:` against the policy's route names; the Redis password, when
    /// `redis.password_secret` names one, comes from `secrets`.
    pub fn compile(
        spec: &RateLimitsSpec,
        route_names: &[String],
        env: &dyn Env,
        secrets: &dyn SecretLookup,
        diag: &mut Diagnostics,
    ) -> RateLimits {
        let _ = env;
        let max_keys = spec.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if max_keys == 0 {
            diag.error("rate_limits.max_keys", "must be at least 1");
        }
        let store_kind = spec.store.unwrap_or(StoreSpec::Local);
        let replicas = spec.redis.as_ref().and_then(|r| r.replicas).unwrap_or(1);
        if replicas == 0 {
            diag.error("rate_limits.redis.replicas", "must be at least 1");
        }
        if spec.redis.is_some() && store_kind == StoreSpec::Local {
            diag.warn("rate_limits.redis", "ignored: `store` is `local`");
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(spec.rules.len());
        for (i, rule) in spec.rules.iter().enumerate() {
            let local_divisor = if store_kind == StoreSpec::Redis {
                replicas.max(1)
            } else {
                1
            };
            if let Some(rule) =
                compile_rule(i, rule, route_names, max_keys.max(1), local_divisor, diag)
            {
                if rules.iter().any(|r| r.name == rule.name) {
                    diag.error(
                        format!("rate_limits.rules[{i}].name"),
                        format!("duplicate rule name `{}`", rule.name),
                    );
                    continue;
                }
                rules.push(rule);
            }
        }
        let store = match store_kind {
            StoreSpec::Local => Store::Local,
            StoreSpec::Redis => match RedisStore::compile(spec.redis.as_ref(), secrets, diag) {
                Some(store) => Store::Redis(Arc::new(store)),
                None => Store::Local,
            },
        };
        RateLimits { rules, store }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        match &self.store {
            Store::Redis(store) => Some(store),
            Store::Local => None,
        }
    }

    /// Runs the rules of `phase` that apply to the request, in policy order, stopping at the
    /// first refusal. Counts every decision in `metrics`.
    pub async fn check(
        &self,
        phase: Phase,
        facts: &RequestFacts<'_>,
        metrics: &Metrics,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        for rule in self
            .rules
            .iter()
            .filter(|r| r.phase() == phase && r.applies_to(facts.route_name))
        {
            let Some(key) = rule.key(facts) else { continue };
            let decision = match &self.store {
                Store::Local => rule.local.check(&key, facts.factor),
                Store::Redis(redis) => match redis.check(rule, &key, facts.factor, metrics).await {
                    Some(decision) => decision,
                    None => rule.local.check(&key, facts.factor),
                },
            };
            let (allowed, limited) = rule
                .counters
                .get_or_init(|| metrics.rate_limit_counters(&rule.name));
            match decision {
                Decision::Allowed { remaining, reset } => {
                    allowed.inc();
                    if rule.headers {
                        verdict
                            .header_items
                            .push(rule.item(remaining, ceil_secs(reset)));
                    }
                }
                Decision::Refused { retry_after, reset } => {
                    limited.inc();
                    let retry_after_secs = ceil_secs(retry_after).max(1);
                    if rule.headers {
                        verdict.header_items.push(rule.item(0, ceil_secs(reset)));
                    }
                    verdict.refused = Some(Refusal {
                        rule: rule.name.clone(),
                        retry_after_secs,
                    });
                    break;
                }
            }
        }
        verdict
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn compile_rule(
    i: usize,
    spec: &RuleSpec,
    route_names: &[String],
    max_keys: usize,
    local_divisor: u32,
    diag: &mut Diagnostics,
) -> Option<Rule> {
    let path = |field: &str| format!("rate_limits.rules[{i}].{field}");
    let errors_before = diag.errors().len();
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        diag.error(path("name"), "rule names are 1-64 characters of a-z, 0-9, `_` and `-` (they label metrics and headers)");
    }
    if let Some(routes) = &spec.routes {
        for (j, route) in routes.iter().enumerate() {
            if !route_names.contains(route) {
                diag.error(
                    format!("rate_limits.rules[{i}].routes[{j}]"),
                    format!(
                        "unknown route `{route}`{}",
                        crate::policy::suggest(route, route_names.iter().map(String::as_str))
                    ),
                );
            }
        }
    }
    let names: Vec<&str> = match &spec.key {
        KeySpec::One(one) => vec![one.as_str()],
        KeySpec::Many(many) => many.iter().map(String::as_str).collect(),
    };
    let mut parts = Vec::with_capacity(names.len());
    for name in &names {
        let part = match name.trim() {
            "ip" => KeyPart::Ip,
            "user" => KeyPart::User,
            "route" => KeyPart::Route,
            "api_key" => {
                let header = spec
                    .api_key_header
                    .as_deref()
                    .unwrap_or(DEFAULT_API_KEY_HEADER);
                match HeaderName::from_bytes(header.trim().as_bytes()) {
                    Ok(header) => KeyPart::ApiKey(header),
                    Err(_) => {
                        diag.error(
                            path("api_key_header"),
                            format!("`{header}` is not a header name"),
                        );
                        continue;
                    }
                }
            }
            other => {
                diag.error(
                    path("key"),
                    format!(
                        "unknown key `{other}`: use ip, user, api_key, route, or a list of them"
                    ),
                );
                continue;
            }
        };
        if parts.contains(&part) {
            diag.error(path("key"), format!("`{name}` is listed twice"));
        }
        parts.push(part);
    }
    if names.is_empty() {
        diag.error(path("key"), "name at least one of ip, user, api_key, route");
    }
    if spec.api_key_header.is_some() && !names.contains(&"api_key") {
        diag.warn(path("api_key_header"), "ignored: the key has no `api_key`");
    }
    let rate = match Rate::parse(&spec.rate) {
        Ok(rate) => Some(rate),
        Err(message) => {
            diag.error(path("rate"), message);
            None
        }
    };
    let burst = spec.burst.or(rate.map(|r| r.count)).unwrap_or(1);
    if burst == 0 {
        diag.error(path("burst"), "must be at least 1");
    }
    if diag.errors().len() > errors_before {
        return None;
    }
    let rate = rate?;
    let Some(bucket) = Bucket::new(rate, burst) else {
        diag.error(path("burst"), bucket_problem(rate, burst));
        return None;
    };
    // With Redis unreachable, each of N replicas allows its share of the rate and burst.
    let local_rate = Rate {
        count: (rate.count / local_divisor).max(1),
        period: rate.period,
    };
    let local_burst = (burst / local_divisor).max(1);
    let Some(local) = LocalLimiter::new(local_rate, local_burst, max_keys) else {
        diag.error(path("rate"), bucket_problem(local_rate, local_burst));
        return None;
    };
    Some(Rule {
        name: spec.name.clone(),
        routes: spec.routes.clone(),
        policy_item: bucket.policy_item(&spec.name).into(),
        quoted_name: format!("\"{}\"", spec.name).into(),
        counters: OnceLock::new(),
        parts,
        rate,
        burst,
        bucket,
        headers: spec.headers.unwrap_or(true),
        local,
    })
}

/// Why `rate` with `burst` makes no bucket.
fn bucket_problem(rate: Rate, burst: u32) -> String {
    let cells = u128::from(rate.count) * u128::from(SCALE);
    if rate.period.as_nanos() < cells {
        "too high to enforce: at most 10 million requests a second".to_owned()
    } else if burst.checked_mul(SCALE).is_none() {
        format!("burst too large: at most {}", u32::MAX / SCALE)
    } else {
        format!(
            "burst {burst} at {}/{}s takes more than {} days to refill: lower the burst or raise the rate",
            rate.count,
            rate.period.as_secs_f64(),
            MAX_BUCKET.as_secs() / 86_400
        )
    }
}

impl Rule {
    fn item(&self, remaining: u32, reset_secs: u64) -> HeaderItem {
        HeaderItem {
            policy: Arc::clone(&self.policy_item),
            name: Arc::clone(&self.quoted_name),
            remaining,
            reset_secs,
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Keys tracked by the local limiter.
    pub fn tracked_keys(&self) -> usize {
        self.local.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "10.1.2.3",
            "255.255.255.255",
            "192.168.0.10",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: std::net::IpAddr = text.parse().expect("address");
            let mut key = String::new();
            push_ip(&mut key, ip);
            assert_eq!(key, ip.to_string());
        }
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("5/min"),
            Ok(Rate {
                count: 5,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(
            Rate::parse("100/s"),
            Ok(Rate {
                count: 100,
                period: Duration::from_secs(1)
            })
        );
        assert_eq!(
            Rate::parse("20/10s"),
            Ok(Rate {
                count: 20,
                period: Duration::from_secs(10)
            })
        );
        assert_eq!(
            Rate::parse("1000/h").map(|r| r.period),
            Ok(Duration::from_secs(3600))
        );
        for bad in ["5", "0/s", "x/s", "5/fortnight", "5/0s", "-1/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    fn rules(yaml: &str) -> (RateLimits, Diagnostics) {
        let spec: RateLimitsSpec = serde_yaml::from_str(yaml).expect("spec");
        let env: std::collections::HashMap<String, String> = Default::default();
        let mut diag = Diagnostics::default();
        let limits = RateLimits::compile(
            &spec,
            &["auth".into(), "api".into()],
            &env,
            &crate::secrets::EnvSecrets(&env),
            &mut diag,
        );
        (limits, diag)
    }

    #[test]
    fn bad_rules_are_reported_with_their_paths() {
        let (_, diag) = rules(
            "{rules: [{name: Login, key: ip, rate: 5/min}, {name: x, key: [ip, bogus], rate: 5}, {name: y, routes: [auht], key: user, rate: 1/s, burst: 0}]}",
        );
        let paths: Vec<_> = diag.errors().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "rate_limits.rules[0].name",
                "rate_limits.rules[1].key",
                "rate_limits.rules[1].rate",
                "rate_limits.rules[2].routes[0]",
                "rate_limits.rules[2].burst"
            ]
        );
        assert!(diag.errors()[3].message.contains("did you mean `auth`"));
    }

    #[test]
    fn phases_follow_the_key() {
        let (limits, diag) = rules(
            "{rules: [{name: a, key: ip, rate: 5/min}, {name: b, key: [user, route], rate: 5/s}]}",
        );
        assert!(!diag.has_errors(), "{:?}", diag.errors());
        assert_eq!(limits.rules()[0].phase(), Phase::PreAuth);
        assert_eq!(limits.rules()[1].phase(), Phase::PostAuth);
        assert_eq!(&*limits.rules()[0].policy_item, "\"a\";q=5;w=60");
    }

    #[tokio::test]
    async fn a_refusal_says_which_rule_and_when_to_return() {
        let (limits, _) =
            rules("{rules: [{name: login, routes: [auth], key: ip, rate: 2/min, burst: 2}]}");
        let metrics = Metrics::new().expect("metrics");
        let headers = HeaderMap::new();
        let facts = RequestFacts {
            route: 0,
            route_name: "auth",
            client_ip: "203.0.113.1".parse().expect("ip"),
            user: None,
            headers: &headers,
            factor: 1.0,
        };
        let first = limits.check(Phase::PreAuth, &facts, &metrics).await;
        assert!(first.refused.is_none());
        assert_eq!(
            header_values(&first.header_items),
            (
                "\"login\";q=2;w=60".to_owned(),
                "\"login\";r=1;t=30".to_owned()
            )
        );
        limits.check(Phase::PreAuth, &facts, &metrics).await;
        let third = limits.check(Phase::PreAuth, &facts, &metrics).await;
        let refusal = third.refused.expect("refused");
        assert_eq!(refusal.rule, "login");
        assert!(
            (29..=30).contains(&refusal.retry_after_secs),
            "{}",
            refusal.retry_after_secs
        );
        // Another route: the rule does not apply.
        let other = RequestFacts {
            route_name: "api",
            ..facts
        };
        assert!(limits
            .check(Phase::PreAuth, &other, &metrics)
            .await
            .header_items
            .is_empty());
    }
}
