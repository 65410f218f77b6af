//! Throttle (`Function::throttle`): at most `limit` runs of a function start in any
//! window of `period`, in all or per key — the sliding-window log of starts, which
//! never lets more than `limit` starts into any period (as strict as GCRA with a burst
//! of `limit`, and exact).
//!
//! A run carries its throttle key from the moment it is queued (`run.throttle_key`),
//! which sends it through the serialized claim (`store::claim::claim_gated`). There, a
//! run that has never started is taken only while its key has had fewer than `limit`
//! starts (`run.started_at`) in the last `period`; otherwise it stays queued and its due
//! time moves to when the oldest of those starts leaves the window, so the workers
//! sleep until then instead of polling. Only a run's first start counts: a run resuming
//! from a sleep or a wait is not throttled again.
use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use super::error::EngineError;
use super::per_period::{PerPeriod, MAX_PERIOD};

/// The longest throttle period.
pub const MAX_THROTTLE_PERIOD: Duration = MAX_PERIOD;

/// How a function's starts are throttled: see [`Throttle::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throttle(PerPeriod);

impl Throttle {
    /// At most `limit` starts of the function in any `period`, in all processes
    /// together; the runs over it wait, in due order, and none is dropped.
    pub fn new(limit: u32, period: Duration) -> Self {
        Throttle(PerPeriod::new(limit, period))
    }

    /// Throttles per value of the CEL `expression` over `event` (`event.user_id`)
    /// instead of for the whole function.
    pub fn key(mut self, expression: impl Into<String>) -> Self {
        self.0.key = Some(expression.into());
        self
    }

    pub(crate) fn check(&self, function_id: &str) -> Result<(), EngineError> {
        self.0.check(function_id, "throttle")
    }
}

impl Deref for Throttle {
    type Target = PerPeriod;

    fn deref(&self) -> &PerPeriod {
        &self.0
    }
}

/// "2 starts per 10s", "2 starts per 10s per event.user_id".
impl fmt::Display for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.describe(f, "start", "starts")
    }
}

/// The starts of throttled keys in their current windows, as one claim counts them.
#[derive(Debug, Default)]
pub(crate) struct Starts(std::collections::HashMap<(String, String), Window>);

/// One key's starts in its window: how many, and the oldest.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub count: u32,
    pub oldest: i64,
}

impl Starts {
    pub(crate) fn insert(&mut self, function_id: String, key: String, window: Window) {
        self.0.insert((function_id, key), window);
    }

    /// When a run of this key may start, if not now: the oldest start in the window
    /// leaves it then (and the claim counts again).
    pub(crate) fn held_until(
        &self,
        throttle: &Throttle,
        function_id: &str,
        key: &str,
    ) -> Option<i64> {
        let window = self.0.get(&(function_id.to_string(), key.to_string()))?;
        (window.count >= throttle.limit).then(|| window.oldest + throttle.period_ms())
    }

    /// Counts a start of this key at `now`.
    pub(crate) fn take(&mut self, function_id: &str, key: &str, now: i64) {
        let window = self
            .0
            .entry((function_id.to_string(), key.to_string()))
            .or_insert(Window {
                count: 0,
                oldest: now,
            });
        window.count += 1;
        window.oldest = window.oldest.min(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_window_holds_until_its_oldest_start_leaves_it() {
        let throttle = Throttle::new(2, Duration::from_secs(10)).key("event.user_id");
        assert_eq!(throttle.to_string(), "2 starts per 10s per event.user_id");
        assert_eq!(
            Throttle::new(1, Duration::from_secs(1)).to_string(),
            "1 start per 1s"
        );
        let event = json!({ "name": "a/b", "data": {}, "user_id": "u1" });
        assert_eq!(throttle.key_for(&event), "u1");
        let mut starts = Starts::default();
        assert_eq!(starts.held_until(&throttle, "f", "u1"), None);
        starts.take("f", "u1", 1_000);
        assert_eq!(starts.held_until(&throttle, "f", "u1"), None);
        starts.take("f", "u1", 1_500);
        assert_eq!(starts.held_until(&throttle, "f", "u1"), Some(11_000));
        // Another key, another window.
        assert_eq!(starts.held_until(&throttle, "f", "u2"), None);
    }

    #[test]
    fn bad_options_are_refused() {
        let check = |t: Throttle| t.check("f").unwrap_err().to_string();
        assert!(check(Throttle::new(0, Duration::from_secs(1))).contains("at least 1"));
        assert!(check(Throttle::new(1, Duration::ZERO)).contains("between 1 ms and 7 days"));
        assert!(
            check(Throttle::new(1, Duration::from_secs(1)).key("event.")).contains("not valid CEL")
        );
    }
}
