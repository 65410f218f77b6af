//! Priority (`Function::priority`): a CEL expression over the event gives each new run
//! a head start of so many seconds, from 0 to [`MAX_HEAD_START`]. The run is queued as
//! if it had been sent that much earlier (its `due_at` and its place on the fair clock
//! move back; `created_at` stays), so the gated claim (concurrency limits), in due
//! order, takes it before the runs due in that window, and the plain claim, in fair
//! order (`fairness`), that many shares ahead; the runs a throttle holds back all move
//! to when its window frees, and then go in send order.
//! Nothing is ever delayed: a value below 0, or one that cannot be evaluated, is no head
//! start.
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::error::EngineError;
use super::expr;

/// The largest head start a priority expression can give.
pub const MAX_HEAD_START: Duration = Duration::from_secs(600);

/// How a function's new runs are put ahead: see [`Priority::head_start`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Priority {
    expression: String,
}

impl Priority {
    /// `Priority::head_start("event.data.plan == 'pro' ? 120 : 0")`: the expression's
    /// number, in seconds, capped at [`MAX_HEAD_START`].
    pub fn head_start(expression: impl Into<String>) -> Self {
        Priority {
            expression: expression.into(),
        }
    }

    pub(crate) fn check(&self, function_id: &str) -> Result<(), EngineError> {
        expr::check_key(&self.expression).map_err(|why| {
            EngineError::InvalidFunction(format!("function {function_id:?}: priority: {why}"))
        })
    }

    /// The head start, in milliseconds, of a run for `event`.
    pub(crate) fn head_start_ms(&self, event: &Value) -> i64 {
        let seconds = match expr::value(&self.expression, vec![("event", event.clone())]) {
            Ok(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            Ok(other) => {
                tracing::debug!(priority = %self.expression, value = %other, "a priority is not a number");
                0.0
            }
            Err(err) => {
                tracing::debug!(priority = %self.expression, error = %err, "a priority could not be evaluated");
                0.0
            }
        };
        let max = MAX_HEAD_START.as_millis() as f64;
        (seconds * 1000.0).clamp(0.0, max) as i64
    }
}

/// "head start of event.data.plan == 'pro' ? 120 : 0 seconds (at most 600)".
impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "head start of {} seconds (at most {})",
            self.expression,
            MAX_HEAD_START.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_head_start_is_the_expressions_seconds_within_bounds() {
        let priority = Priority::head_start("event.data.boost");
        let of = |boost: Value| priority.head_start_ms(&json!({ "data": { "boost": boost } }));
        assert_eq!(of(json!(90)), 90_000);
        assert_eq!(of(json!(1.5)), 1_500);
        assert_eq!(of(json!(10_000)), 600_000, "capped");
        assert_eq!(of(json!(-30)), 0, "never a delay");
        assert_eq!(of(json!("soon")), 0, "not a number");
        assert_eq!(
            priority.head_start_ms(&json!({ "data": {} })),
            0,
            "no field"
        );
        assert_eq!(
            priority.to_string(),
            "head start of event.data.boost seconds (at most 600)"
        );
        let urgent =
            Priority::head_start("has(event.data.urgent) && event.data.urgent == true ? 60 : 0");
        assert_eq!(
            urgent.head_start_ms(&json!({ "data": { "urgent": true } })),
            60_000
        );
        assert_eq!(urgent.head_start_ms(&json!({ "data": {} })), 0);
        let refused = Priority::head_start("event.").check("f").unwrap_err();
        assert!(refused.to_string().contains("priority"), "{refused}");
    }
}
