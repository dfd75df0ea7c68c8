//! The shared store: GCRA state in Redis, one atomic Lua script per decision, so N gateway
//! replicas enforce one limit.
//!
//! The script reads Redis's own clock (`TIME`), so replicas with skewed clocks still agree.
//! Keys are `<prefix>:2:{<rule>:<key>}`: the braces are a Redis Cluster hash tag, so a key's
//! state lives on one shard; `2` is the version of the state's format. Each key expires
//! once its bucket is full again.
//!
//! The connection: `redis://` or `rediss://` (TLS, with the server's CA from `ca_file` or
//! the system's roots), AUTH from the URL or, better, from the secret `password_secret`
//! names. The password never leaves the client: logs, errors and `Debug` show the URL with
//! `***` in its place, and Redis errors are described by their kind.
//!
//! When Redis does not answer within the timeout, the decision falls back to the rule's
//! local limiter (which allows `rate / replicas`), the store switches to `fallback`, and a
//! background probe (`RedisStore::probe`) switches back once Redis answers again. While in
//! fallback no request waits on Redis.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Script};
use sha2::{Digest, Sha256};

use super::{Decision, Rule};
use crate::admin::metrics::Metrics;
use crate::policy::schema::RedisSpec;
use crate::policy::Diagnostics;
use crate::secrets::SecretLookup;

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_PREFIX: &str = "gardien:rl";
/// Time allowed to (re)connect in the background probe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// GCRA in nanoseconds, the model of [`super::Bucket`]. KEYS[1]: the state key, holding
/// `<stamp µs>:<used ns>` (how long from empty the bucket was at Redis time `stamp`).
/// ARGV: the bucket's capacity and this request's cost, in ns. Returns `{1, used after}`
/// when allowed, `{0, used before}` when refused. Every number stays below 2^53, where Lua
/// numbers are exact: the bucket is at most 100 days, and times are differences.
/// A stamp in the future (Redis's clock stepped back) drains nothing.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local capacity = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local used = 0
local state = redis.call('GET', KEYS[1])
if state then
  local sep = string.find(state, ':', 1, true)
  if sep then
    local stamp = tonumber(string.sub(state, 1, sep - 1))
    local before = tonumber(string.sub(state, sep + 1))
    if stamp and before then
      local elapsed = now - stamp
      if elapsed < 0 then elapsed = 0 end
      if elapsed * 1000 < before then used = before - elapsed * 1000 end
    end
  end
end
if used + cost > capacity then
  return {0, used}
end
used = used + cost
redis.call('SET', KEYS[1], string.format('%d:%d', now, used), 'PX', math.ceil(used / 1000000) + 1)
return {1, used}
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
    /// The URL with `***` for its password: what logs and `check` show.
    display_url: String,
    /// Digest of everything the connection is made from (URL, password, CA): a reloaded
    /// policy takes over the connection only when it would connect the same way.
    identity: [u8; 32],
    connection: ArcSwapOption<ConnectionManager>,
    script: Script,
    timeout: Duration,
    prefix: String,
    state: AtomicU8,
    /// Why the last connection attempt failed, logged once per change.
    last_failure: Mutex<Option<String>>,
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
    /// Validates `rate_limits.redis` (every problem with its field path, never the
    /// password). Nothing connects yet: the start-up warm-up and the background probe do.
    pub fn compile(
        spec: Option<&RedisSpec>,
        secrets: &dyn SecretLookup,
        diag: &mut Diagnostics,
    ) -> Option<RedisStore> {
        let errors_before = diag.errors().len();
        let timeout = spec.and_then(|s| s.timeout).unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            diag.error("rate_limits.redis.timeout", "must be more than 0");
        }
        let url = match spec.and_then(|s| s.url.as_deref()) {
            Some(url) => parse_url(url, diag),
            None => {
                diag.error(
                    "rate_limits.redis.url",
                    "required with `store: redis`: redis://host:port or rediss://host:port (TLS), e.g. \"${REDIS_URL}\"",
                );
                None
            }
        };
        let password = spec
            .and_then(|s| s.password_secret.as_deref())
            .and_then(|name| read_password(name, url.as_ref(), secrets, diag));
        let ca = spec.and_then(|s| s.ca_file.as_deref()).and_then(|path| {
            if url.as_ref().is_some_and(|u| u.scheme() != "rediss") {
                diag.error(
                    "rate_limits.redis.ca_file",
                    "only with a rediss:// URL (TLS)",
                );
                return None;
            }
            match std::fs::read(path) {
                Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
                    Some(pem)
                }
                Ok(_) => {
                    diag.error(
                        "rate_limits.redis.ca_file",
                        format!("{path} holds no PEM certificate"),
                    );
                    None
                }
                Err(e) => {
                    diag.error(
                        "rate_limits.redis.ca_file",
                        format!("cannot read {path}: {e}"),
                    );
                    None
                }
            }
        });
        if diag.errors().len() > errors_before {
            return None;
        }
        let url = url?;
        let client = match build_client(&url, password.as_deref(), ca.as_deref()) {
            Ok(client) => client,
            Err(e) => {
                diag.error(
                    if ca.is_some() {
                        "rate_limits.redis.ca_file"
                    } else {
                        "rate_limits.redis.url"
                    },
                    format!("cannot make a Redis client: {}", e.kind_description()),
                );
                return None;
            }
        };
        let mut identity = Sha256::new();
        for part in [
            url.as_str().as_bytes(),
            password.as_deref().unwrap_or_default().as_bytes(),
            ca.as_deref().unwrap_or_default(),
        ] {
            identity.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            identity.update(part);
        }
        Some(RedisStore {
            client,
            display_url: masked(&url),
            identity: identity.finalize().into(),
            connection: ArcSwapOption::empty(),
            script: Script::new(GCRA_SCRIPT),
            timeout,
            prefix: spec
                .and_then(|s| s.key_prefix.clone())
                .unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
            // Until the first probe connects, decide locally.
            state: AtomicU8::new(FALLBACK),
            last_failure: Mutex::new(None),
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

    /// Takes over the connection of the store of a policy being replaced, when it connects
    /// the same way (same URL, password and CA: a rotated password reconnects).
    pub fn adopt(&self, previous: &RedisStore) {
        if previous.identity == self.identity {
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
        let bucket = rule.bucket();
        let cost = bucket.cost(factor);
        let redis_key = format!("{}:2:{{{}:{}}}", self.prefix, rule.name, key);
        let mut invocation = self.script.key(redis_key);
        invocation
            .arg(u64::try_from(bucket.capacity_ns()).unwrap_or(u64::MAX))
            .arg(bucket.cells_ns(cost));
        let call = invocation.invoke_async::<Vec<i64>>(&mut connection);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(reply)) if reply.len() == 2 => {
                let used = u64::try_from(reply[1]).unwrap_or(0);
                Some(if reply[0] == 1 {
                    bucket.allowed(used, cost)
                } else {
                    bucket.refused(used, cost)
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
            crate::error_reports::redis_fallback(&reason);
        }
        metrics.set_rate_limit_store(StoreState::Fallback);
    }

    /// Connects if needed and checks Redis answers; switches back from fallback when it
    /// does. Run by the background task every second.
    pub async fn probe(&self, metrics: &Metrics) {
        let outcome = match self.connection.load_full() {
            Some(connection) => {
                let mut connection = (*connection).clone();
                let command = redis::cmd("PING");
                let ping = command.query_async::<String>(&mut connection);
                match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.kind_description()),
                    Err(_) => Err("timed out".to_owned()),
                }
            }
            // No retries inside: this probe is the retry loop, and a refusal (a wrong
            // password, a certificate) is reported as itself rather than as a timeout.
            None => match tokio::time::timeout(
                CONNECT_TIMEOUT,
                ConnectionManager::new_with_config(
                    self.client.clone(),
                    ConnectionManagerConfig::new()
                        .set_number_of_retries(0)
                        .set_connection_timeout(Some(CONNECT_TIMEOUT)),
                ),
            )
            .await
            {
                Ok(Ok(manager)) => {
                    self.connection.store(Some(std::sync::Arc::new(manager)));
                    Ok(())
                }
                Ok(Err(e)) => Err(e.kind_description()),
                Err(_) => Err("connection timed out".to_owned()),
            },
        };
        match outcome {
            Ok(()) => {
                *self.last_failure.lock() = None;
                if self.state.swap(REDIS, Ordering::AcqRel) == FALLBACK {
                    tracing::info!(
                        redis = self.display_url.as_str(),
                        "Redis reachable: rate limits shared again"
                    );
                }
                metrics.set_rate_limit_store(StoreState::Redis);
            }
            Err(reason) => {
                let mut last = self.last_failure.lock();
                if last.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(
                        redis = self.display_url.as_str(),
                        reason = reason.as_str(),
                        "Redis probe failed: rate limiting locally at rate / replicas"
                    );
                    crate::error_reports::redis_fallback(&reason);
                    *last = Some(reason.clone());
                }
                drop(last);
                self.fall_back(metrics, &reason);
            }
        }
    }
}

/// The AUTH password from the secret `name`; an error with the field path when it is not
/// set, not text, or the URL holds a password too.
fn read_password(
    name: &str,
    url: Option<&url::Url>,
    secrets: &dyn SecretLookup,
    diag: &mut Diagnostics,
) -> Option<String> {
    let path = "rate_limits.redis.password_secret";
    if url.is_some_and(|u| u.password().is_some()) {
        diag.error(
            path,
            "the URL holds a password too: give it in one place (the secret)",
        );
    }
    let Some(secret) = secrets.get(name).filter(|s| !s.is_empty()) else {
        diag.error(path, format!("secret {name} is not set"));
        return None;
    };
    match String::from_utf8(secret.expose().to_vec()) {
        Ok(password) => Some(password),
        Err(_) => {
            diag.error(path, format!("secret {name} is not UTF-8 text"));
            None
        }
    }
}

/// The URL, checked: `redis` or `rediss`, a host, no `#insecure`.
fn parse_url(text: &str, diag: &mut Diagnostics) -> Option<url::Url> {
    let path = "rate_limits.redis.url";
    let url = match url::Url::parse(text.trim()) {
        Ok(url) => url,
        // The parser's message never quotes the input (which may hold a password).
        Err(e) => {
            diag.error(
                path,
                format!("not a URL ({e}): write redis://host:port or rediss://host:port"),
            );
            return None;
        }
    };
    let mut ok = true;
    if !matches!(url.scheme(), "redis" | "rediss") {
        diag.error(
            path,
            format!("scheme `{}`: use redis:// or rediss:// (TLS)", url.scheme()),
        );
        ok = false;
    }
    if url.host_str().is_none_or(str::is_empty) {
        diag.error(path, "no host: write redis://host:port");
        ok = false;
    }
    if url.fragment() == Some("insecure") {
        diag.error(
            path,
            "`#insecure` turns certificate checks off: give the server's CA in `rate_limits.redis.ca_file` instead",
        );
        ok = false;
    }
    if url.query().is_some() {
        diag.error(
            path,
            "no query parameters: the password goes in `password_secret`, the CA in `ca_file`",
        );
        ok = false;
    }
    if !url.path().is_empty() && url.path() != "/" && url.path()[1..].parse::<u16>().is_err() {
        diag.error(path, "the path, when present, is a database number (/0)");
        ok = false;
    }
    ok.then_some(url)
}

/// The client for `url`, the password from a secret in place of the URL's, and `ca` as the
/// only root of trust when given. The rustls provider is installed first: the process has
/// two rustls backends and rustls would otherwise refuse to pick one.
fn build_client(
    url: &url::Url,
    password: Option<&str>,
    ca: Option<&[u8]>,
) -> redis::RedisResult<redis::Client> {
    let mut info = url.as_str().into_connection_info()?;
    if let Some(password) = password {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    if url.scheme() == "rediss" {
        pingora::tls::install_default_crypto_provider();
    }
    match ca {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        None => redis::Client::open(info),
    }
}

/// `url` with `***` for its password.
fn masked(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for redis::RedisError {
    /// The error without anything from the URL (which may hold a password): its kind, and
    /// for a socket or TLS failure the system's words for it.
    fn kind_description(&self) -> String {
        let kind = format!("{:?}", self.kind());
        match std::error::Error::source(self) {
            Some(source) if self.is_io_error() => format!("{kind}: {source}"),
            _ => kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::secrets::Secret;

    fn compile(
        yaml: &str,
        secrets: &HashMap<String, Secret>,
    ) -> (Option<RedisStore>, Vec<(String, String)>) {
        let spec: RedisSpec = serde_yaml::from_str(yaml).expect("spec");
        let mut diag = Diagnostics::default();
        let store = RedisStore::compile(Some(&spec), secrets, &mut diag);
        let errors = diag
            .errors()
            .iter()
            .map(|p| (p.path.clone(), p.message.clone()))
            .collect();
        (store, errors)
    }

    #[test]
    fn urls_are_checked_with_their_path() {
        let none = HashMap::new();
        for (url, expected) in [
            ("http://cache:6379", "scheme `http`"),
            ("redis://", "no host"),
            ("cache:6379", "scheme `cache`"),
            ("not a url", "not a URL"),
            ("rediss://cache:6378/#insecure", "#insecure"),
            ("redis://cache:6379/x", "database number"),
        ] {
            let (store, errors) = compile(&format!("{{url: \"{url}\"}}"), &none);
            assert!(store.is_none(), "{url}");
            assert_eq!(errors.len(), 1, "{url}: {errors:?}");
            assert_eq!(errors[0].0, "rate_limits.redis.url");
            assert!(errors[0].1.contains(expected), "{url}: {}", errors[0].1);
        }
        let (_, errors) = compile("{replicas: 2}", &none);
        assert_eq!(errors[0].0, "rate_limits.redis.url");
        assert!(errors[0].1.contains("required"), "{errors:?}");
        for url in [
            "redis://cache:6379",
            "rediss://10.0.0.3:6378/0",
            "redis://u:p@cache",
        ] {
            let (store, errors) = compile(&format!("{{url: \"{url}\"}}"), &none);
            assert!(store.is_some() && errors.is_empty(), "{url}: {errors:?}");
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let none = HashMap::new();
        let (store, _) = compile("{url: \"redis://app:s3cr3t-pw@cache:6379/0\"}", &none);
        let store = store.expect("store");
        assert_eq!(store.display_url(), "redis://app:***@cache:6379/0");
        assert!(!format!("{store:?}").contains("s3cr3t-pw"));

        let secrets = HashMap::from([("REDIS_AUTH".to_owned(), Secret::new("s3cr3t-pw"))]);
        let (store, errors) = compile(
            "{url: \"redis://cache\", password_secret: REDIS_AUTH}",
            &secrets,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let store = store.expect("store");
        assert!(!format!("{store:?}").contains("s3cr3t-pw"));
        assert_eq!(store.display_url(), "redis://cache");

        let (_, errors) = compile(
            "{url: \"redis://:other@cache\", password_secret: REDIS_AUTH}",
            &secrets,
        );
        assert_eq!(errors[0].0, "rate_limits.redis.password_secret");
        assert!(errors
            .iter()
            .all(|(_, m)| !m.contains("other") && !m.contains("s3cr3t")));
        let (_, errors) = compile(
            "{url: \"redis://cache\", password_secret: MISSING}",
            &secrets,
        );
        assert_eq!(
            errors,
            vec![(
                "rate_limits.redis.password_secret".to_owned(),
                "secret MISSING is not set".to_owned()
            )]
        );
    }

    #[test]
    fn a_rotated_password_does_not_adopt_the_old_connection() {
        let store = |pw: &str| {
            let secrets = HashMap::from([("REDIS_AUTH".to_owned(), Secret::new(pw))]);
            compile(
                "{url: \"redis://cache\", password_secret: REDIS_AUTH}",
                &secrets,
            )
            .0
            .expect("store")
        };
        assert_eq!(store("a").identity, store("a").identity);
        assert_ne!(store("a").identity, store("b").identity);
    }

    #[test]
    fn the_ca_file_is_checked() {
        let none = HashMap::new();
        let (_, errors) = compile("{url: \"redis://cache\", ca_file: /nonexistent.pem}", &none);
        assert_eq!(errors[0].0, "rate_limits.redis.ca_file");
        assert!(errors[0].1.contains("rediss://"), "{errors:?}");
        let (_, errors) = compile(
            "{url: \"rediss://cache\", ca_file: /nonexistent.pem}",
            &none,
        );
        assert_eq!(errors[0].0, "rate_limits.redis.ca_file");
        assert!(errors[0].1.contains("cannot read"), "{errors:?}");
        let not_pem = tempfile::NamedTempFile::new().expect("file");
        std::fs::write(not_pem.path(), "hello").expect("write");
        let (_, errors) = compile(
            &format!(
                "{{url: \"rediss://cache\", ca_file: {}}}",
                not_pem.path().display()
            ),
            &none,
        );
        assert!(errors[0].1.contains("no PEM certificate"), "{errors:?}");
    }
}
