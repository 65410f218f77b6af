//! Rate limit (`Function::rate_limit`): at most `limit` runs of a function are queued in
//! any window of `period`, in all or per key; the events over it start no run of it —
//! the skip is recorded with the event, saying why.
//!
//! A run carries its rate-limit key from the moment it is queued (`run.rate_key`). The
//! send counts, in its own transaction, the runs of the key queued in the last `period`;
//! at the limit, it records the skip (`skipped_run`) instead of the run. On PostgreSQL the count holds a transaction-scoped
//! advisory lock on the key, so concurrent sends in any number of processes count one
//! after the other; on SQLite the insert has already taken the database's write lock.
use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use super::error::EngineError;
use super::per_period::{PerPeriod, MAX_PERIOD};

/// The longest rate-limit period.
pub const MAX_RATE_PERIOD: Duration = MAX_PERIOD;

/// How a function's runs are rate limited: see [`RateLimit::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit(PerPeriod);

impl RateLimit {
    /// At most `limit` runs of the function queued per `period`, in all processes
    /// together; the events over it are recorded with the skip and start no run.
    pub fn new(limit: u32, period: Duration) -> Self {
        RateLimit(PerPeriod::new(limit, period))
    }

    /// Limits per value of the CEL `expression` over `event` (`event.user_id`) instead
    /// of for the whole function.
    pub fn key(mut self, expression: impl Into<String>) -> Self {
        self.0.key = Some(expression.into());
        self
    }

    pub(crate) fn check(&self, function_id: &str) -> Result<(), EngineError> {
        self.0.check(function_id, "rate limit")
    }
}

impl Deref for RateLimit {
    type Target = PerPeriod;

    fn deref(&self) -> &PerPeriod {
        &self.0
    }
}

/// "1 run per 60s", "3 runs per 10s per event.user_id".
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f, "run", "runs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_reads_as_it_limits_and_refuses_bad_options() {
        let limit = RateLimit::new(1, Duration::from_secs(60)).key("event.user_id");
        assert_eq!(limit.to_string(), "1 run per 60s per event.user_id");
        assert_eq!(
            RateLimit::new(3, Duration::from_secs(10)).to_string(),
            "3 runs per 10s"
        );
        let check = |l: RateLimit| l.check("f").unwrap_err().to_string();
        assert!(check(RateLimit::new(0, Duration::from_secs(1))).contains("at least 1"));
        assert!(check(RateLimit::new(1, Duration::ZERO)).contains("between 1 ms and 7 days"));
        assert!(
            check(RateLimit::new(1, Duration::from_secs(1)).key("event."))
                .contains("not valid CEL")
        );
    }
}
