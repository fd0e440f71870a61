//! The circuit breaker: after `failures` attempts in a row that must be retried, a
//! destination pauses for its `cool_down`, so that a service that is down is not hammered by
//! every queued delivery in turn. Only an unreachable or failing service counts; an answer,
//! even a refusal of one payload, shows it is up and starts the count again.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Clock;
use crate::destination::Outcome;

/// A destination's circuit as an operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CircuitState {
    /// Sending; `failures_in_a_row` of the `failures` that open it so far.
    Closed {
        failures_in_a_row: u32,
        failures: u32,
    },
    /// Paused after failures in a row, for this many more milliseconds.
    Open { remaining_ms: u64 },
}

/// A read-only view of one worker's circuit breaker, for the overview: it follows the
/// worker's clock, and stays readable however the worker goes on.
#[derive(Clone)]
pub struct Circuit {
    breaker: Arc<Breaker>,
    clock: Clock,
}

impl Circuit {
    pub(super) fn new(breaker: Arc<Breaker>, clock: Clock) -> Circuit {
        Circuit { breaker, clock }
    }

    pub fn state(&self) -> CircuitState {
        match self.breaker.pause_left(self.clock.now()) {
            Some(left) => CircuitState::Open {
                remaining_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            },
            None => CircuitState::Closed {
                failures_in_a_row: self.breaker.in_a_row.load(Ordering::Relaxed),
                failures: self.breaker.failures,
            },
        }
    }
}

pub(super) struct Breaker {
    failures: u32,
    cool_down: Duration,
    /// Failed attempts in a row, counted by the lanes of a round as their answers come (in
    /// any order: the count is a hint to stop, not a ledger); at `failures` the circuit is
    /// open, and a round starts no more requests.
    in_a_row: AtomicU32,
    /// Until when the open circuit pauses the destination; wake-ups do not end it.
    paused_until: Mutex<Option<Instant>>,
}

impl Breaker {
    pub(super) fn new(failures: u32, cool_down: Duration) -> Self {
        Breaker {
            failures,
            cool_down,
            in_a_row: AtomicU32::new(0),
            paused_until: Mutex::new(None),
        }
    }

    /// Counts the outcome of an attempt that reached for the destination.
    pub(super) fn count(&self, outcome: &Outcome) {
        if matches!(outcome, Outcome::Retry { .. }) {
            self.in_a_row.fetch_add(1, Ordering::Relaxed);
        } else {
            self.in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// Whether enough attempts failed in a row to stop sending.
    pub(super) fn is_open(&self) -> bool {
        self.in_a_row.load(Ordering::Relaxed) >= self.failures
    }

    /// Pauses the destination from `now` for the cool-down, and starts the count again (the
    /// first failure after the pause does not reopen it); the cool-down.
    pub(super) fn pause(&self, destination: &str, now: Instant) -> Duration {
        tracing::warn!(
            destination,
            failures = self.failures,
            cool_down_ms = self.cool_down.as_millis() as u64,
            "circuit open: pausing this destination"
        );
        self.in_a_row.store(0, Ordering::Relaxed);
        *self.paused_until.lock().expect("pause") = Some(now + self.cool_down);
        self.cool_down
    }

    /// What is left at `now` of the pause, if any.
    pub(super) fn pause_left(&self, now: Instant) -> Option<Duration> {
        self.paused_until
            .lock()
            .expect("pause")
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }
}
