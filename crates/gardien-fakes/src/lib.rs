//! Fake servers of the third-party services gardien and gardien-backend call, for tests and
//! benchmarks. Each listens on an ephemeral loopback port, follows the official contract in
//! `../shared/contracts/` (status codes, bodies, headers, error shapes, test numbers) and
//! records what it received so tests can assert on it. Failure modes (down, slow, 429, 5xx,
//! refused credentials) are switched on and off at run time. Never linked into the code
//! under test: the services reach these fakes only through their configurable base URLs.

pub mod contract;
pub mod secret_manager;
pub mod sendgrid;
pub mod sentry;
pub mod smtp;
mod switchable;
pub mod twilio;
