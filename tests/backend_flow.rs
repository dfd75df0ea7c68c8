//! The whole path, as production runs it: the demo API (sign-up, login, JWKS), gardien with
//! the shipped `policies/dev.yaml`, and gardien-backend verifying gardien's signature. Log
//! in through the gateway, update preferences, create and list reports — and see that an
//! identity the client makes up is never what the backend gets.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::processes::{BackendProcess, DemoApi};
use support::{client, header, GatewayProcess};

const SECRET: &str = "backend-flow-internal-secret-0123456789";

struct Stack {
    _demo: DemoApi,
    backend: BackendProcess,
    gateway: GatewayProcess,
}

async fn stack() -> Stack {
    let demo = DemoApi::start().await;
    let backend = BackendProcess::start(&[("GARDIEN_INTERNAL_SECRET", SECRET)]).await;
    let (api, backend_url) = (demo.url(), backend.url());
    let jwks = format!("{api}/.well-known/jwks.json");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/dev.yaml");
    let gateway = GatewayProcess::start_file(
        &policy,
        &[
            ("API_UPSTREAM_URL", &api),
            ("BACKEND_UPSTREAM_URL", &backend_url),
            ("JWT_ISSUER", &api),
            ("JWKS_URL", &jwks),
            ("GARDIEN_INTERNAL_SECRET", SECRET),
        ],
        tempfile::tempdir().expect("tempdir"),
    )
    .await;
    Stack {
        _demo: demo,
        backend,
        gateway,
    }
}

/// Signs up and logs in through the gateway; returns (user id, bearer token).
async fn log_in(gateway: &GatewayProcess, email: &str) -> (String, String) {
    let credentials = json!({"email": email, "password": "correct horse battery"});
    let registered: Value = client()
        .post(gateway.url("/api/auth/register"))
        .json(&credentials)
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let login: Value = client()
        .post(gateway.url("/api/auth/login"))
        .json(&credentials)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let id = registered["id"].as_str().expect("user id").to_owned();
    let token = login["token"].as_str().expect("token").to_owned();
    (id, format!("Bearer {token}"))
}

#[tokio::test]
async fn preferences_and_reports_through_the_gateway() {
    let s = stack().await;
    let (ada, ada_token) = log_in(&s.gateway, "ada@example.com").await;
    let (_, bob_token) = log_in(&s.gateway, "bob@example.com").await;

    // Preferences: the defaults, with the email gardien forwarded from the token.
    let response = client()
        .get(s.gateway.url("/api/notifications/preferences"))
        .header("Authorization", &ada_token)
        .send()
        .await
        .expect("get preferences");
    assert_eq!(response.status(), 200);
    let etag = header(response.headers(), "etag").expect("ETag");
    let preferences: Value = response.json().await.expect("json");
    assert_eq!(preferences["contacts"]["email"], "ada@example.com");

    // An update with the ETag read, then the same If-Match again: 412.
    let update = |if_match: String| {
        client()
            .patch(s.gateway.url("/api/notifications/preferences"))
            .header("Authorization", &ada_token)
            .header("If-Match", if_match)
            .json(&json!({"digest": "daily"}))
            .send()
    };
    let updated = update(etag.clone()).await.expect("patch");
    assert_eq!(updated.status(), 200);
    assert_ne!(header(updated.headers(), "etag"), Some(etag.clone()));
    assert_eq!(update(etag).await.expect("patch").status(), 412);

    // Reports: create two, list them; a made-up X-User-Id is stripped by the gateway.
    for title in ["Q1", "Q2"] {
        let created = client()
            .post(s.gateway.url("/api/reports"))
            .header("Authorization", &ada_token)
            .header("X-User-Id", "intruder")
            .json(&json!({"title": title, "type": "summary", "payload": {"rows": 3}}))
            .send()
            .await
            .expect("create report");
        assert_eq!(created.status(), 201);
        let report: Value = created.json().await.expect("json");
        assert_eq!(
            report["owner_id"],
            ada.as_str(),
            "the token's sub, never the header"
        );
    }
    let list: Value = client()
        .get(s.gateway.url("/api/reports?order=asc"))
        .header("Authorization", &ada_token)
        .header("X-User-Id", "intruder")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let titles: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["title"].as_str())
        .collect();
    assert_eq!(titles, vec!["Q1", "Q2"]);

    // Bob sees none of Ada's reports, and cannot read one by id.
    let id = list["items"][0]["id"].as_str().expect("id").to_owned();
    let bobs: Value = client()
        .get(s.gateway.url("/api/reports"))
        .header("Authorization", &bob_token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(bobs["items"].as_array().map(Vec::len), Some(0));
    let peek = client()
        .get(s.gateway.url(&format!("/api/reports/{id}")))
        .header("Authorization", &bob_token)
        .send()
        .await
        .expect("peek");
    assert_eq!(peek.status(), 404);

    // No token: the gateway refuses; straight to the backend: it refuses what gardien did
    // not sign, whatever identity the caller claims.
    let anonymous = client()
        .get(s.gateway.url("/api/reports"))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(anonymous.status(), 401);
    let bypass = client()
        .get(format!("{}/api/reports", s.backend.url()))
        .header("X-User-Id", ada.as_str())
        .header("X-User-Roles", "admin")
        .send()
        .await
        .expect("bypass");
    assert_eq!(bypass.status(), 401);
}
