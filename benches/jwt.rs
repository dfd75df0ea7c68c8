//! JWT validation through `JwtPolicy::validate`, the gateway's own path: RS256 and ES256
//! with the signature checked every time (cache off), and a verified-token cache hit
//! (target: under 2 µs per request, claim extraction included), plus the
//! `X-Gardien-Identity` signature every forwarded request gets. Run with
//! `cargo bench --bench jwt`; figures go in docs/BENCHMARKS.md.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gardien::admin::metrics::Metrics;
use gardien::edge::identity::IdentityPolicy;
use gardien::edge::jwt::{AuthorizationHeader, JwtPolicy};
use gardien::policy::schema::JwtSpec;
use gardien::policy::{Diagnostics, Environment};
use gardien::secrets::EnvSecrets;
use http::HeaderValue;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const RSA_KEY: &[u8] = include_bytes!("../tests/fixtures/keys/rsa-a.pem");
const EC_KEY: &[u8] = include_bytes!("../tests/fixtures/keys/ec-p256.pem");
const ISSUER: &str = "https://id.bench";

struct Fixture {
    jwt: JwtPolicy,
    identity: IdentityPolicy,
    rs256: HeaderValue,
    es256: HeaderValue,
}

fn fixture(cache_size: usize) -> Fixture {
    let rsa = EncodingKey::from_rsa_pem(RSA_KEY).expect("rsa fixture");
    let ec = EncodingKey::from_ec_pem(EC_KEY).expect("ec fixture");
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).expect("rsa jwk");
    rsa_jwk.common.key_id = Some("rsa".into());
    let mut ec_jwk = Jwk::from_encoding_key(&ec, Algorithm::ES256).expect("ec jwk");
    ec_jwk.common.key_id = Some("ec".into());

    let spec: JwtSpec = serde_yaml::from_str(&format!(
        "{{issuers: [{{issuer: '{ISSUER}', audiences: [bench], algorithms: [RS256, ES256], jwks_url: 'https://id.bench/jwks.json'}}], cache_size: {cache_size}}}"
    ))
    .expect("spec");
    let env: HashMap<String, String> =
        HashMap::from([("GARDIEN_INTERNAL_SECRET".into(), "x".repeat(48))]);
    let mut diag = Diagnostics::default();
    let jwt = JwtPolicy::compile(&spec, Environment::Production, &EnvSecrets(&env), &mut diag);
    let identity = IdentityPolicy::compile(
        None,
        None,
        None,
        None,
        Environment::Production,
        &EnvSecrets(&env),
        &mut diag,
    );
    assert!(!diag.has_errors(), "{:?}", diag.errors());
    let document = serde_json::to_vec(&json!({"keys": [rsa_jwk, ec_jwk]})).expect("jwks");
    jwt.issuers()[0]
        .jwks()
        .expect("jwks issuer")
        .install_document(&document)
        .expect("keys");

    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": ISSUER, "aud": "bench", "sub": "user-42", "email": "user-42@example.com",
        "roles": ["reader", "writer"], "iat": now, "nbf": now, "exp": now + 3600,
    });
    let sign = |alg, kid: &str, key: &EncodingKey| {
        let header = Header {
            kid: Some(kid.into()),
            ..Header::new(alg)
        };
        let token = jsonwebtoken::encode(&header, &claims, key).expect("sign");
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header")
    };
    Fixture {
        rs256: sign(Algorithm::RS256, "rsa", &rsa),
        es256: sign(Algorithm::ES256, "ec", &ec),
        jwt,
        identity,
    }
}

fn jwt_validation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let metrics = Metrics::new().expect("metrics");
    let uncached = fixture(0);
    let cached = fixture(1000);

    let mut group = c.benchmark_group("jwt_validate");
    for (name, fixture, token) in [
        ("rs256_uncached", &uncached, &uncached.rs256),
        ("es256_uncached", &uncached, &uncached.es256),
        ("rs256_cache_hit", &cached, &cached.rs256),
        ("es256_cache_hit", &cached, &cached.es256),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let verified = fixture
                    .jwt
                    .validate(
                        AuthorizationHeader::One(black_box(token)),
                        &fixture.identity,
                        &metrics,
                    )
                    .await
                    .expect("valid");
                black_box(verified)
            })
        });
    }
    group.finish();

    let verified = runtime
        .block_on(cached.jwt.validate(
            AuthorizationHeader::One(&cached.rs256),
            &cached.identity,
            &metrics,
        ))
        .expect("valid");
    c.bench_function("identity_signature", |b| {
        b.iter(|| {
            cached.identity.signature(
                black_box("GET"),
                black_box("/api/reports/42"),
                black_box(1_795_000_000),
                &verified.headers,
            )
        })
    });
}

criterion_group!(benches, jwt_validation);
criterion_main!(benches);
