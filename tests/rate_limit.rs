//! Rate limiting through the real gateway: 429s with honest `Retry-After`, IETF RateLimit
//! headers, client addresses that cannot be spoofed, per-user keys, the adaptive factor,
//! the in-flight cap, and limits shared by two gateways through a real Redis — including a
//! Redis that stops and comes back.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        assert_eq!(
            header(h, "ratelimit-policy").as_deref(),
            Some(r#""login";q=1;w=1"#)
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
    assert_eq!(
        header(&h, "ratelimit").as_deref(),
        Some(&*format!(r#""login";r=0;t={retry_after}"#))
    );
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
    // Untrusted peer (no trusted_proxies): every spoofed address is the same client.
    let gateway = GatewayProcess::with_upstream(&policy(rules, "", ""), &api).await;
    let statuses: Vec<u16> =
        futures_statuses(&gateway, &["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]).await;
    assert_eq!(statuses, vec![200, 200, 429, 429]);

    // Behind a trusted proxy (loopback here), the address it appended is the client.
    let trusted = GatewayProcess::with_upstream(
        &policy(rules, "", r#"trusted_proxies: ["127.0.0.1/32"]"#),
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

/// A `redis-server` of the test's own on a Unix socket in a temporary directory (no TCP
/// port to pick, and a restart finds the same address), killed on drop.
struct OwnRedis {
    socket: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    async fn start(socket: &Path) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        OwnRedis {
            socket: socket.to_path_buf(),
            child: Some(child),
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
    let dir = tempfile::tempdir().expect("a tempdir for Redis");
    let socket = dir.path().join("redis.sock");
    let mut redis = OwnRedis::start(&socket).await;
    let rules = "    - { name: shared, key: ip, rate: 10/min, burst: 10 }";
    let store = format!(
        "  store: redis\n  redis: {{ url: \"redis+unix://{}\", replicas: 2, timeout: 100ms, key_prefix: \"{}\" }}",
        socket.display(),
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

    let _redis = OwnRedis::start(&redis.socket).await;
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
