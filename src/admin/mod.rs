//! The admin listener (a separate address from the proxy): `/healthz`, `/readyz`,
//! `/metrics`, `/status`.

mod app;
pub mod metrics;
pub mod readiness;

pub use app::AdminApp;
