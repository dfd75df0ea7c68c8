//! gardien: an edge gateway on Pingora that puts CORS, security headers, routing and
//! observability in front of an existing API. docs/ARCHITECTURE.md is the map: the parts,
//! the request path, the policy model, how it scales, and where to change what.
//!
//! Layout: [`policy`] (the YAML model), [`edge`] (one hot-path concern per file),
//! [`routing`], [`upstream`], [`proxy`] (the phases), [`admin`] (health and metrics),
//! [`server`] (assembly).

pub mod admin;
pub mod downstream;
pub mod edge;
pub mod env_docs;
pub mod error_reports;
pub mod gateway_error;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod secrets;
pub mod server;
pub mod upstream;
pub mod upstream_health;
pub mod warm_up;
