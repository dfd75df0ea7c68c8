//! Who is calling: the identity gardien verified and forwarded (`X-User-Id`,
//! `X-User-Email`, `X-User-Roles`). With `GARDIEN_INTERNAL_SECRET` set, a request must also
//! carry gardien's `X-Gardien-Identity` signature over exactly those headers, within the
//! identity window — so nothing that reaches the backend without going through gardien is
//! trusted. The secret is read from the secret store at each request, so a rotation is
//! picked up without a restart. Without it, identity headers are trusted in `dev` only;
//! elsewhere every request is refused. See docs/IDENTITY.md.
//!
//! During a rotation a signature under the value before is accepted too: the one the
//! store held before its last change, for `IDENTITY_ROTATION_WINDOW` after that change
//! (the rule is in `gardien_identity::rotation`), and `GARDIEN_INTERNAL_SECRET_PREVIOUS`
//! when set. `gardien_backend_identity_verified_total{secret}` counts which one verified.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::config::Environment;
use crate::error::ApiError;
use crate::secrets::{INTERNAL_SECRET, INTERNAL_SECRET_PREVIOUS};
use crate::AppState;

/// The identity headers gardien signs, by name.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-user-email", "x-user-id", "x-user-roles"];
pub const ADMIN_ROLE: &str = "admin";

/// The authenticated caller of a user endpoint.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }

    /// `403` unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs the admin role"))
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Checks gardien's signature when the service has the internal secret.
pub fn verify_signature(parts: &Parts, state: &AppState) -> Result<(), ApiError> {
    let Some(secret) = state.secrets.get(INTERNAL_SECRET).filter(|s| !s.is_empty()) else {
        if state.options.environment == Environment::Dev {
            return Ok(());
        }
        // Outside dev a start without the secret is refused; fail closed all the same.
        return Err(ApiError::unauthenticated(
            "identity cannot be verified: the service has no internal secret",
        ));
    };
    let Some(signature) = header(&parts.headers, gardien_identity::HEADER) else {
        return Err(ApiError::unauthenticated(
            "this request did not come through gardien (no X-Gardien-Identity)",
        ));
    };
    let identity: Vec<(&str, &[u8])> = IDENTITY_HEADERS
        .iter()
        .filter_map(|name| parts.headers.get(*name).map(|v| (*name, v.as_bytes())))
        .collect();
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    let previous = previous_secrets(state);
    let mut keys: Vec<&[u8]> = vec![secret.expose()];
    keys.extend(previous.iter().map(|s| s.expose()));
    gardien_identity::verify_any(
        &keys,
        signature,
        parts.method.as_str(),
        parts.uri.path(),
        &identity,
        now,
        state.options.identity_window.as_secs(),
    )
    .map(|index| {
        let secret = if index == 0 { "current" } else { "previous" };
        state.metrics.identity_verified(secret);
    })
    .map_err(|refusal| {
        let reason = match refusal {
            gardien_identity::Refusal::Malformed => "X-Gardien-Identity is malformed",
            gardien_identity::Refusal::Stale => {
                "X-Gardien-Identity is stale (replayed, or clocks apart)"
            }
            gardien_identity::Refusal::BadSignature => {
                "X-Gardien-Identity does not match this request"
            }
        };
        ApiError::unauthenticated(reason)
    })
}

/// The values accepted besides the current secret: `GARDIEN_INTERNAL_SECRET_PREVIOUS`,
/// and the store's value before its last change while within the rotation window.
fn previous_secrets(state: &AppState) -> Vec<gardien_secrets::Secret> {
    let window = state.options.identity_rotation_window.unwrap_or_else(|| {
        gardien_identity::rotation::default_verifying_window(
            state
                .secrets
                .refresh_interval()
                .unwrap_or(gardien_secrets::DEFAULT_REFRESH_INTERVAL),
            state.options.identity_window,
        )
    });
    let automatic = state
        .secrets
        .previous(INTERNAL_SECRET)
        .filter(|p| !window.is_zero() && p.replaced_within(window, std::time::Instant::now()))
        .map(|p| p.value().clone());
    state
        .secrets
        .get(INTERNAL_SECRET_PREVIOUS)
        .into_iter()
        .chain(automatic)
        .filter(|s| !s.is_empty())
        .collect()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        verify_signature(parts, state)?;
        let user_id = header(&parts.headers, "x-user-id")
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "no identity: call this through gardien with a valid token",
                )
            })?
            .to_owned();
        let email = header(&parts.headers, "x-user-email").map(str::to_owned);
        let roles = header(&parts.headers, "x-user-roles")
            .map(|r| {
                r.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Caller {
            user_id,
            email,
            roles,
        })
    }
}
