//! The hot-path filters, one concern per file. A filter never reaches into another's state;
//! `crate::proxy` composes them in order.

pub mod adaptive;
pub mod client_address;
pub mod cors;
pub mod forwarded;
pub mod host;
pub mod identity;
pub mod identity_signing;
pub mod jwks;
pub mod jwt;
pub mod origin;
pub mod rate_limit;
pub mod request_id;
pub mod security_headers;
pub mod token_cache;
pub mod trace_context;
