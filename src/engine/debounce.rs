//! Debounce (`Function::debounce`): a burst of events for one key — per user, always —
//! starts one run, with the burst's last event, once no new event has come for the
//! period (or, with a max wait, that long after the burst's first event at the latest).
//!
//! The run is queued at the first event, due a period later, with its debounce key
//! (`run.debounce_key`). Until it starts, each new event for the key takes it over in
//! the send's transaction — its event becomes the new one, its start a period after it —
//! by one insert-or-update on a unique index of the runs not started yet, so concurrent
//! sends in any number of processes agree on one run. An event after the run has
//! started queues the next one.
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::error::EngineError;
use super::expr;

/// The longest debounce period or max wait.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a function's runs are debounced: see [`Debounce::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debounce {
    pub(crate) period: Duration,
    pub(crate) key: Option<String>,
    pub(crate) max_wait: Option<Duration>,
}

impl Debounce {
    /// One run per user per burst of events, started `period` after the burst's last
    /// event, with that event.
    pub fn new(period: Duration) -> Self {
        Debounce {
            period,
            key: None,
            max_wait: None,
        }
    }

    /// Debounces per value of the CEL `expression` over `event` too (`event.data.doc`),
    /// within each user's events.
    pub fn key(mut self, expression: impl Into<String>) -> Self {
        self.key = Some(expression.into());
        self
    }

    /// Starts the run at most `max_wait` after the burst's first event, however long
    /// the burst goes on.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    pub(crate) fn check(&self, function_id: &str) -> Result<(), EngineError> {
        let invalid = |why: String| {
            EngineError::InvalidFunction(format!("function {function_id:?}: debounce: {why}"))
        };
        let in_range = |d: Duration| !d.is_zero() && d <= MAX_DEBOUNCE;
        if !in_range(self.period) {
            return Err(invalid(format!(
                "the period must be between 1 ms and 7 days, not {:?}",
                self.period
            )));
        }
        if let Some(max_wait) = self.max_wait {
            if !in_range(max_wait) || max_wait < self.period {
                return Err(invalid(format!(
                    "the max wait must be between the period and 7 days, not {max_wait:?}"
                )));
            }
        }
        if let Some(key) = &self.key {
            expr::check_key(key).map_err(invalid)?;
        }
        Ok(())
    }

    /// The key's value for an event (as CEL sees it); `""` without a key expression.
    pub(crate) fn key_for(&self, event: &Value) -> String {
        expr::key_or_empty(self.key.as_deref(), event)
    }

    pub(crate) fn period_ms(&self) -> i64 {
        self.period.as_millis() as i64
    }

    pub(crate) fn max_wait_ms(&self) -> Option<i64> {
        self.max_wait.map(|d| d.as_millis() as i64)
    }
}

/// "3s per user", "3s per user and event.data.doc, at most 1m".
impl fmt::Display for Debounce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} per user", self.period)?;
        if let Some(key) = &self.key {
            write!(f, " and {key}")?;
        }
        if let Some(max_wait) = self.max_wait {
            write!(f, ", at most {max_wait:?}")?;
        }
        Ok(())
    }
}
