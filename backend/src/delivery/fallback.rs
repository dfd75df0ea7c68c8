//! What to do after an attempt fails: the fallback rules of a channel's ordered provider
//! list, as a pure function of where the delivery stands and how the provider failed.
//!
//! - Retryable (timeout, refused connection, `429`, `5xx`): again on the same provider
//!   after an exponential backoff with jitter — or after the wait the provider asked for
//!   (`Retry-After`, `X-RateLimit-Reset`) if longer — up to `attempts_per_provider`
//!   attempts; then the next provider. A provider asking for a wait longer than
//!   `max_retry_after` is passed over at once.
//! - Credentials refused, or a request this provider will never take: the next provider at
//!   once (the circuit opens separately, in `circuit`).
//! - Recipient unreachable: the delivery fails; another provider would fail the same way.
//! - Past the last provider: the delivery fails (`providers_exhausted`).

use std::time::Duration;

use crate::delivery::backoff::Backoff;
use crate::delivery::provider::{Failure, FailureKind};
use crate::notifications::model::reason;

/// The retry rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts on one provider before moving to the next (at least 1).
    pub attempts_per_provider: u32,
    pub backoff: Backoff,
    /// A provider asking to wait longer than this is passed over.
    pub max_retry_after: Duration,
}

/// Where a delivery stands in its channel's provider list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The provider being tried.
    pub index: usize,
    /// Attempts made on it so far, before this one.
    pub tries: u32,
}

/// What happens to the delivery next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Back to the queue for the same provider after `wait`; `tries` attempts made on it.
    Retry { wait: Duration, tries: u32 },
    /// Back to the queue, due now, for the provider at `index`.
    Next { index: usize },
    /// Failed for good.
    Fail { reason: &'static str },
}

fn next(position: Position, providers: usize) -> Decision {
    if position.index + 1 < providers {
        Decision::Next {
            index: position.index + 1,
        }
    } else {
        Decision::Fail {
            reason: reason::PROVIDERS_EXHAUSTED,
        }
    }
}

/// The decision after `failure` at `position` in a list of `providers`; `jitter` is drawn
/// uniformly from `[0, 1)`.
pub fn after_failure(
    policy: &RetryPolicy,
    position: Position,
    providers: usize,
    failure: &Failure,
    jitter: f64,
) -> Decision {
    match failure.kind {
        FailureKind::Recipient => Decision::Fail {
            reason: reason::RECIPIENT_REFUSED,
        },
        FailureKind::Auth | FailureKind::Rejected => next(position, providers),
        FailureKind::Retryable => retry(policy, position, providers, failure.retry_after, jitter),
    }
}

/// The decision when the provider's circuit is open for `remaining`: the next provider at
/// once; on the last one, wait for the circuit as a retryable failure would (so a
/// message is not failed only because every circuit happens to be open right now).
pub fn circuit_open(
    policy: &RetryPolicy,
    position: Position,
    providers: usize,
    remaining: Duration,
    jitter: f64,
) -> Decision {
    if position.index + 1 < providers {
        next(position, providers)
    } else {
        retry(policy, position, providers, Some(remaining), jitter)
    }
}

fn retry(
    policy: &RetryPolicy,
    position: Position,
    providers: usize,
    asked: Option<Duration>,
    jitter: f64,
) -> Decision {
    let tries = position.tries + 1;
    if tries >= policy.attempts_per_provider.max(1) {
        return next(position, providers);
    }
    let mut wait = policy.backoff.delay(tries, jitter);
    if let Some(asked) = asked {
        if asked > policy.max_retry_after {
            return next(position, providers);
        }
        wait = wait.max(asked);
    }
    Decision::Retry { wait, tries }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        attempts_per_provider: 3,
        backoff: Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        },
        max_retry_after: Duration::from_secs(600),
    };

    fn at(index: usize, tries: u32) -> Position {
        Position { index, tries }
    }

    fn failure(kind: FailureKind) -> Failure {
        Failure::new(kind, "test")
    }

    #[test]
    fn retryable_failures_back_off_then_move_on() {
        let retryable = failure(FailureKind::Retryable);
        assert_eq!(
            after_failure(&POLICY, at(0, 0), 2, &retryable, 1.0),
            Decision::Retry {
                wait: Duration::from_secs(1),
                tries: 1
            }
        );
        assert_eq!(
            after_failure(&POLICY, at(0, 1), 2, &retryable, 1.0),
            Decision::Retry {
                wait: Duration::from_secs(2),
                tries: 2
            }
        );
        assert_eq!(
            after_failure(&POLICY, at(0, 2), 2, &retryable, 1.0),
            Decision::Next { index: 1 }
        );
        assert_eq!(
            after_failure(&POLICY, at(1, 2), 2, &retryable, 1.0),
            Decision::Fail {
                reason: reason::PROVIDERS_EXHAUSTED
            }
        );
    }

    #[test]
    fn the_providers_wait_is_honoured_unless_too_long() {
        let limited = failure(FailureKind::Retryable).with_retry_after(Duration::from_secs(30));
        assert_eq!(
            after_failure(&POLICY, at(0, 0), 2, &limited, 0.0),
            Decision::Retry {
                wait: Duration::from_secs(30),
                tries: 1
            }
        );
        let too_long = failure(FailureKind::Retryable).with_retry_after(Duration::from_secs(3600));
        assert_eq!(
            after_failure(&POLICY, at(0, 0), 2, &too_long, 0.0),
            Decision::Next { index: 1 }
        );
    }

    #[test]
    fn auth_and_rejections_move_on_at_once_recipients_fail() {
        assert_eq!(
            after_failure(&POLICY, at(0, 0), 2, &failure(FailureKind::Auth), 0.5),
            Decision::Next { index: 1 }
        );
        assert_eq!(
            after_failure(&POLICY, at(0, 0), 2, &failure(FailureKind::Rejected), 0.5),
            Decision::Next { index: 1 }
        );
        assert_eq!(
            after_failure(&POLICY, at(0, 0), 1, &failure(FailureKind::Auth), 0.5),
            Decision::Fail {
                reason: reason::PROVIDERS_EXHAUSTED
            }
        );
        assert_eq!(
            after_failure(&POLICY, at(0, 0), 2, &failure(FailureKind::Recipient), 0.5),
            Decision::Fail {
                reason: reason::RECIPIENT_REFUSED
            }
        );
    }

    #[test]
    fn an_open_circuit_is_passed_over_or_waited_for_on_the_last_provider() {
        let remaining = Duration::from_secs(20);
        assert_eq!(
            circuit_open(&POLICY, at(0, 0), 2, remaining, 0.0),
            Decision::Next { index: 1 }
        );
        assert_eq!(
            circuit_open(&POLICY, at(1, 0), 2, remaining, 0.0),
            Decision::Retry {
                wait: remaining,
                tries: 1
            }
        );
    }
}
