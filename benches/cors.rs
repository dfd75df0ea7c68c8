//! One CORS decision against a policy with 50 exact origins and 5 subdomain patterns
//! (target: under 200 ns). Run with `cargo bench --bench cors`; figures go in
//! docs/BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use gardien::edge::cors::{CorsPolicy, OriginHeader};
use gardien::policy::schema::CorsSpec;
use gardien::policy::{Diagnostics, Environment};
use http::HeaderValue;

fn policy() -> CorsPolicy {
    let mut origins: Vec<String> = (0..50)
        .map(|i| format!("https://app{i}.customer{i}.example"))
        .collect();
    origins.extend((0..5).map(|i| format!("https://*.tenant{i}.example.com")));
    let spec = CorsSpec {
        origins,
        origins_from_env: vec![],
        credentials: true,
        methods: Some(
            ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec(),
        ),
        headers: ["Authorization", "Content-Type", "X-Request-Id", "If-Match"]
            .map(String::from)
            .to_vec(),
        expose: vec!["X-Request-Id".into()],
        max_age: Some(Duration::from_secs(600)),
    };
    let env: HashMap<String, String> = HashMap::new();
    let mut diag = Diagnostics::default();
    let policy = CorsPolicy::compile(&spec, Environment::Production, &env, &mut diag);
    assert!(!diag.has_errors(), "{:?}", diag.errors());
    policy.expect("benchmark policy compiles")
}

fn cors_decision(c: &mut Criterion) {
    let policy = policy();
    let cases = [
        ("exact_hit", "https://app37.customer37.example"),
        ("exact_hit_uppercase", "https://APP37.Customer37.example"),
        ("pattern_hit", "https://eu.shop.tenant4.example.com"),
        ("miss", "https://evil.example.net"),
        ("malformed", "https://app37.customer37.example/path"),
    ];
    let mut group = c.benchmark_group("cors_decision");
    for (name, origin) in cases {
        let origin = HeaderValue::from_static(origin);
        group.bench_function(name, |b| {
            b.iter(|| policy.check_actual(OriginHeader::One(black_box(&origin))))
        });
    }
    let origin = HeaderValue::from_static("https://eu.shop.tenant4.example.com");
    let method = HeaderValue::from_static("PUT");
    let headers = HeaderValue::from_static("authorization,content-type,if-match");
    group.bench_function("preflight_pattern_hit", |b| {
        b.iter(|| {
            policy.check_preflight(
                black_box(&origin),
                black_box(&method),
                Some(black_box(&headers)),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, cors_decision);
criterion_main!(benches);
