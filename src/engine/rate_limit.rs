//! Rate limit (`Function::rate_limit`): at most `limit` runs of a function are queued in
//! any window of `period`, in all or per key; the events over it start no run of it —
//! the skip is recorded with the event, saying why.
//!
//! A run carries its rate-limit key from the moment it is queued (`run.rate_key`). The
//! send counts, in its own transaction, the runs of the key queued in the last `period`;
//! at the limit, it records the skip (`skipped_run`) instead of the run. On PostgreSQL the count holds a transaction-scoped
//! advisory lock on the key, so concurrent sends in any number of processes count one
//! after the other; on SQLite the insert has already taken the database's write lock.
//!
//! A function's idempotency key (`Function::idempotency`) is the same count: one run per
//! key per 24 h, the key scoped to the event's user.
use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use super::error::EngineError;
use super::event::Event;
use super::per_period::{PerPeriod, MAX_PERIOD};
use super::store::send::scoped_key;

/// The longest rate-limit period.
pub const MAX_RATE_PERIOD: Duration = MAX_PERIOD;

/// How long a function's idempotency key holds (`Function::idempotency`).
pub const IDEMPOTENCY_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// How a function's runs are rate limited: see [`RateLimit::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    per: PerPeriod,
    /// A function's idempotency key: one run per key and user per 24 h.
    idempotency: bool,
}

impl RateLimit {
    /// At most `limit` runs of the function queued per `period`, in all processes
    /// together; the events over it are recorded with the skip and start no run.
    pub fn new(limit: u32, period: Duration) -> Self {
        RateLimit {
            per: PerPeriod::new(limit, period),
            idempotency: false,
        }
    }

    /// One run per value of `key` per user per [`IDEMPOTENCY_PERIOD`]
    /// (`Function::idempotency`); an event whose key is empty or cannot be evaluated is
    /// not limited.
    pub(crate) fn idempotency(key: &str) -> Self {
        RateLimit {
            per: PerPeriod {
                key: Some(key.to_string()),
                ..PerPeriod::new(1, IDEMPOTENCY_PERIOD)
            },
            idempotency: true,
        }
    }

    /// The key a run for `event` counts against — scoped to the event's user for an
    /// idempotency key — or `None` if the run is not limited.
    pub(crate) fn key_of(&self, event: &Event) -> Option<String> {
        let key = self.per.key_for(&event.as_json());
        if !self.idempotency {
            return Some(key);
        }
        (!key.is_empty()).then(|| scoped_key(event.user_id.as_deref(), &key))
    }

    /// Why a run over it is skipped.
    pub(crate) fn skip_reason(&self) -> String {
        if self.idempotency {
            format!("{self}: a run with the same key was queued within 24 h")
        } else {
            format!("over the rate limit of {self}")
        }
    }

    /// Limits per value of the CEL `expression` over `event` (`event.user_id`) instead
    /// of for the whole function.
    pub fn key(mut self, expression: impl Into<String>) -> Self {
        self.per.key = Some(expression.into());
        self
    }

    pub(crate) fn check(&self, function_id: &str) -> Result<(), EngineError> {
        let option = if self.idempotency {
            "idempotency"
        } else {
            "rate limit"
        };
        self.per.check(function_id, option)
    }
}

impl Deref for RateLimit {
    type Target = PerPeriod;

    fn deref(&self) -> &PerPeriod {
        &self.per
    }
}

/// "1 run per 60s", "3 runs per 10s per event.user_id"; "one run per event.data.order_id
/// per user per 24 h".
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.per.key, self.idempotency) {
            (Some(key), true) => write!(f, "one run per {key} per user per 24 h"),
            _ => self.per.describe(f, "run", "runs"),
        }
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
        let once = RateLimit::idempotency("event.data.order_id");
        assert_eq!(
            once.to_string(),
            "one run per event.data.order_id per user per 24 h"
        );
        assert!(once.check("f").is_ok());
        let check = |l: RateLimit| l.check("f").unwrap_err().to_string();
        assert!(check(RateLimit::new(0, Duration::from_secs(1))).contains("at least 1"));
        assert!(check(RateLimit::new(1, Duration::ZERO)).contains("between 1 ms and 7 days"));
        assert!(
            check(RateLimit::new(1, Duration::from_secs(1)).key("event."))
                .contains("not valid CEL")
        );
    }
}
