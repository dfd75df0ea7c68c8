//! Google Secret Manager: the first source of the chain, and the OAuth access tokens it
//! needs (from the metadata server, or from a service-account key file through Google's
//! JWT-bearer grant).

mod metadata;
mod secret_manager;
mod service_account;
mod token;

pub use secret_manager::SecretManagerSource;
pub use token::{AccessToken, TokenSource};

/// The OAuth scope Secret Manager accepts.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
