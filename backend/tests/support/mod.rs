//! Test support for gardien-backend: a fresh database per test — a SQLite file in a temp
//! directory, or a schema of its own in the real PostgreSQL at
//! `postgres://postgres@127.0.0.1:5432/test` (override with `TEST_POSTGRES_URL`) — and the
//! whole service called in-process, with the identity headers gardien would send, signed.
//!
//! `both_databases!` turns one async test body into a SQLite test and a PostgreSQL test.

#![allow(dead_code)] // each test file uses a different part of this module

pub mod delivery;
pub mod process;
pub mod ready;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use gardien_backend::config::{Environment, Options};
use gardien_backend::db::{Db, PoolSettings};
use gardien_backend::metrics::Metrics;
use gardien_backend::{app, AppState};
use gardien_secrets::Secret;
use serde_json::Value;
use tower::ServiceExt;

/// The internal secret the tests' service verifies signatures with.
pub const SECRET: &str = "backend-tests-internal-secret-0123456789";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A database of a test's own; the PostgreSQL schema is dropped by [`TestApp::finish`].
pub struct TestDb {
    pub url: String,
    pub db: Db,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new(engine: Engine) -> TestDb {
        let test_db = Self::empty(engine).await;
        test_db
            .db
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrations on {engine:?}: {e}"));
        test_db
    }

    /// A fresh database with nothing in it (no migration run): for the migration tests.
    pub async fn empty(engine: Engine) -> TestDb {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                let db = Db::connect(&url, PoolSettings::default())
                    .await
                    .expect("sqlite");
                TestDb {
                    url,
                    db,
                    schema: None,
                    _dir: Some(dir),
                }
            }
            Engine::Postgres => {
                let schema = format!("gbt_{}", uuid::Uuid::new_v4().simple());
                let admin = Db::connect(
                    &postgres_url(),
                    PoolSettings {
                        max_connections: 1,
                        ..PoolSettings::default()
                    },
                )
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (database `test`)");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin.pool)
                    .await
                    .expect("create schema");
                admin.pool.close().await;
                let separator = if postgres_url().contains('?') {
                    '&'
                } else {
                    '?'
                };
                let url = format!(
                    "{}{separator}options=-c%20search_path%3D{schema}",
                    postgres_url()
                );
                let db = Db::connect(&url, PoolSettings::default())
                    .await
                    .expect("postgres");
                TestDb {
                    url,
                    db,
                    schema: Some(schema),
                    _dir: None,
                }
            }
        }
    }

    pub fn engine(&self) -> Engine {
        if self.schema.is_some() {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    }

    pub async fn drop_schema(&self) {
        if let Some(schema) = &self.schema {
            self.db.pool.close().await;
            if let Ok(admin) = Db::connect(
                &postgres_url(),
                PoolSettings {
                    max_connections: 1,
                    ..PoolSettings::default()
                },
            )
            .await
            {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&admin.pool)
                    .await;
                admin.pool.close().await;
            }
        }
    }
}

/// The service over a test database, called in-process.
pub struct TestApp {
    pub router: Router,
    pub db: TestDb,
    pub signed: bool,
}

impl TestApp {
    /// The service verifying gardien's signature with [`SECRET`].
    pub async fn new(engine: Engine) -> TestApp {
        Self::with(engine, true).await
    }

    /// `signed: false`: a service without the internal secret (development mode).
    pub async fn with(engine: Engine, signed: bool) -> TestApp {
        let db = TestDb::new(engine).await;
        let mut options = Options::try_parse_from_args(["gardien-backend"]).expect("options");
        options.identity_window = Duration::from_secs(30);
        // Unsigned: a development service without the internal secret.
        options.environment = if signed {
            Environment::Production
        } else {
            Environment::Dev
        };
        let mut secrets: HashMap<String, Secret> = HashMap::new();
        if signed {
            secrets.insert("GARDIEN_INTERNAL_SECRET".into(), Secret::new(SECRET));
        }
        let state = AppState {
            db: db.db.clone(),
            options: Arc::new(options),
            metrics: Arc::new(Metrics::new().expect("metrics")),
            outbox: Arc::new(tokio::sync::Notify::new()),
            circuits: Arc::default(),
            secrets: Arc::new(secrets),
        };
        Self::from_state(db, state, signed)
    }

    /// The service over `state` (whose database is `db`'s).
    pub fn from_state(db: TestDb, state: AppState, signed: bool) -> TestApp {
        TestApp {
            router: app(state),
            db,
            signed,
        }
    }

    /// A request as gardien would forward it for `user` (roles comma-separated).
    pub fn request(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: self,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
            identity: None,
            sign: self.signed,
            tamper: false,
        }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> Call<'_> {
        self.request(Method::PUT, path)
    }

    pub fn patch(&self, path: &str) -> Call<'_> {
        self.request(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.request(Method::DELETE, path)
    }

    /// Drops the PostgreSQL schema; call at the end of each test.
    pub async fn finish(self) {
        self.db.drop_schema().await;
    }
}

/// One request being built.
pub struct Call<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    identity: Option<(String, Option<String>, String)>,
    sign: bool,
    tamper: bool,
}

impl Call<'_> {
    /// As user `id` (email `<id>@example.com`) with no role.
    pub fn user(self, id: &str) -> Self {
        self.identity(id, Some(&format!("{id}@example.com")), "")
    }

    /// As user `id` with the admin role.
    pub fn admin(self, id: &str) -> Self {
        self.identity(id, Some(&format!("{id}@example.com")), "admin")
    }

    pub fn identity(mut self, id: &str, email: Option<&str>, roles: &str) -> Self {
        self.identity = Some((id.to_owned(), email.map(str::to_owned), roles.to_owned()));
        self
    }

    /// Without gardien's signature (a request that bypassed the gateway).
    pub fn unsigned(mut self) -> Self {
        self.sign = false;
        self
    }

    /// Signed, then an identity header changed (a forged identity).
    pub fn tampered(mut self) -> Self {
        self.tamper = true;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(serde_json::to_vec(body).expect("json"));
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self
    }

    /// A raw body, with the given content type.
    pub fn raw(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self.headers
            .push(("content-type".into(), content_type.into()));
        self
    }

    pub async fn send(self) -> Answer {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.path);
        let mut identity: Vec<(&str, String)> = Vec::new();
        if let Some((id, email, roles)) = &self.identity {
            identity.push(("x-user-id", id.clone()));
            if let Some(email) = email {
                identity.push(("x-user-email", email.clone()));
            }
            identity.push(("x-user-roles", roles.clone()));
        }
        let path_only = self.path.split('?').next().unwrap_or("/").to_owned();
        if self.sign {
            let pairs: Vec<(&str, &[u8])> =
                identity.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
            let now = u64::try_from(jiff::Timestamp::now().as_second()).expect("now");
            let signature = gardien_identity::sign(
                SECRET.as_bytes(),
                self.method.as_str(),
                &path_only,
                now,
                &pairs,
            );
            builder = builder.header(gardien_identity::HEADER, signature);
        }
        if self.tamper {
            if let Some(entry) = identity.iter_mut().find(|(n, _)| *n == "x-user-id") {
                entry.1 = "someone-else".into();
            }
        }
        for (name, value) in &identity {
            builder = builder.header(*name, value);
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Body::from(self.body.unwrap_or_default()))
            .expect("request");
        let response = self
            .app
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
            bytes: bytes.to_vec(),
        }
    }
}

/// A response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Asserts the documented error shape and returns its code.
    pub fn error_code(&self) -> String {
        let error = &self.json["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error shape: {}",
            self.json
        );
        assert!(
            error["request_id"].as_str().is_some_and(|m| !m.is_empty()),
            "error shape: {}",
            self.json
        );
        error["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {}", self.json))
            .to_owned()
    }

    /// The `path`s of `error.fields`.
    pub fn field_paths(&self) -> Vec<String> {
        self.json["error"]["fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f["path"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs one async test body on SQLite and on PostgreSQL:
///
/// ```ignore
/// both_databases!(creates_a_report, |app| async move { … app.finish().await; });
/// ```
#[macro_export]
macro_rules! both_databases {
    ($name:ident, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $app = $crate::support::TestApp::new($crate::support::Engine::Sqlite).await;
                $body.await
            }

            #[tokio::test]
            async fn postgres() {
                let $app = $crate::support::TestApp::new($crate::support::Engine::Postgres).await;
                $body.await
            }
        }
    };
}
