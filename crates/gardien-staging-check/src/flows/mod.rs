//! The flows, one concern per file. Each takes the shared [`Context`] and returns
//! `Ok(())` or the reason it failed; the runner times and prints it.

pub mod backend;
pub mod browser;
pub mod delivery;
pub mod limits;
pub mod origin;
pub mod tokens;

use std::path::PathBuf;

use crate::http::{self, Answer};

/// A user signed up by this run (a fresh random email), with its token once logged in.
#[derive(Debug, Clone, Default)]
pub struct User {
    pub email: String,
    pub password: String,
    pub token: String,
    pub id: String,
}

impl User {
    /// A new user with an address no earlier run used.
    pub fn fresh(label: &str) -> User {
        let id = uuid::Uuid::new_v4().simple().to_string();
        User {
            email: format!("staging-{label}-{}@example.com", &id[..12]),
            // Random, never printed.
            password: format!("staging-{id}"),
            ..User::default()
        }
    }
}

/// What the flows share: where gardien is, which origins to use, what local handles the
/// run has, and the users signed up along the way.
#[derive(Debug)]
pub struct Context {
    pub client: reqwest::Client,
    /// gardien's public URL, without a trailing slash.
    pub base: String,
    /// The frontend origin the policy allows.
    pub origin: String,
    /// An origin the policy must refuse.
    pub refused_origin: String,
    /// Local control: gardien-backend's own address (to prove it refuses a caller that
    /// bypasses gardien).
    pub backend_url: Option<String>,
    /// Local control: the PEM key the identity provider signs with (to mint an expired token).
    pub signing_key: Option<PathBuf>,
    /// An admin's credentials (`STAGING_ADMIN_EMAIL`, `STAGING_ADMIN_PASSWORD`).
    pub admin: Option<User>,
    /// Requests of the load run.
    pub load_requests: usize,
    /// Requests per second of the load run (kept under the per-user limit).
    pub load_rate: u32,
    /// Failed requests the load run may have.
    pub load_error_budget: f64,
    /// Local control: the primary providers fail, so delivery must name the fallbacks.
    pub expect_fallback: bool,
    /// The phone number the sms goes to.
    pub phone: String,
    /// Local control: both origins serve the test frontend and Chromium is installed, so
    /// the browser flow runs.
    pub browser: bool,
    pub alice: User,
    pub bob: User,
}

impl Context {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` with `token`.
    pub async fn get(&self, path: &str, token: &str) -> Result<Answer, String> {
        http::send(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    /// Logs `user` in and returns the token.
    pub async fn login(&self, user: &User) -> Result<String, String> {
        let answer = http::send(
            self.client
                .post(self.url("/api/auth/login"))
                .header("Origin", &self.origin)
                .json(&serde_json::json!({ "email": user.email, "password": user.password })),
        )
        .await?;
        answer.expect(200, "login")?;
        answer.field("/token")
    }

    /// Signs `user` up from the frontend origin, logs in, and learns its id from `/api/me`.
    pub async fn sign_up(&self, user: &mut User) -> Result<(), String> {
        let answer = http::send(
            self.client
                .post(self.url("/api/auth/register"))
                .header("Origin", &self.origin)
                .json(&serde_json::json!({ "email": user.email, "password": user.password })),
        )
        .await?;
        if !answer.status.is_success() {
            return Err(answer.unexpected("sign-up: expected 2xx"));
        }
        origin::expect_allowed(&answer, &self.origin, "sign-up")?;
        user.token = self.login(user).await?;
        let me = self.get("/api/me", &user.token).await?;
        me.expect(200, "/api/me after login")?;
        user.id = me.field("/user_id")?;
        Ok(())
    }
}
