//! The admin listener (a separate address from the proxy): `/healthz`, `/readyz`,
//! `/metrics`, `/status` (a page for people, or JSON) and `/status.json`.

mod app;
pub mod metrics;
pub mod policy_record;
pub mod readiness;
pub mod request_window;
pub mod status;
pub mod status_page;

pub use app::AdminApp;
