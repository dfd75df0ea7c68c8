//! Delivery of notifications: providers, fallback between them, and the workers that drain
//! the outbox.

pub mod provider;
pub mod providers;
