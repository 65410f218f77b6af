//! Batching (`Function::batch`): a function's events — per user, always — are gathered
//! into one run of up to `max_events`, started when the batch is full or `timeout` after
//! its first event, whichever comes first. The handler gets them all, in the order they
//! were sent (`Ctx::events`); `Ctx::event` is the first.
//!
//! The run is queued at the batch's first event, due `timeout` later, with its batch key
//! (`run.batch_key`). Until it starts, each new event for the key joins it in the send's
//! transaction: one insert-or-update on a unique index of the runs not started yet
//! counts the event in (`run.batch_size`) and, at `max_events`, makes the run due now and
//! clears its key, so the next event starts a new batch. Concurrent sends in any number
//! of processes therefore agree on one run per batch, and no batch exceeds its size. The
//! events of a batch are listed in `batch_event`.
use std::fmt;
use std::time::Duration;

use super::error::EngineError;

/// The most events in one batch.
pub const MAX_BATCH_EVENTS: u32 = 1_000;

/// The longest a batch may wait for more events.
pub const MAX_BATCH_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How a function's events are batched: see [`Batch::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub(crate) max_events: u32,
    pub(crate) timeout: Duration,
}

impl Batch {
    /// One run per user for up to `max_events` events (2 to [`MAX_BATCH_EVENTS`]),
    /// started when full or `timeout` after the batch's first event.
    pub fn new(max_events: u32, timeout: Duration) -> Self {
        Batch {
            max_events,
            timeout,
        }
    }

    pub(crate) fn check(&self, function_id: &str) -> Result<(), EngineError> {
        let invalid = |why: String| {
            EngineError::InvalidFunction(format!("function {function_id:?}: batch: {why}"))
        };
        if !(2..=MAX_BATCH_EVENTS).contains(&self.max_events) {
            return Err(invalid(format!(
                "the size must be between 2 and {MAX_BATCH_EVENTS} events, not {}",
                self.max_events
            )));
        }
        if self.timeout.is_zero() || self.timeout > MAX_BATCH_TIMEOUT {
            return Err(invalid(format!(
                "the timeout must be between 1 ms and 24 h, not {:?}",
                self.timeout
            )));
        }
        Ok(())
    }

    pub(crate) fn timeout_ms(&self) -> i64 {
        self.timeout.as_millis() as i64
    }
}

/// "up to 10 events or 5s per user".
impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "up to {} events or {:?} per user",
            self.max_events, self.timeout
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_timeouts_out_of_range_are_refused() {
        let second = Duration::from_secs(1);
        assert!(Batch::new(10, second).check("f").is_ok());
        assert!(Batch::new(1, second).check("f").is_err());
        assert!(Batch::new(MAX_BATCH_EVENTS + 1, second).check("f").is_err());
        assert!(Batch::new(10, Duration::ZERO).check("f").is_err());
        assert!(Batch::new(10, MAX_BATCH_TIMEOUT + second)
            .check("f")
            .is_err());
        assert_eq!(
            Batch::new(10, Duration::from_secs(5)).to_string(),
            "up to 10 events or 5s per user"
        );
    }
}
