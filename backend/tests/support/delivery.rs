//! Delivery under test: the fake SendGrid, Twilio and SMTP servers on loopback, and the
//! service in-process with real delivery workers and real providers pointed at the fakes
//! through their base URLs (nothing in the code under test knows they are fakes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use gardien_backend::config::Options;
use gardien_backend::delivery::circuit::Circuits;
use gardien_backend::delivery::config::NotifyMode;
use gardien_backend::delivery::providers::ProvidersConfig;
use gardien_backend::delivery::registry::Providers;
use gardien_backend::delivery::{start_workers, Workers};
use gardien_backend::metrics::Metrics;
use gardien_backend::AppState;
use gardien_fakes::sendgrid::FakeSendGrid;
use gardien_fakes::smtp::FakeSmtp;
use gardien_fakes::twilio::{self, FakeTwilio};
use gardien_secrets::{Secret, SecretLookup};
use serde_json::{json, Value};

use super::{Engine, TestApp, TestDb, SECRET};

pub const SENDGRID_KEY: &str = "SG.test-key.0123456789abcdefghijklmnopqrstuvwxyz";
pub const EMAIL_FROM: &str = "gardien <noreply@example.com>";
/// The live senders of the fake Twilio accounts.
pub const TWILIO_FROM: &str = "+14155550100";
pub const TWILIO_SECONDARY_FROM: &str = "+14155550199";

/// Every fake, with the credentials they accept.
pub struct Fakes {
    pub sendgrid: FakeSendGrid,
    pub smtp: FakeSmtp,
    pub twilio: FakeTwilio,
    pub twilio_sid: String,
    pub twilio_token: String,
    pub secondary_sid: String,
    pub secondary_token: String,
}

impl Fakes {
    /// The fakes, with live Twilio accounts (primary and secondary).
    pub async fn start() -> Fakes {
        Self::start_with(false).await
    }

    /// `test_credentials`: the Twilio accounts behave as Twilio test credentials.
    pub async fn start_with(test_credentials: bool) -> Fakes {
        let sendgrid = FakeSendGrid::start().await;
        sendgrid.accept_key(SENDGRID_KEY);
        let smtp = FakeSmtp::start().await;
        let twilio = FakeTwilio::start().await;
        let (twilio_sid, twilio_token) =
            (twilio::random_account_sid(), twilio::random_auth_token());
        let (secondary_sid, secondary_token) =
            (twilio::random_account_sid(), twilio::random_auth_token());
        for (sid, token) in [
            (&twilio_sid, &twilio_token),
            (&secondary_sid, &secondary_token),
        ] {
            if test_credentials {
                twilio.add_test_account(sid, token);
            } else {
                twilio.add_account(sid, token);
            }
        }
        Fakes {
            sendgrid,
            smtp,
            twilio,
            twilio_sid,
            twilio_token,
            secondary_sid,
            secondary_token,
        }
    }

    /// The providers' variables, every provider configured and pointed at its fake.
    pub fn env(&self) -> HashMap<String, String> {
        [
            ("EMAIL_FROM", EMAIL_FROM.to_owned()),
            ("SENDGRID_API_BASE_URL", self.sendgrid.base_url()),
            ("SENDGRID_TIMEOUT", "2s".to_owned()),
            ("SMTP_HOST", self.smtp.host()),
            ("SMTP_PORT", self.smtp.port().to_string()),
            ("SMTP_TLS", "none".to_owned()),
            ("SMTP_TIMEOUT", "2s".to_owned()),
            ("TWILIO_API_BASE_URL", self.twilio.base_url()),
            ("TWILIO_TIMEOUT", "2s".to_owned()),
            ("TWILIO_FROM", TWILIO_FROM.to_owned()),
            ("TWILIO_SECONDARY_FROM", TWILIO_SECONDARY_FROM.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Every provider secret.
    pub fn secrets(&self) -> HashMap<String, Secret> {
        [
            ("SENDGRID_API_KEY", SENDGRID_KEY),
            ("TWILIO_ACCOUNT_SID", &self.twilio_sid),
            ("TWILIO_AUTH_TOKEN", &self.twilio_token),
            ("TWILIO_SECONDARY_ACCOUNT_SID", &self.secondary_sid),
            ("TWILIO_SECONDARY_AUTH_TOKEN", &self.secondary_token),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Secret::new(v)))
        .collect()
    }

    /// The variables and secrets as the environment of a backend process.
    pub fn process_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.env().into_iter().collect();
        for (name, secret) in self.secrets() {
            let value = String::from_utf8(secret.expose().to_vec()).expect("utf-8 secret");
            env.push((name, value));
        }
        env
    }
}

/// The service with delivery workers, in-process.
pub struct DeliveryApp {
    pub app: TestApp,
    pub metrics: Arc<Metrics>,
    pub circuits: Arc<Circuits>,
    workers: Option<Workers>,
}

/// Fast retries and short timeouts, so tests see the whole fallback in seconds.
pub const FAST: &[&str] = &[
    "--notify-poll-interval",
    "100ms",
    "--notify-retry-base",
    "100ms",
    "--notify-retry-max",
    "400ms",
    "--notify-provider-timeout",
    "3s",
    "--notify-lease",
    "10s",
];

impl DeliveryApp {
    /// The service on a fresh `engine` database, in `mode`, with the providers of `env`
    /// and `secrets`; `args` are more `gardien-backend` options (`--notify-…`).
    pub async fn start(
        engine: Engine,
        mode: NotifyMode,
        env: HashMap<String, String>,
        secrets: HashMap<String, Secret>,
        args: &[&str],
    ) -> DeliveryApp {
        let db = TestDb::new(engine).await;
        let mut argv = vec!["gardien-backend"];
        argv.extend_from_slice(FAST);
        argv.extend_from_slice(args);
        let options = Options::try_parse_from_args(argv).expect("options");
        let config = ProvidersConfig::from_env(&env).expect("provider settings");
        let mut secrets = secrets;
        secrets.insert("GARDIEN_INTERNAL_SECRET".into(), Secret::new(SECRET));
        let secrets: Arc<dyn SecretLookup> = Arc::new(secrets);
        let providers = Arc::new(
            Providers::build(&options.delivery, mode, &config, &secrets).expect("providers"),
        );
        let circuits = Arc::new(Circuits::new(
            providers.names(),
            options.delivery.circuit_cooldown,
            options.delivery.circuit_failures,
        ));
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let outbox = Arc::new(tokio::sync::Notify::new());
        let workers = start_workers(
            &options.delivery,
            &db.db,
            providers,
            Arc::clone(&circuits),
            Arc::clone(&metrics),
            Arc::clone(&outbox),
        );
        let state = AppState {
            db: db.db.clone(),
            options: Arc::new(options),
            metrics: Arc::clone(&metrics),
            outbox,
            circuits: Arc::clone(&circuits),
            secrets,
        };
        DeliveryApp {
            app: TestApp::from_state(db, state, true),
            metrics,
            circuits,
            workers: Some(workers),
        }
    }

    /// Creates a template (as an admin).
    pub async fn template(&self, body: Value) {
        let answer = self
            .app
            .post("/api/notifications/templates")
            .admin("root")
            .json(&body)
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    }

    /// Sends a notification (as an admin); its id.
    pub async fn send(&self, body: Value) -> String {
        let answer = self
            .app
            .post("/api/notifications")
            .admin("root")
            .json(&body)
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
        answer.json["id"].as_str().expect("id").to_owned()
    }

    pub async fn view(&self, id: &str) -> Value {
        let answer = self
            .app
            .get(&format!("/api/notifications/{id}"))
            .admin("root")
            .send()
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        answer.json
    }

    /// The notification once no channel is `queued` or `sending`, within `limit`.
    pub async fn settled(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let view = self.view(id).await;
            let pending = view["channels"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["status"] == "queued" || c["status"] == "sending")
            });
            if !pending {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "not settled within {limit:?}: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/metrics` as text.
    pub async fn metrics_text(&self) -> String {
        String::from_utf8(self.app.get("/metrics").send().await.bytes).expect("utf-8")
    }

    /// `/metrics` once it carries every one of `series` (bounded). A worker counts a
    /// delivery right after committing it, so the database can say `sent` a moment before
    /// the counter moves: reading the counter once after `settled` races with that.
    pub async fn metrics_with(&self, series: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let metrics = self.metrics_text().await;
            if series.iter().all(|s| metrics.contains(s)) {
                return metrics;
            }
            assert!(
                Instant::now() < deadline,
                "metrics never showed {series:?}:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the workers and drops the database.
    pub async fn finish(mut self) {
        if let Some(workers) = self.workers.take() {
            workers.stop().await;
        }
        self.app.finish().await;
    }
}

/// An email template `key` of `category` (English only).
pub fn email_template(key: &str, category: &str) -> Value {
    json!({
        "key": key, "category": category, "channel": "email", "default_locale": "en",
        "variables": ["name"],
        "locales": {"en": {"email": {"subject": "Hello {{ name }}", "html": "<p>Hello {{ name }}</p>", "text": "Hello {{ name }}"}}}
    })
}

/// An sms template `key` of `category`.
pub fn sms_template(key: &str, category: &str) -> Value {
    json!({
        "key": key, "category": category, "channel": "sms", "default_locale": "en",
        "variables": ["code"],
        "locales": {"en": {"sms": {"text": "Your code: {{ code }}"}}}
    })
}

/// The channel `name` of a notification view.
pub fn channel<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["channels"]
        .as_array()
        .and_then(|channels| channels.iter().find(|c| c["channel"] == name))
        .unwrap_or_else(|| panic!("no {name} channel in {view}"))
}

/// The `outcome`s of a channel's attempts, with their providers.
pub fn attempts(channel: &Value) -> Vec<(String, String)> {
    channel["attempts"]
        .as_array()
        .map(|attempts| {
            attempts
                .iter()
                .map(|a| {
                    (
                        a["provider"].as_str().unwrap_or_default().to_owned(),
                        a["outcome"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
