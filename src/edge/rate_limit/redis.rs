//! The shared store: GCRA state in Redis, one atomic Lua script per decision, so N gateway
//! replicas enforce one limit.
//!
//! The script reads Redis's own clock (`TIME`), so replicas with skewed clocks still agree.
//! Keys are `<prefix>:{<rule>:<key>}`: the braces are a Redis Cluster hash tag, so a key's
//! state lives on one shard. Each key expires once its bucket is full again.
//!
//! When Redis does not answer within the timeout, the decision falls back to the rule's
//! local limiter (which allows `rate / replicas`), the store switches to `fallback`, and a
//! background probe (`RedisStore::probe`) switches back once Redis answers again. While in
//! fallback no request waits on Redis.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use redis::Script;

use super::{local::SCALE, Decision, Rule};
use crate::admin::metrics::Metrics;
use crate::policy::schema::RedisSpec;
use crate::policy::Diagnostics;

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_PREFIX: &str = "gardien:rl";
/// Time allowed to (re)connect in the background probe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// GCRA in microseconds. KEYS[1]: the state key. ARGV: interval (µs per request at factor
/// 1), burst (requests), cost (1 / factor). Returns {allowed, retry_after_µs, remaining,
/// reset_µs}. The bucket holds `burst × interval` of time; a request adds
/// `cost × interval` (at most the whole bucket).
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = interval * tonumber(ARGV[2])
local increment = math.min(interval * tonumber(ARGV[3]), capacity)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + increment
local used = new_tat - now
if used > capacity then
  return {0, math.ceil(used - capacity), 0, math.ceil(tat - now)}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(used / 1000) + 1)
return {1, 0, math.floor((capacity - used) / increment), math.ceil(used)}
";

/// Where decisions are made right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState {
    Redis,
    Fallback,
}

impl StoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreState::Redis => "redis",
            StoreState::Fallback => "fallback",
        }
    }
}

const REDIS: u8 = 0;
const FALLBACK: u8 = 1;

/// The Redis store of a policy.
pub struct RedisStore {
    client: redis::Client,
    /// Public form of the URL, without credentials.
    display_url: String,
    connection: ArcSwapOption<ConnectionManager>,
    script: Script,
    timeout: Duration,
    prefix: String,
    state: AtomicU8,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.display_url)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Validates `rate_limits.redis`. Nothing connects yet: the start-up warm-up and the
    /// background probe do.
    pub fn compile(spec: Option<&RedisSpec>, diag: &mut Diagnostics) -> Option<RedisStore> {
        let url = spec
            .and_then(|s| s.url.clone())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let client = match redis::Client::open(url.as_str()) {
            Ok(client) => client,
            Err(e) => {
                diag.error(
                    "rate_limits.redis.url",
                    format!("not a Redis URL: {}", e.kind_description()),
                );
                return None;
            }
        };
        let timeout = spec.and_then(|s| s.timeout).unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            diag.error("rate_limits.redis.timeout", "must be more than 0");
        }
        let display_url = url::Url::parse(&url).map_or_else(
            |_| "redis://[unparsed]".to_owned(),
            |mut u| {
                let _ = u.set_password(None);
                let _ = u.set_username("");
                u.to_string()
            },
        );
        Some(RedisStore {
            client,
            display_url,
            connection: ArcSwapOption::empty(),
            script: Script::new(GCRA_SCRIPT),
            timeout,
            prefix: spec
                .and_then(|s| s.key_prefix.clone())
                .unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
            // Until the first probe connects, decide locally.
            state: AtomicU8::new(FALLBACK),
        })
    }

    pub fn state(&self) -> StoreState {
        if self.state.load(Ordering::Acquire) == REDIS {
            StoreState::Redis
        } else {
            StoreState::Fallback
        }
    }

    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Takes over the connection of the store of a policy being replaced (same URL).
    pub fn adopt(&self, previous: &RedisStore) {
        if previous.display_url == self.display_url {
            self.connection.store(previous.connection.load_full());
            self.state
                .store(previous.state.load(Ordering::Acquire), Ordering::Release);
        }
    }

    /// One decision in Redis; `None` when the caller must decide locally (Redis in
    /// fallback, or failing now — which switches to fallback).
    pub async fn check(
        &self,
        rule: &Rule,
        key: &str,
        factor: f64,
        metrics: &Metrics,
    ) -> Option<Decision> {
        if self.state() != StoreState::Redis {
            return None;
        }
        let connection = self.connection.load_full()?;
        let mut connection = (*connection).clone();
        let rate = rule.rate();
        let interval_us = (rate.period.as_micros() / u128::from(rate.count)).max(1);
        let factor = if factor.is_finite() {
            factor.clamp(0.01, 1.0)
        } else {
            1.0
        };
        let cost = (f64::from(SCALE) / factor).round() / f64::from(SCALE);
        let redis_key = format!("{}:{{{}:{}}}", self.prefix, rule.name, key);
        let mut invocation = self.script.key(redis_key);
        invocation
            .arg(u64::try_from(interval_us).unwrap_or(u64::MAX))
            .arg(rule.burst())
            .arg(cost);
        let call = invocation.invoke_async::<Vec<i64>>(&mut connection);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(reply)) if reply.len() == 4 => {
                let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
                Some(if reply[0] == 1 {
                    Decision::Allowed {
                        remaining: u32::try_from(reply[2]).unwrap_or(0),
                        reset: micros(reply[3]),
                    }
                } else {
                    Decision::Refused {
                        retry_after: micros(reply[1]),
                    }
                })
            }
            Ok(Ok(_)) => {
                self.fall_back(metrics, "unexpected script reply");
                None
            }
            Ok(Err(e)) => {
                self.fall_back(metrics, &e.kind_description());
                None
            }
            Err(_) => {
                self.fall_back(metrics, "timed out");
                None
            }
        }
    }

    fn fall_back(&self, metrics: &Metrics, reason: &str) {
        if self.state.swap(FALLBACK, Ordering::AcqRel) == REDIS {
            metrics.rate_limit_fallback();
            tracing::warn!(
                redis = self.display_url.as_str(),
                reason,
                "Redis unreachable: rate limiting locally at rate / replicas"
            );
        }
        metrics.set_rate_limit_store(StoreState::Fallback);
    }

    /// Connects if needed and checks Redis answers; switches back from fallback when it
    /// does. Run by the background task every second.
    pub async fn probe(&self, metrics: &Metrics) {
        let healthy = match self.connection.load_full() {
            Some(connection) => {
                let mut connection = (*connection).clone();
                let command = redis::cmd("PING");
                let ping = command.query_async::<String>(&mut connection);
                matches!(tokio::time::timeout(CONNECT_TIMEOUT, ping).await, Ok(Ok(_)))
            }
            None => match tokio::time::timeout(
                CONNECT_TIMEOUT,
                ConnectionManager::new(self.client.clone()),
            )
            .await
            {
                Ok(Ok(manager)) => {
                    self.connection.store(Some(std::sync::Arc::new(manager)));
                    true
                }
                _ => false,
            },
        };
        if healthy {
            if self.state.swap(REDIS, Ordering::AcqRel) == FALLBACK {
                tracing::info!(
                    redis = self.display_url.as_str(),
                    "Redis reachable: rate limits shared again"
                );
            }
            metrics.set_rate_limit_store(StoreState::Redis);
        } else {
            self.fall_back(metrics, "probe failed");
        }
    }
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for redis::RedisError {
    /// The error without anything from the URL (which may hold a password).
    fn kind_description(&self) -> String {
        format!("{:?}", self.kind())
    }
}
