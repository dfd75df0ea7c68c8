//! JWT validation through the real gateway, against a JWKS server of the tests' own with
//! RSA, EC and Ed25519 keys: every refusal reason and attack, rotation, outages, identity
//! headers and their signature. The upstream counts its requests to prove refused tokens
//! never reach it.

mod support;

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Header};
use serde_json::{json, Value};
use support::jwt::{claims, forge, hs_with_secret, now, JwksServer, TestKey};
use support::{client, error_shape, header, GatewayProcess, RecordingUpstream};

const ISSUER: &str = "https://id.test";
const HS_ISSUER: &str = "https://hs.test";
const AUDIENCE: &str = "gardien-test";
const INTERNAL_SECRET: &str = "internal-secret-for-tests-0123456789abcdef";
const HS_SECRET: &str = "hs-secret-for-tests-0123456789abcdef-0123";

const POLICY: &str = r#"
environment: dev
listen: "${GARDIEN_LISTEN}"
admin_listen: "${GARDIEN_ADMIN_LISTEN}"
upstreams:
  api: { url: "${API_UPSTREAM_URL}", connect_timeout: 1s, read_timeout: 2s }
routes:
  - { name: auth, prefix: /api/auth/, upstream: api, auth: public }
  - { name: admin, prefix: /api/admin, upstream: api, roles: [admin] }
  - { name: api, prefix: /api/, upstream: api }
jwt:
  issuers:
    - issuer: "https://id.test"
      audiences: [gardien-test]
      algorithms: [RS256, PS256, ES256, ES384, EdDSA]
      jwks_url: "${JWKS_URL}"
      leeway: 30s
      required_claims: [sub]
      jwks_refresh: "${JWKS_REFRESH:-2s}"
      jwks_cooldown: 2s
      jwks_stale_after: 3s
    - issuer: "https://hs.test"
      audiences: [gardien-test]
      algorithms: [HS256]
      secret: TEST_HS_SECRET
  cache_size: 1000
server: { threads: 1, graceful_shutdown_timeout: 1s }
"#;

struct Setup {
    api: RecordingUpstream,
    jwks: JwksServer,
    gateway: GatewayProcess,
    key: TestKey,
}

async fn setup_with(keys: &[&TestKey], refresh: &str) -> Setup {
    let api = RecordingUpstream::start().await;
    let jwks = JwksServer::start(keys).await;
    let gateway = GatewayProcess::start(
        POLICY,
        &[
            ("API_UPSTREAM_URL", &api.url()),
            ("JWKS_URL", &jwks.url()),
            ("JWKS_REFRESH", refresh),
            ("TEST_HS_SECRET", HS_SECRET),
            ("GARDIEN_INTERNAL_SECRET", INTERNAL_SECRET),
        ],
    )
    .await;
    Setup {
        api,
        jwks,
        gateway,
        key: TestKey::rsa_a("k1"),
    }
}

async fn setup() -> Setup {
    let rsa = TestKey::rsa_a("k1");
    let keys = [
        &rsa,
        &TestKey::rsa_a_with_alg("k1-ps", Algorithm::PS256),
        &TestKey::ec256("ec1"),
        &TestKey::ec384("ec2"),
        &TestKey::ed25519("ed1"),
    ];
    setup_with(&keys, "1h").await
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn call(gateway: &GatewayProcess, path: &str, token: Option<&str>) -> Answer {
    let mut request = client().get(gateway.url(path));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    Answer {
        status,
        headers,
        body,
    }
}

/// Asserts a refusal with its code, its challenge, and that the upstream was not called.
async fn assert_refused(s: &Setup, token: Option<&str>, code: &str) {
    let before = s.api.count();
    let answer = call(&s.gateway, "/api/things", token).await;
    assert_eq!(answer.status, 401, "{code}: {}", answer.body);
    assert_eq!(error_shape(&answer.body).0, code, "{}", answer.body);
    let challenge = header(&answer.headers, "www-authenticate").expect("WWW-Authenticate");
    if code == "token_missing" {
        assert_eq!(challenge, r#"Bearer realm="gardien""#);
    } else {
        assert!(
            challenge.starts_with(
                r#"Bearer realm="gardien", error="invalid_token", error_description=""#
            ),
            "{challenge}"
        );
    }
    assert_eq!(
        s.api.count(),
        before,
        "{code}: the upstream is never called"
    );
}

fn good_claims(sub: &str) -> Value {
    claims(ISSUER, AUDIENCE, sub, 600)
}

#[tokio::test]
async fn valid_tokens_pass_with_signed_identity_headers() {
    let s = setup().await;
    for key in [
        TestKey::rsa_a("k1"),
        TestKey::rsa_a_with_alg("k1-ps", Algorithm::PS256),
        TestKey::ec256("ec1"),
        TestKey::ec384("ec2"),
        TestKey::ed25519("ed1"),
    ] {
        let mut c = good_claims("user-42");
        c["roles"] = json!(["reader", "writer"]);
        let answer = call(&s.gateway, "/api/me", Some(&key.sign(&c))).await;
        assert_eq!(answer.status, 200, "{:?}: {}", key.alg, answer.body);
        let seen = s.api.last();
        assert_eq!(
            seen.headers.get("x-user-id").map(String::as_str),
            Some("user-42")
        );
        assert_eq!(
            seen.headers.get("x-user-email").map(String::as_str),
            Some("user-42@example.com")
        );
        assert_eq!(
            seen.headers.get("x-user-roles").map(String::as_str),
            Some("reader,writer")
        );
        let signature = seen.headers.get("x-gardien-identity").expect("signed");
        let forwarded: Vec<(&str, &[u8])> = ["x-user-email", "x-user-id", "x-user-roles"]
            .iter()
            .map(|name| (*name, seen.headers[*name].as_bytes()))
            .collect();
        let unix_now = u64::try_from(now()).expect("positive");
        assert_eq!(
            gardien_identity::verify(
                INTERNAL_SECRET.as_bytes(),
                signature,
                "GET",
                "/api/me",
                &forwarded,
                unix_now,
                30
            ),
            Ok(()),
            "{signature}"
        );
        assert!(gardien_identity::verify(
            b"wrong key",
            signature,
            "GET",
            "/api/me",
            &forwarded,
            unix_now,
            30
        )
        .is_err());
    }
    let hs = hs_with_secret(
        Algorithm::HS256,
        HS_SECRET.as_bytes(),
        None,
        &claims(HS_ISSUER, AUDIENCE, "svc", 600),
    );
    assert_eq!(call(&s.gateway, "/api/things", Some(&hs)).await.status, 200);
}

#[tokio::test]
async fn every_failure_reason_is_a_401_that_never_reaches_the_upstream() {
    let s = setup().await;
    let key = &s.key;

    assert_refused(&s, None, "token_missing").await;
    assert_refused(&s, Some("not-a-jwt"), "token_malformed").await;
    assert_refused(&s, Some("a.b"), "token_malformed").await;

    assert_refused(
        &s,
        Some(&key.sign(&claims(ISSUER, AUDIENCE, "u", -120))),
        "token_expired",
    )
    .await;
    let mut future = good_claims("u");
    future["nbf"] = json!(now() + 120);
    assert_refused(&s, Some(&key.sign(&future)), "token_not_yet_valid").await;
    let mut issued_later = good_claims("u");
    issued_later["iat"] = json!(now() + 120);
    assert_refused(&s, Some(&key.sign(&issued_later)), "token_not_yet_valid").await;

    // Signed by another key published under k1's kid.
    let impostor = TestKey::rsa_b("k1");
    assert_refused(&s, Some(&impostor.sign(&good_claims("u"))), "bad_signature").await;
    // A valid signature moved onto other claims.
    let genuine = key.sign(&good_claims("u"));
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let tampered_claims = forge(&json!({}), &good_claims("admin"), b"")
        .split('.')
        .nth(1)
        .map(str::to_owned);
    let tampered_claims = tampered_claims.expect("claims part");
    parts[1] = &tampered_claims;
    assert_refused(&s, Some(&parts.join(".")), "bad_signature").await;

    assert_refused(
        &s,
        Some(&TestKey::rsa_a("nope").sign(&good_claims("u"))),
        "unknown_key",
    )
    .await;
    assert_refused(
        &s,
        Some(&TestKey::rsa_a_with_alg("k1", Algorithm::RS384).sign(&good_claims("u"))),
        "alg_not_allowed",
    )
    .await;
    assert_refused(
        &s,
        Some(&key.sign(&claims("https://other.test", AUDIENCE, "u", 600))),
        "wrong_issuer",
    )
    .await;
    assert_refused(
        &s,
        Some(&key.sign(&claims(ISSUER, "someone-else", "u", 600))),
        "wrong_audience",
    )
    .await;
    let mut no_sub = good_claims("u");
    no_sub.as_object_mut().expect("object").remove("sub");
    assert_refused(&s, Some(&key.sign(&no_sub)), "claim_missing").await;
    let mut no_exp = good_claims("u");
    no_exp.as_object_mut().expect("object").remove("exp");
    assert_refused(&s, Some(&key.sign(&no_exp)), "claim_missing").await;

    let metrics = s.gateway.metrics().await;
    assert!(
        metrics.contains(r#"gardien_jwt_validations_total{issuer="https://id.test",reason="token_expired",result="invalid"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn expiry_honours_the_leeway_both_ways() {
    let s = setup().await;
    let inside = s.key.sign(&claims(ISSUER, AUDIENCE, "u", -10));
    assert_eq!(
        call(&s.gateway, "/api/x", Some(&inside)).await.status,
        200,
        "10s late, 30s leeway"
    );
    assert_refused(
        &s,
        Some(&s.key.sign(&claims(ISSUER, AUDIENCE, "u", -45))),
        "token_expired",
    )
    .await;
    let mut early = good_claims("u");
    early["nbf"] = json!(now() + 10);
    assert_eq!(
        call(&s.gateway, "/api/x", Some(&s.key.sign(&early)))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn algorithm_attacks_are_refused() {
    let s = setup().await;
    // alg: none, with and without a signature, in any case.
    for alg in ["none", "None", "NONE"] {
        let token = forge(
            &json!({"alg": alg, "typ": "JWT", "kid": "k1"}),
            &good_claims("admin"),
            b"",
        );
        assert_refused(&s, Some(&token), "alg_not_allowed").await;
    }
    // Key confusion: HS256 "signed" with the RSA public key a JWKS publishes.
    let confused = hs_with_secret(
        Algorithm::HS256,
        s.key.public_pem(),
        Some("k1"),
        &good_claims("admin"),
    );
    assert_refused(&s, Some(&confused), "alg_not_allowed").await;
    // A header claiming RS256 on an EC key's signature.
    let ec = TestKey::ec256("ec1").sign(&good_claims("u"));
    let mut parts: Vec<String> = ec.split('.').map(str::to_owned).collect();
    parts[0] = forge(&json!({"alg": "RS256", "kid": "ec1"}), &json!({}), b"")
        .split('.')
        .next()
        .expect("header")
        .to_owned();
    assert_refused(&s, Some(&parts.join(".")), "unknown_key").await;
}

#[tokio::test]
async fn token_supplied_keys_are_never_fetched() {
    let s = setup().await;
    let attacker_key = TestKey::rsa_b("attacker");
    let attacker = JwksServer::start(&[&attacker_key]).await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("attacker".into());
    header.jku = Some(attacker.url());
    header.x5u = Some(attacker.url());
    let token = attacker_key.sign_with(header, &good_claims("admin"));
    assert_refused(&s, Some(&token), "unknown_key").await;
    // Also with an embedded JWK.
    let embedded = forge(
        &json!({"alg": "RS256", "kid": "attacker", "jwk": attacker_key.jwk()}),
        &good_claims("admin"),
        b"sig",
    );
    assert_refused(&s, Some(&embedded), "unknown_key").await;
    assert_eq!(
        attacker.fetches(),
        0,
        "the attacker's JWKS is never fetched"
    );
}

#[tokio::test]
async fn forged_kid_floods_do_not_hammer_the_identity_provider() {
    let s = setup().await;
    let before = s.jwks.fetches();
    let started = Instant::now();
    for i in 0..60 {
        let token = TestKey::rsa_a(&format!("forged-{i}")).sign(&good_claims("u"));
        assert_refused(&s, Some(&token), "unknown_key").await;
    }
    let elapsed = started.elapsed();
    let fetched = s.jwks.fetches() - before;
    // One refetch per 2s cooldown at most (plus one for the window the loop starts in).
    let allowed = 1 + usize::try_from(elapsed.as_secs() / 2).expect("small");
    assert!(fetched >= 1, "an unknown kid triggers one refetch");
    assert!(
        fetched <= allowed,
        "{fetched} fetches in {elapsed:?} for 60 forged kids"
    );
}

#[tokio::test]
async fn rotation_new_key_at_once_removed_key_after_refresh() {
    let old = TestKey::rsa_a("k1");
    let s = setup_with(&[&old], "2s").await;
    let old_token = old.sign(&good_claims("u"));
    assert_eq!(
        call(&s.gateway, "/api/x", Some(&old_token)).await.status,
        200
    );

    let new = TestKey::rsa_b("k2");
    s.jwks.set_keys(&[&old, &new]);
    let new_token = new.sign(&good_claims("u"));
    assert_eq!(
        call(&s.gateway, "/api/x", Some(&new_token)).await.status,
        200,
        "an unknown kid refetches the set at once"
    );

    s.jwks.set_keys(&[&new]);
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        // The old token is in the verified-token cache: the key set change must flush it.
        let answer = call(&s.gateway, "/api/x", Some(&old_token)).await;
        if answer.status == 401 {
            assert_eq!(error_shape(&answer.body).0, "unknown_key");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the removed key still validates after 8s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        call(&s.gateway, "/api/x", Some(&new_token)).await.status,
        200
    );
}

#[tokio::test]
async fn identity_provider_down_keeps_the_last_good_keys() {
    let key = TestKey::rsa_a("k1");
    let mut s = setup_with(&[&key], "1s").await;
    s.jwks.stop().await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // A token never seen before (not cached) still validates with the cached key set.
    let token = key.sign(&good_claims("fresh-user"));
    assert_eq!(call(&s.gateway, "/api/x", Some(&token)).await.status, 200);
    let (_, readyz) = s.gateway.admin_json("/readyz").await;
    assert_eq!(readyz["status"], "degraded", "{readyz}");
    assert_eq!(readyz["jwks"][0]["stale"], true, "{readyz}");
    assert!(readyz["jwks"][0]["last_error"].is_string(), "{readyz}");

    s.jwks.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, readyz) = s.gateway.admin_json("/readyz").await;
        if readyz["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again: {readyz}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_on_every_route() {
    let s = setup().await;
    let spoof = |request: reqwest::RequestBuilder| {
        request
            .header("X-User-Id", "admin")
            .header("X-User-Roles", "admin")
            .header("X-User-Email", "boss@example.com")
            .header("X-Gardien-Identity", "v1;0;deadbeef")
    };
    let response = spoof(client().post(s.gateway.url("/api/auth/login")))
        .send()
        .await
        .expect("public");
    assert_eq!(response.status(), 200);
    let seen = s.api.last();
    for name in ["x-user-id", "x-user-roles", "x-user-email"] {
        assert!(
            !seen.headers.contains_key(name),
            "public route: {name} stripped"
        );
    }
    assert_ne!(
        seen.headers.get("x-gardien-identity").map(String::as_str),
        Some("v1;0;deadbeef")
    );

    let token = s.key.sign(&good_claims("real-user"));
    let response = spoof(client().get(s.gateway.url("/api/me")))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("protected");
    assert_eq!(response.status(), 200);
    let seen = s.api.last();
    assert_eq!(
        seen.headers.get("x-user-id").map(String::as_str),
        Some("real-user")
    );
    assert_eq!(
        seen.headers.get("x-user-email").map(String::as_str),
        Some("real-user@example.com")
    );
    assert_eq!(
        seen.headers.get("x-user-roles").map(String::as_str),
        Some(""),
        "no roles in the token"
    );
}

#[tokio::test]
async fn roles_are_required_where_the_route_says() {
    let s = setup().await;
    let before = s.api.count();
    let plain = s.key.sign(&good_claims("u"));
    let answer = call(&s.gateway, "/api/admin/users", Some(&plain)).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(error_shape(&answer.body).0, "insufficient_role");
    assert!(header(&answer.headers, "www-authenticate")
        .is_some_and(|c| c.contains("insufficient_scope")));
    assert_eq!(s.api.count(), before);

    let mut admin = good_claims("boss");
    admin["roles"] = json!(["admin"]);
    assert_eq!(
        call(&s.gateway, "/api/admin/users", Some(&s.key.sign(&admin)))
            .await
            .status,
        200
    );
    admin["roles"] = json!("admin");
    assert_eq!(
        call(&s.gateway, "/api/admin/users", Some(&s.key.sign(&admin)))
            .await
            .status,
        200,
        "a string roles claim"
    );
}

#[tokio::test]
async fn repeated_tokens_are_served_from_the_cache() {
    let s = setup().await;
    let token = s.key.sign(&good_claims("u"));
    for _ in 0..5 {
        assert_eq!(call(&s.gateway, "/api/x", Some(&token)).await.status, 200);
    }
    let metrics = s.gateway.metrics().await;
    assert!(
        metrics.contains(r#"gardien_jwt_cache_total{result="hit"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gardien_jwt_cache_total{result="miss"} 1"#),
        "{metrics}"
    );
}
