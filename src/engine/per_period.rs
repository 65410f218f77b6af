//! What a throttle and a rate limit share: at most `limit` of something per `period`,
//! in all or per value of a key expression over the event.
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::error::EngineError;
use super::expr;

/// The longest period of a throttle or a rate limit.
pub const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// At most `limit` per `period`, per value of `key` (or for the whole function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerPeriod {
    pub(crate) limit: u32,
    pub(crate) period: Duration,
    pub(crate) key: Option<String>,
}

impl PerPeriod {
    pub(crate) fn new(limit: u32, period: Duration) -> Self {
        PerPeriod {
            limit,
            period,
            key: None,
        }
    }

    /// Checks it as the `option` ("throttle", "rate limit") of `function_id`: a limit of
    /// at least 1, a period from 1 ms to [`MAX_PERIOD`], a valid CEL key.
    pub(crate) fn check(&self, function_id: &str, option: &str) -> Result<(), EngineError> {
        let invalid = |why: String| {
            EngineError::InvalidFunction(format!("function {function_id:?}: {option}: {why}"))
        };
        if self.limit == 0 {
            return Err(invalid("the limit must be at least 1".into()));
        }
        if self.period < Duration::from_millis(1) || self.period > MAX_PERIOD {
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

    /// The key's value for an event (see [`expr::key_or_empty`]).
    pub(crate) fn key_for(&self, event: &Value) -> String {
        expr::key_or_empty(self.key.as_deref(), event)
    }

    pub(crate) fn period_ms(&self) -> i64 {
        self.period.as_millis() as i64
    }

    /// "2 starts per 10s per event.user_id", counting `one` or `many`.
    pub(crate) fn describe(
        &self,
        f: &mut fmt::Formatter<'_>,
        one: &str,
        many: &str,
    ) -> fmt::Result {
        let what = if self.limit == 1 { one } else { many };
        write!(f, "{} {what} per {:?}", self.limit, self.period)?;
        if let Some(key) = &self.key {
            write!(f, " per {key}")?;
        }
        Ok(())
    }
}
