//! Rate limit (`Function::rate_limit`): at most `limit` runs of a function are queued in
//! any window of `period`, in all or per key; the events over it start no work — their
//! runs are recorded as `skipped`, saying why, and never run.
//!
//! A run carries its rate-limit key from the moment it is queued (`run.rate_key`). The
//! send inserts it as queued and then, in the same transaction, counts the runs of its
//! key queued in the last `period` that were not skipped — its own included; over the
//! limit, it becomes skipped at once. On PostgreSQL the count holds a transaction-scoped
//! advisory lock on the key, so concurrent sends in any number of processes count one
//! after the other; on SQLite the insert has already taken the database's write lock.
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::error::EngineError;
use super::expr;

/// The longest rate-limit period.
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a function's runs are rate limited: see [`RateLimit::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub(crate) limit: u32,
    pub(crate) period: Duration,
    pub(crate) key: Option<String>,
}

impl RateLimit {
    /// At most `limit` runs of the function per `period`, in all processes together;
    /// the events over it are recorded with a skipped run and start nothing.
    pub fn new(limit: u32, period: Duration) -> Self {
        RateLimit {
            limit,
            period,
            key: None,
        }
    }

    /// Limits per value of the CEL `expression` over `event` (`event.user_id`) instead
    /// of for the whole function.
    pub fn key(mut self, expression: impl Into<String>) -> Self {
        self.key = Some(expression.into());
        self
    }

    pub(crate) fn check(&self, function_id: &str) -> Result<(), EngineError> {
        let invalid = |why: String| {
            EngineError::InvalidFunction(format!("function {function_id:?}: rate limit: {why}"))
        };
        if self.limit == 0 {
            return Err(invalid("the limit must be at least 1".into()));
        }
        if self.period < Duration::from_millis(1) || self.period > MAX_RATE_PERIOD {
            return Err(invalid(format!(
                "the period must be between 1 ms and 7 days, not {:?}",
                self.period
            )));
        }
        if let Some(key) = &self.key {
            expr::check_key(key).map_err(invalid)?;
        }
        Ok(())
    }

    /// The key's value for an event (as CEL sees it); `""` without a key expression, or
    /// when it cannot be evaluated (such runs share one window rather than escape it).
    pub(crate) fn key_for(&self, event: &Value) -> String {
        match &self.key {
            Some(expression) => expr::key(expression, event),
            None => String::new(),
        }
    }

    pub(crate) fn period_ms(&self) -> i64 {
        self.period.as_millis() as i64
    }
}

/// "1 run per 1m", "3 runs per 10s per event.user_id".
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs = if self.limit == 1 { "run" } else { "runs" };
        write!(f, "{} {runs} per {:?}", self.limit, self.period)?;
        if let Some(key) = &self.key {
            write!(f, " per {key}")?;
        }
        Ok(())
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
