//! Rate limiting through the real gateway: 429s with honest `Retry-After`, IETF RateLimit
//! headers, client addresses that cannot be spoofed, per-user keys, the adaptive factor,
//! the in-flight cap, and limits shared by two gateways through a real Redis — including a
//! Redis that stops and comes back, one that wants a password, and one behind TLS — and the
//! same answers from both stores for the same state.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gardien::admin::metrics::Metrics;
use gardien::edge::rate_limit::{header_values, Phase, RateLimits, RequestFacts, StoreState};
use gardien::policy::schema::RateLimitsSpec;
use gardien::policy::Diagnostics;
use gardien::secrets::EnvSecrets;
use http::HeaderMap;
use support::jwt::{claims, JwksServer, TestKey};
use support::{client, error_shape, header, GatewayProcess, RecordingUpstream};

/// A policy with one rule, and the given extra top-level YAML (store, adaptive…).
fn policy(rules: &str, rate_limits_extra: &str, top_extra: &str) -> String {
    format!(
        r#"
environment: dev
listen: "${{GARDIEN_LISTEN}}"
admin_listen: "${{GARDIEN_ADMIN_LISTEN}}"
{top_extra}
upstreams:
  api: {{ url: "${{API_UPSTREAM_URL}}", connect_timeout: 1s, read_timeout: 5s }}
routes:
  - {{ name: auth, prefix: /api/auth/, upstream: api, auth: public }}
  - {{ name: api, prefix: /api/, upstream: api, auth: public }}
rate_limits:
{rate_limits_extra}
  rules:
{rules}
server: {{ threads: 1, graceful_shutdown_timeout: 1s }}
"#
    )
}

async fn get(gateway: &GatewayProcess, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(gateway.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn the_burst_then_429_with_headers_and_an_honest_retry_after() {
    let api = RecordingUpstream::start().await;
    let rules = "    - { name: login, routes: [auth], key: ip, rate: 1/s, burst: 3 }";
    let gateway = GatewayProcess::with_upstream(&policy(rules, "", ""), &api).await;

    for remaining in (0..3).rev() {
        let response = get(&gateway, "/api/auth/login", &[]).await;
        assert_eq!(response.status(), 200);
        let h = response.headers();
        // q is the burst, w the time to refill it: never fewer than the `r` promised.
        assert_eq!(
            header(h, "ratelimit-policy").as_deref(),
            Some(r#""login";q=3;w=3"#)
        );
        let state = header(h, "ratelimit").expect("RateLimit");
        assert!(
            state.starts_with(&format!(r#""login";r={remaining};t="#)),
            "{state}"
        );
    }
    let before = api.count();
    let response = get(&gateway, "/api/auth/login", &[]).await;
    assert_eq!(response.status(), 429);
    let h = response.headers().clone();
    let retry_after: u64 = header(&h, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // t: when the whole quota is back (the bucket full), not the next request.
    let state = header(&h, "ratelimit").expect("RateLimit");
    let t: u64 = state
        .strip_prefix(r#""login";r=0;t="#)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{state}"));
    assert!((2..=3).contains(&t) && t >= retry_after, "{state}");
    assert_eq!(
        error_shape(&response.text().await.expect("body")).0,
        "rate_limited"
    );
    assert_eq!(
        api.count(),
        before,
        "a limited request never reaches the upstream"
    );

    // Waiting as long as Retry-After says is enough.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(get(&gateway, "/api/auth/login", &[]).await.status(), 200);

    // Another route: the rule does not apply, and no RateLimit header is sent.
    let other = get(&gateway, "/api/other", &[]).await;
    assert_eq!(other.status(), 200);
    assert!(header(other.headers(), "ratelimit").is_none());
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"gardien_rate_limit_decisions_total{result="limited",rule="login"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_cannot_choose_its_key_with_x_forwarded_for() {
    let api = RecordingUpstream::start().await;
    let rules = "    - { name: per-ip, key: ip, rate: 1/min, burst: 2 }";
    // No `client_ip` (the socket peer): every spoofed address is the same client.
    let gateway = GatewayProcess::with_upstream(&policy(rules, "", ""), &api).await;
    let statuses: Vec<u16> =
        futures_statuses(&gateway, &["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]).await;
    assert_eq!(statuses, vec![200, 200, 429, 429]);

    // Behind one trusted hop (loopback here), the address it appended is the client.
    let trusted = GatewayProcess::with_upstream(
        &policy(
            rules,
            "",
            r#"client_ip: { from: x_forwarded_for, trusted_hops: 1, trusted_peers: ["127.0.0.1/32"] }"#,
        ),
        &api,
    )
    .await;
    let statuses: Vec<u16> =
        futures_statuses(&trusted, &["1.1.1.1", "1.1.1.1", "1.1.1.1", "2.2.2.2"]).await;
    assert_eq!(statuses, vec![200, 200, 429, 200]);
}

async fn futures_statuses(gateway: &GatewayProcess, forwarded_for: &[&str]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for address in forwarded_for {
        let response = get(gateway, "/api/x", &[("X-Forwarded-For", address)]).await;
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn per_user_limits_are_keyed_on_the_verified_sub() {
    let api = RecordingUpstream::start().await;
    let key = TestKey::rsa_a("k1");
    let jwks = JwksServer::start(&[&key]).await;
    let text = policy("    - { name: per-user, key: user, rate: 1/min, burst: 2 }", "", "")
        .replace("prefix: /api/, upstream: api, auth: public }", "prefix: /api/, upstream: api }")
        + &format!(
            "jwt:\n  issuers:\n    - {{ issuer: https://id.test, audiences: [t], algorithms: [RS256], jwks_url: \"{}\" }}\n",
            jwks.url()
        );
    let gateway = GatewayProcess::start(&text, &[("API_UPSTREAM_URL", &api.url())]).await;
    let token = |sub: &str| {
        format!(
            "Bearer {}",
            key.sign(&claims("https://id.test", "t", sub, 600))
        )
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let mut seen = Vec::new();
    for auth in [&alice, &alice, &alice, &bob, &bob, &bob] {
        seen.push(
            get(&gateway, "/api/x", &[("Authorization", auth)])
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(seen, vec![200, 200, 429, 200, 200, 429]);
    // A refused token is limited by the pre-auth rules, not counted against a user.
    assert_eq!(get(&gateway, "/api/x", &[]).await.status(), 401);
}

#[tokio::test]
async fn the_adaptive_factor_drops_when_the_upstream_slows_and_recovers() {
    let api = RecordingUpstream::start().await;
    let rules = "    - { name: all, key: route, rate: 1000/s, burst: 1000 }";
    let adaptive = "  adaptive: { latency_target: 100ms, error_ratio_target: 0.5, min_factor: 0.2, decrease: 0.5, increase: 0.5, window: 2s, interval: 500ms, min_requests: 5 }";
    let gateway = GatewayProcess::with_upstream(&policy(rules, adaptive, ""), &api).await;
    let factor = || async {
        gateway
            .metric(r#"gardien_adaptive_factor{upstream="api"}"#)
            .await
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while factor().await != 1.0 {
        assert!(Instant::now() < deadline, "the factor is never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    while factor().await >= 1.0 {
        assert!(Instant::now() < deadline, "the factor never dropped");
        get(&gateway, "/api/slow/250", &[]).await;
    }
    let lowered = factor().await;
    assert!((0.2..1.0).contains(&lowered), "{lowered}");

    let deadline = Instant::now() + Duration::from_secs(10);
    while factor().await < 1.0 {
        assert!(Instant::now() < deadline, "the factor never recovered");
        get(&gateway, "/api/fast", &[]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_in_flight_cap_sheds_with_503() {
    let api = RecordingUpstream::start().await;
    let rules = "    - { name: all, key: route, rate: 1000/s, burst: 1000 }";
    let adaptive = "  adaptive: { max_in_flight: 2 }";
    let gateway = GatewayProcess::with_upstream(&policy(rules, adaptive, ""), &api).await;
    let requests = (0..6).map(|_| get(&gateway, "/api/slow/1000", &[]));
    let responses = futures::future::join_all(requests).await;
    let mut ok = 0;
    let mut shed = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(
                    header(response.headers(), "retry-after").as_deref(),
                    Some("1")
                );
                assert_eq!(
                    error_shape(&response.text().await.expect("body")).0,
                    "overloaded"
                );
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, shed), (2, 4));
    assert!(
        gateway
            .metric(r#"gardien_upstream_shed_total{upstream="api"}"#)
            .await
            >= 4.0
    );
}

/// A unique Redis key prefix, so runs never share state.
fn prefix() -> String {
    format!(
        "gardien-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    )
}

#[tokio::test]
async fn two_gateways_share_one_limit_through_redis() {
    let api = RecordingUpstream::start().await;
    let rules = "    - { name: shared, key: ip, rate: 10/min, burst: 10 }";
    let store = format!(
        "  store: redis\n  redis: {{ url: \"redis://127.0.0.1:6379\", replicas: 2, timeout: 1s, key_prefix: \"{}\" }}",
        prefix()
    );
    let text = policy(rules, &store, "");
    let a = GatewayProcess::with_upstream(&text, &api).await;
    let b = GatewayProcess::with_upstream(&text, &api).await;
    assert_eq!(
        a.metric(r#"gardien_rate_limit_store{state="redis"}"#).await,
        1.0
    );
    let mut allowed = 0;
    for i in 0..30 {
        let gateway = if i % 2 == 0 { &a } else { &b };
        if get(gateway, "/api/x", &[]).await.status() == 200 {
            allowed += 1;
        }
    }
    assert_eq!(
        allowed,
        10,
        "both gateways together allow the rule's burst once\n{}\n{}",
        a.log(),
        b.log()
    );
}

/// A `redis-server` of the test's own, killed on drop. Redis cannot bind port 0 and report
/// it, so a random high port is tried and the port is used only once Redis's log says it
/// is ready; a port already in use is retried with another (bounded).
struct OwnRedis {
    port: u16,
    args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

/// Why a `redis-server` did not start.
enum Refused {
    PortInUse,
}

impl OwnRedis {
    /// Plain TCP on a random port, with `extra` arguments (`--requirepass`…).
    async fn start(extra: &[&str]) -> OwnRedis {
        Self::start_with(|port| {
            let mut args = vec!["--port".to_owned(), port.to_string()];
            args.extend(extra.iter().map(|a| (*a).to_owned()));
            args
        })
        .await
    }

    /// `args(port)` are the arguments for one port.
    async fn start_with(args: impl Fn(u16) -> Vec<String>) -> OwnRedis {
        for _ in 0..20 {
            let port = rand::random_range(20_000..60_000u16);
            let mut redis = OwnRedis {
                port,
                args: args(port),
                dir: tempfile::tempdir().expect("tempdir"),
                child: None,
                starts: 0,
            };
            match redis.spawn().await {
                Ok(()) => return redis,
                Err(Refused::PortInUse) => continue,
            }
        }
        panic!("redis-server found no free port in 20 tries");
    }

    async fn spawn(&mut self) -> Result<(), Refused> {
        self.starts += 1;
        let log = self.dir.path().join(format!("redis-{}.log", self.starts));
        let child = Command::new("redis-server")
            .args(&self.args)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(std::fs::File::create(&log).expect("redis log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if text.contains("Address already in use") {
                self.stop();
                return Err(Refused::PortInUse);
            }
            assert!(!exited, "redis-server exited:\n{text}");
            assert!(
                Instant::now() < deadline,
                "redis-server not ready in 10s:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What redis-server printed so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("redis-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// Starts again on the same port (a gateway is configured with it).
    async fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.spawn().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "port {} stayed in use",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn redis_down_falls_back_to_local_limits_then_recovers() {
    let api = RecordingUpstream::start().await;
    let mut redis = OwnRedis::start(&[]).await;
    let port = redis.port;
    let rules = "    - { name: shared, key: ip, rate: 10/min, burst: 10 }";
    let store = format!(
        "  store: redis\n  redis: {{ url: \"redis://127.0.0.1:{port}\", replicas: 2, timeout: 100ms, key_prefix: \"{}\" }}",
        prefix()
    );
    let gateway = GatewayProcess::with_upstream(&policy(rules, &store, ""), &api).await;
    let state = |s: &'static str| {
        let gateway = &gateway;
        async move {
            gateway
                .metric(&format!("gardien_rate_limit_store{{state=\"{s}\"}}"))
                .await
        }
    };
    assert_eq!(state("redis").await, 1.0);

    redis.stop();
    // Locally, with 2 replicas, each gateway allows half the burst: 5.
    let mut allowed = 0;
    for _ in 0..12 {
        if get(&gateway, "/api/x", &[]).await.status() == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5, "rate / replicas while Redis is down");
    assert_eq!(state("fallback").await, 1.0);
    assert!(gateway.metric("gardien_rate_limit_fallbacks_total").await >= 1.0);
    assert!(
        gateway.log().contains("Redis unreachable"),
        "{}",
        gateway.log()
    );

    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while state("redis").await != 1.0 {
        assert!(Instant::now() < deadline, "never went back to Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back on Redis (fresh state there): the full shared burst again.
    let mut allowed = 0;
    for _ in 0..12 {
        if get(&gateway, "/api/x", &[]).await.status() == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10);
}

/// `rate_limits:` compiled in this process, with `secrets` for `password_secret`.
fn limits(yaml: &str) -> RateLimits {
    let spec: RateLimitsSpec = serde_yaml::from_str(yaml).expect("spec");
    let env: std::collections::HashMap<String, String> = Default::default();
    let mut diag = Diagnostics::default();
    let limits = RateLimits::compile(&spec, &["api".into()], &env, &EnvSecrets(&env), &mut diag);
    assert!(!diag.has_errors(), "{:?}", diag.errors());
    limits
}

/// The `RateLimit-Policy` / `RateLimit` values of `n` requests from one address.
async fn answers(limits: &RateLimits, n: usize) -> Vec<(String, String)> {
    let metrics = Metrics::new().expect("metrics");
    if let Some(redis) = limits.redis() {
        redis.probe(&metrics).await;
        assert_eq!(redis.state(), StoreState::Redis, "{redis:?}");
    }
    let headers = HeaderMap::new();
    let facts = RequestFacts {
        route: 0,
        route_name: "api",
        client_ip: "203.0.113.9".parse().expect("ip"),
        user: None,
        headers: &headers,
        factor: 1.0,
    };
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let verdict = limits.check(Phase::PreAuth, &facts, &metrics).await;
        seen.push(header_values(&verdict.header_items));
    }
    seen
}

#[tokio::test]
async fn both_stores_answer_alike_for_the_same_requests() {
    let rules = "rules: [{name: alike, key: ip, rate: 6/min, burst: 4}]";
    let local = answers(&limits(&format!("{{{rules}}}")), 6).await;
    let redis = answers(
        &limits(&format!(
            "{{store: redis, redis: {{url: \"redis://127.0.0.1:6379\", timeout: 1s, key_prefix: \"{}\"}}, {rules}}}",
            prefix()
        )),
        6,
    )
    .await;
    let policy = r#""alike";q=4;w=40"#.to_owned();
    let expected: Vec<(String, String)> = [
        r#""alike";r=3;t=10"#,
        r#""alike";r=2;t=20"#,
        r#""alike";r=1;t=30"#,
        r#""alike";r=0;t=40"#,
        r#""alike";r=0;t=40"#,
        r#""alike";r=0;t=40"#,
    ]
    .iter()
    .map(|state| (policy.clone(), (*state).to_owned()))
    .collect();
    assert_eq!(local, expected, "local");
    assert_eq!(redis, expected, "redis");
}

#[tokio::test]
async fn the_redis_script_answers_as_the_bucket_says_for_a_given_state() {
    let prefix = prefix();
    let limits = limits(&format!(
        "{{store: redis, redis: {{url: \"redis://127.0.0.1:6379\", timeout: 1s, key_prefix: \"{prefix}\"}}, rules: [{{name: st, key: ip, rate: 200/s, burst: 400}}]}}"
    ));
    let bucket = *limits.rules()[0].bucket();
    let client = redis::Client::open("redis://127.0.0.1:6379").expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut connection)
        .await
        .expect("TIME");
    // A stamp a minute ahead: the state does not drain while the test runs.
    let stamp = secs * 1_000_000 + micros + 60_000_000;
    let cost = bucket.cost(1.0);
    let capacity = u64::try_from(bucket.capacity_ns()).expect("capacity");
    for used in [
        0,
        1,
        4_999_999,
        5_000_000,
        1_234_567_891,
        capacity - 5_000_000,
        capacity,
    ] {
        let key = format!("{prefix}:2:{{st:203.0.113.9}}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(format!("{stamp}:{used}"))
            .query_async(&mut connection)
            .await
            .expect("SET");
        let answer = answers(&limits, 1).await.remove(0).1;
        let expected = match bucket.allowed(used + bucket.cells_ns(cost), cost) {
            _ if used + bucket.cells_ns(cost) > capacity => {
                let gardien::edge::rate_limit::Decision::Refused { reset, .. } =
                    bucket.refused(used, cost)
                else {
                    panic!("refused")
                };
                format!("\"st\";r=0;t={}", reset.as_secs_f64().ceil() as u64)
            }
            gardien::edge::rate_limit::Decision::Allowed { remaining, reset } => {
                format!(
                    "\"st\";r={remaining};t={}",
                    reset.as_secs_f64().ceil() as u64
                )
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(answer, expected, "used {used} ns");
    }
}

/// `gardien check` on `policy`, with only `env` set.
fn check(policy: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).expect("policy");
    let mut command = Command::new(env!("CARGO_BIN_EXE_gardien"));
    command
        .args(["check", "--policy"])
        .arg(&path)
        .env_clear()
        .env("SECRETS_DIR", dir.path().join("secrets"))
        .envs(env.iter().copied());
    let output = command.output().expect("gardien check");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

const CHECK_POLICY: &str = r#"
environment: staging
listen: "127.0.0.1:8080"
admin_listen: "127.0.0.1:9090"
client_ip: direct
upstreams:
  api: { url: "http://127.0.0.1:3000" }
routes:
  - { name: api, prefix: /api/, upstream: api, auth: public }
rate_limits:
  store: redis
  redis: REDIS_SECTION
  rules:
    - { name: ip, key: ip, rate: 10/s }
"#;

#[test]
fn check_names_a_missing_or_bad_redis_url_with_its_path_and_never_the_password() {
    let secret = (
        "GARDIEN_INTERNAL_SECRET",
        "a-staging-secret-of-at-least-32-bytes!!",
    );
    let policy = |section: &str| CHECK_POLICY.replace("REDIS_SECTION", section);
    let (ok, out) = check(&policy(r#"{ url: "${REDIS_URL}" }"#), &[secret]);
    assert!(!ok);
    assert!(
        out.contains("error: rate_limits.redis.url: environment variable REDIS_URL is not set"),
        "{out}"
    );
    let (ok, out) = check(
        &policy(r#"{ url: "${REDIS_URL}" }"#),
        &[secret, ("REDIS_URL", "http://app:hunter2-pw@cache:6379")],
    );
    assert!(!ok);
    assert!(
        out.contains("error: rate_limits.redis.url: scheme `http`: use redis:// or rediss://"),
        "{out}"
    );
    assert!(!out.contains("hunter2-pw"), "{out}");
    let (ok, out) = check(&policy("{ replicas: 2 }"), &[secret]);
    assert!(!ok);
    assert!(
        out.contains("error: rate_limits.redis.url: required with `store: redis`"),
        "{out}"
    );

    // A good URL with a password: accepted, and the password is in no line of the output.
    let (ok, out) = check(
        &policy(r#"{ url: "${REDIS_URL}" }"#),
        &[secret, ("REDIS_URL", "rediss://app:hunter2-pw@cache:6378")],
    );
    assert!(ok, "{out}");
    assert!(!out.contains("hunter2-pw"), "{out}");
    // The password as a secret: looked up through the chain and reported by name only.
    let (ok, out) = check(
        &policy(r#"{ url: "redis://cache:6379", password_secret: REDIS_AUTH }"#),
        &[secret],
    );
    assert!(!ok);
    assert!(out.contains("REDIS_AUTH"), "{out}");
    let (ok, out) = check(
        &policy(r#"{ url: "redis://cache:6379", password_secret: REDIS_AUTH }"#),
        &[secret, ("REDIS_AUTH", "hunter2-pw")],
    );
    assert!(ok, "{out}");
    assert!(out.contains("secret REDIS_AUTH"), "{out}");
    assert!(!out.contains("hunter2-pw"), "{out}");
}

/// A policy whose store is the Redis at `url`, with the extra `redis:` fields.
fn redis_policy(url: &str, extra: &str) -> String {
    policy(
        "    - { name: shared, key: ip, rate: 10/min, burst: 10 }",
        &format!(
            "  store: redis\n  redis: {{ url: \"{url}\", replicas: 2, timeout: 1s, key_prefix: \"{}\"{extra} }}",
            prefix()
        ),
        "",
    )
}

async fn allowed_of(gateway: &GatewayProcess, n: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..n {
        if get(gateway, "/api/x", &[]).await.status() == 200 {
            allowed += 1;
        }
    }
    allowed
}

#[tokio::test]
async fn a_redis_with_a_password_shares_limits_with_the_right_one_only() {
    let api = RecordingUpstream::start().await;
    let password = "correct-horse-redis-7f3a";
    let redis = OwnRedis::start(&["--requirepass", password]).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let text = redis_policy(&url, ", password_secret: REDIS_AUTH");
    let env = |pw: &'static str| {
        let upstream = api.url();
        move || {
            vec![
                ("API_UPSTREAM_URL".to_owned(), upstream.clone()),
                ("REDIS_AUTH".to_owned(), pw.to_owned()),
            ]
        }
    };
    let start = |pw: &'static str| {
        let vars = env(pw)();
        let text = text.clone();
        async move {
            let vars: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            GatewayProcess::start(&text, &vars).await
        }
    };
    let metric = "gardien_rate_limit_store{state=\"redis\"}";

    // The right password, from the secret: both gateways share the burst through Redis.
    let a = start("correct-horse-redis-7f3a").await;
    let b = start("correct-horse-redis-7f3a").await;
    assert_eq!(a.metric(metric).await, 1.0, "{}\n{}", a.log(), redis.log());
    assert_eq!(
        allowed_of(&a, 6).await + allowed_of(&b, 10).await,
        10,
        "{}\n{}",
        a.log(),
        b.log()
    );

    // The right password in the URL (`:password@`): the same.
    let in_url = GatewayProcess::start(
        &redis_policy(&format!("redis://:{password}@127.0.0.1:{}", redis.port), ""),
        &[("API_UPSTREAM_URL", &api.url())],
    )
    .await;
    assert_eq!(in_url.metric(metric).await, 1.0, "{}", in_url.log());
    assert!(!in_url.log().contains(password), "{}", in_url.log());

    // A wrong one: local limits at burst / replicas, and the log says why without it.
    let wrong = start("wrong-password-9c1e").await;
    assert_eq!(
        wrong
            .metric("gardien_rate_limit_store{state=\"fallback\"}")
            .await,
        1.0
    );
    assert_eq!(allowed_of(&wrong, 8).await, 5, "rate / replicas");
    let log = wrong.log();
    assert!(log.contains("AuthenticationFailed"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{}", redis.port)), "{log}");
    assert!(!log.contains("wrong-password-9c1e"), "{log}");
    assert!(!log.contains(password), "{log}");
    drop(redis);
}

#[tokio::test]
async fn an_acl_user_and_password_in_the_url_are_used() {
    let api = RecordingUpstream::start().await;
    let redis = OwnRedis::start(&["--user", "gardien", "on", ">acl-pw-51d2", "~*", "+@all"]).await;
    let url = format!("redis://gardien:acl-pw-51d2@127.0.0.1:{}", redis.port);
    let gateway =
        GatewayProcess::start(&redis_policy(&url, ""), &[("API_UPSTREAM_URL", &api.url())]).await;
    assert_eq!(
        gateway
            .metric("gardien_rate_limit_store{state=\"redis\"}")
            .await,
        1.0,
        "{}",
        gateway.log()
    );
    assert_eq!(allowed_of(&gateway, 12).await, 10);
    assert!(!gateway.log().contains("acl-pw-51d2"));
}

/// A CA and a server certificate for 127.0.0.1 it signed, as PEM files in `dir`.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gardien test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
    let server = server_params
        .signed_by(&server_key, &issuer)
        .expect("server certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("ca");
    std::fs::write(&paths.1, server.pem()).expect("cert");
    std::fs::write(&paths.2, server_key.serialize_pem()).expect("key");
    paths
}

#[tokio::test]
async fn rediss_with_the_servers_ca_file_shares_limits_and_another_ca_is_refused() {
    let api = RecordingUpstream::start().await;
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = tls_files(certs.path());
    let redis = OwnRedis::start_with(|port| {
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            cert.to_str().expect("path"),
            "--tls-key-file",
            key.to_str().expect("path"),
            "--tls-ca-cert-file",
            ca.to_str().expect("path"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "tls-pw-0b7e",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect()
    })
    .await;
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let extra = format!(
        ", ca_file: \"{}\", password_secret: REDIS_AUTH",
        ca.display()
    );
    let gateway = GatewayProcess::start(
        &redis_policy(&url, &extra),
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("REDIS_AUTH", "tls-pw-0b7e"),
        ],
    )
    .await;
    assert_eq!(
        gateway
            .metric("gardien_rate_limit_store{state=\"redis\"}")
            .await,
        1.0,
        "{}",
        gateway.log()
    );
    assert_eq!(allowed_of(&gateway, 12).await, 10);

    // Another CA (not the one that signed the server's certificate): no connection.
    let other = tempfile::tempdir().expect("tempdir");
    let (other_ca, _, _) = tls_files(other.path());
    let extra = format!(
        ", ca_file: \"{}\", password_secret: REDIS_AUTH",
        other_ca.display()
    );
    let refused = GatewayProcess::start(
        &redis_policy(&url, &extra),
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("REDIS_AUTH", "tls-pw-0b7e"),
        ],
    )
    .await;
    assert_eq!(
        refused
            .metric("gardien_rate_limit_store{state=\"fallback\"}")
            .await,
        1.0
    );
    let log = refused.log();
    assert!(log.contains("Redis probe failed"), "{log}");
    assert!(log.to_lowercase().contains("certificate"), "{log}");
    assert!(!log.contains("tls-pw-0b7e"), "{log}");

    // No `ca_file`: the system's roots, which do not know the test's CA.
    let system_roots = GatewayProcess::start(
        &redis_policy(&url, ", password_secret: REDIS_AUTH"),
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("REDIS_AUTH", "tls-pw-0b7e"),
        ],
    )
    .await;
    assert_eq!(
        system_roots
            .metric("gardien_rate_limit_store{state=\"fallback\"}")
            .await,
        1.0
    );
    assert!(
        system_roots.log().contains("UnknownIssuer"),
        "{}",
        system_roots.log()
    );
}
