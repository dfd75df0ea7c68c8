//! Local rate-limit decisions (target: at least 5 million a second on one core for a hot
//! key), and the memory a tracked key costs, with a flood of a million distinct client
//! addresses against a capped rule. Run with `cargo bench --bench rate_limit`; figures go in
//! docs/BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use gardien::admin::metrics::Metrics;
use gardien::edge::rate_limit::{LocalLimiter, Phase, Rate, RateLimits, RequestFacts};
use gardien::policy::schema::RateLimitsSpec;
use gardien::policy::Diagnostics;
use http::HeaderMap;

/// Resident memory of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn address(i: u32) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn local_decisions(c: &mut Criterion) {
    // A rate no benchmark reaches, so every decision takes the "allowed" path.
    let limiter = LocalLimiter::new(
        Rate {
            count: 10_000_000,
            period: Duration::from_secs(1),
        },
        1_000_000,
        100_000,
    )
    .expect("limiter");
    let hot = "203.0.113.7".to_owned();
    c.bench_function("rate_limit/local_decision_hot_key", |b| {
        b.iter(|| limiter.check(black_box(&hot), 1.0))
    });
    c.bench_function("rate_limit/local_decision_hot_key_factor_0.5", |b| {
        b.iter(|| limiter.check(black_box(&hot), 0.5))
    });

    // The whole rule path the proxy takes: rule selection, key, decision, headers, metrics.
    let spec: RateLimitsSpec =
        serde_yaml::from_str("{rules: [{name: ip, key: ip, rate: 10000000/s, burst: 1000000}]}")
            .expect("spec");
    let mut diag = Diagnostics::default();
    let env: std::collections::HashMap<String, String> = Default::default();
    let limits = RateLimits::compile(
        &spec,
        &["api".into()],
        &env,
        &gardien::secrets::EnvSecrets(&env),
        &mut diag,
    );
    assert!(!diag.has_errors(), "{:?}", diag.errors());
    let metrics = Metrics::new().expect("metrics");
    let headers = HeaderMap::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let facts = RequestFacts {
        route: 0,
        route_name: "api",
        client_ip: "203.0.113.7".parse().expect("ip"),
        user: None,
        headers: &headers,
        factor: 1.0,
    };
    c.bench_function("rate_limit/rule_check_hot_key", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(limits.check(Phase::PreAuth, &facts, &metrics).await) })
    });
}

/// Not a timing: a million distinct keys against rules capped at 100,000 and at 1,000,000
/// keys, printing the keys kept and the resident memory they cost.
fn memory_per_key(_c: &mut Criterion) {
    for cap in [100_000usize, 1_000_000] {
        let limiter = LocalLimiter::new(
            Rate {
                count: 5,
                period: Duration::from_secs(60),
            },
            5,
            cap,
        )
        .expect("limiter");
        let before = rss_bytes();
        for i in 0..1_000_000u32 {
            limiter.check(&address(i), 1.0);
        }
        let after = rss_bytes();
        let kept = limiter.keys();
        assert!(
            kept <= cap + cap / 10,
            "{kept} keys kept with a cap of {cap}"
        );
        println!(
            "rate_limit/memory: cap {cap}: 1,000,000 distinct keys -> {kept} kept, RSS +{:.1} MiB, {:.0} bytes per kept key",
            after.saturating_sub(before) as f64 / (1024.0 * 1024.0),
            after.saturating_sub(before) as f64 / kept.max(1) as f64
        );
        drop(limiter);
    }
}

criterion_group!(benches, local_decisions, memory_per_key);
criterion_main!(benches);
