//! One module per provider. Each turns a [`Message`](super::provider::Message) into the
//! service's request, reads the answer, and classifies failures
//! ([`FailureKind`](super::provider::FailureKind)).

pub mod log;
pub mod sendgrid;
pub mod smtp;
pub mod twilio;
