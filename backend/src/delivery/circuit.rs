//! A circuit breaker per provider, per process: after credentials are refused (at once) or
//! after `failures` retryable failures in a row, the provider's circuit opens for
//! `cooldown` and deliveries go to the next provider without calling it. When the cooldown
//! ends the circuit is half-open: one attempt is let through; its success closes the
//! circuit, its failure opens it again.
//!
//! The state lives in memory: each replica learns for itself (a replica that restarts
//! tries a provider once before opening again, which is cheap). It is shown on
//! `/readyz` and in `gardien_backend_provider_circuit{provider,state}`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::delivery::provider::FailureKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The one trial attempt is in flight.
    HalfOpen,
}

/// Whether an attempt may call the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Granted,
    /// Open (or half-open with its trial in flight) for at least this long.
    Denied {
        remaining: Duration,
    },
}

/// The circuits of every provider.
#[derive(Debug)]
pub struct Circuits {
    states: Mutex<BTreeMap<String, State>>,
    cooldown: Duration,
    failures: u32,
}

impl Default for Circuits {
    fn default() -> Self {
        Circuits::new(std::iter::empty::<&str>(), Duration::from_secs(60), 5)
    }
}

impl Circuits {
    /// Closed circuits for `providers`; `failures` retryable failures in a row open one.
    pub fn new<'a>(
        providers: impl IntoIterator<Item = &'a str>,
        cooldown: Duration,
        failures: u32,
    ) -> Self {
        Circuits {
            states: Mutex::new(
                providers
                    .into_iter()
                    .map(|p| (p.to_owned(), State::Closed { failures: 0 }))
                    .collect(),
            ),
            cooldown,
            failures: failures.max(1),
        }
    }

    /// Asks to call `provider` now. An open circuit whose cooldown has passed turns
    /// half-open and grants this one call.
    pub fn permit(&self, provider: &str) -> Permit {
        let now = Instant::now();
        let mut states = self.states.lock();
        let state = states
            .entry(provider.to_owned())
            .or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => Permit::Granted,
            State::Open { until } if until <= now => {
                *state = State::HalfOpen;
                Permit::Granted
            }
            State::Open { until } => Permit::Denied {
                remaining: until - now,
            },
            // The trial is bounded by the provider's timeout; others wait a little.
            State::HalfOpen => Permit::Denied {
                remaining: Duration::from_secs(1),
            },
        }
    }

    /// The provider accepted a message. Returns the new state's name if it changed.
    pub fn success(&self, provider: &str) -> Option<&'static str> {
        let mut states = self.states.lock();
        let state = states
            .entry(provider.to_owned())
            .or_insert(State::Closed { failures: 0 });
        let was_closed = matches!(state, State::Closed { .. });
        *state = State::Closed { failures: 0 };
        (!was_closed).then_some("closed")
    }

    /// The provider failed with `kind`. Returns the new state's name if it changed.
    pub fn failure(&self, provider: &str, kind: FailureKind) -> Option<&'static str> {
        let mut states = self.states.lock();
        let state = states
            .entry(provider.to_owned())
            .or_insert(State::Closed { failures: 0 });
        let open = State::Open {
            until: Instant::now() + self.cooldown,
        };
        match (kind, *state) {
            // The recipient's fault, or this request's: says nothing of the provider.
            (FailureKind::Recipient | FailureKind::Rejected, State::HalfOpen) => {
                *state = State::Closed { failures: 0 };
                Some("closed")
            }
            (FailureKind::Recipient | FailureKind::Rejected, _) => None,
            (FailureKind::Auth, State::Open { .. }) => None,
            (FailureKind::Auth, _) | (FailureKind::Retryable, State::HalfOpen) => {
                *state = open;
                Some("open")
            }
            (FailureKind::Retryable, State::Closed { failures }) => {
                if failures + 1 >= self.failures {
                    *state = open;
                    Some("open")
                } else {
                    *state = State::Closed {
                        failures: failures + 1,
                    };
                    None
                }
            }
            (FailureKind::Retryable, State::Open { .. }) => None,
        }
    }

    /// Every provider's state, for `/readyz` and metrics: `closed`, `open`, `half_open`.
    pub fn snapshot(&self) -> Vec<(String, &'static str)> {
        let now = Instant::now();
        self.states
            .lock()
            .iter()
            .map(|(name, state)| {
                let label = match state {
                    State::Closed { .. } => "closed",
                    // A cooldown that has passed lets the next attempt through.
                    State::Open { until } if *until <= now => "half_open",
                    State::Open { .. } => "open",
                    State::HalfOpen => "half_open",
                };
                (name.clone(), label)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_opens_at_once_and_the_cooldown_half_opens() {
        let circuits = Circuits::new(["sendgrid"], Duration::from_millis(50), 5);
        assert_eq!(circuits.permit("sendgrid"), Permit::Granted);
        assert_eq!(
            circuits.failure("sendgrid", FailureKind::Auth),
            Some("open")
        );
        assert!(matches!(circuits.permit("sendgrid"), Permit::Denied { .. }));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(circuits.permit("sendgrid"), Permit::Granted);
        // The trial is in flight: nobody else goes.
        assert!(matches!(circuits.permit("sendgrid"), Permit::Denied { .. }));
        assert_eq!(circuits.success("sendgrid"), Some("closed"));
        assert_eq!(circuits.permit("sendgrid"), Permit::Granted);
    }

    #[test]
    fn retryable_failures_in_a_row_open_it() {
        let circuits = Circuits::new(["twilio"], Duration::from_secs(60), 3);
        assert_eq!(circuits.failure("twilio", FailureKind::Retryable), None);
        assert_eq!(circuits.failure("twilio", FailureKind::Retryable), None);
        assert_eq!(circuits.success("twilio"), None);
        assert_eq!(circuits.failure("twilio", FailureKind::Retryable), None);
        assert_eq!(circuits.failure("twilio", FailureKind::Retryable), None);
        assert_eq!(
            circuits.failure("twilio", FailureKind::Retryable),
            Some("open")
        );
        assert_eq!(circuits.snapshot(), vec![("twilio".to_owned(), "open")]);
    }

    #[test]
    fn a_recipient_error_says_nothing_of_the_provider() {
        let circuits = Circuits::new(["twilio"], Duration::from_secs(60), 1);
        assert_eq!(circuits.failure("twilio", FailureKind::Recipient), None);
        assert_eq!(circuits.permit("twilio"), Permit::Granted);
    }
}
