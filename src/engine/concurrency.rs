//! Concurrency limits (`Function::concurrency`, `Function::concurrency_key`): how many
//! runs of a function — or of one key of it, such as one user — may execute at once.
//!
//! A run carries its key for each limit from the moment it is queued
//! (`run.concurrency_key`, `run.concurrency_key_2`). Only runs that are executing count
//! (status `running`): a sleeping or waiting run holds no slot. Due runs over a limit
//! stay queued; the claim of gated runs (`store::claim::claim_gated`) takes them as
//! slots free, and every run of a limited function that stops executing rings the
//! workers (here and, on PostgreSQL, in every process).
use serde_json::Value;

use super::error::EngineError;
use super::expr;

/// The most limits one function may have.
pub const MAX_LIMITS: usize = 2;

/// One limit: at most `limit` runs at once, per value of `key` (a CEL expression over
/// `event`) or, without a key, for the whole function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Concurrency {
    pub limit: u32,
    pub key: Option<String>,
}

impl Concurrency {
    /// Checks a function's limits: at most [`MAX_LIMITS`], each at least 1, keys valid CEL.
    pub(crate) fn check(function_id: &str, limits: &[Concurrency]) -> Result<(), EngineError> {
        let invalid = |why: String| {
            EngineError::InvalidFunction(format!("function {function_id:?}: concurrency: {why}"))
        };
        if limits.len() > MAX_LIMITS {
            return Err(invalid(format!(
                "at most {MAX_LIMITS} limits, not {}",
                limits.len()
            )));
        }
        for limit in limits {
            if limit.limit == 0 {
                return Err(invalid("a limit must be at least 1".into()));
            }
            if let Some(key) = &limit.key {
                expr::check_key(key).map_err(invalid)?;
            }
        }
        Ok(())
    }

    /// This limit's key for an event (`name`, `data`, `user_id` as JSON): the key
    /// expression's value as text (a string as it is, anything else as JSON), or `""`
    /// for a function-wide limit. A key that cannot be evaluated is `""` too: such runs
    /// share one slot group rather than escape the limit.
    pub(crate) fn key_for(&self, event: &Value) -> String {
        expr::key_or_empty(self.key.as_deref(), event)
    }
}

/// "2 at once", "1 at once per event.user_id".
impl std::fmt::Display for Concurrency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at once", self.limit)?;
        if let Some(key) = &self.key {
            write!(f, " per {key}")?;
        }
        Ok(())
    }
}

/// The keys a run of a function with `limits` gets for `event`, one per limit.
pub(crate) fn keys(limits: &[Concurrency], event: &Value) -> [Option<String>; MAX_LIMITS] {
    let mut keys = [None, None];
    for (slot, limit) in keys.iter_mut().zip(limits) {
        *slot = Some(limit.key_for(event));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(expression: &str, event: Value) -> String {
        let limit = Concurrency {
            limit: 1,
            key: Some(expression.into()),
        };
        limit.key_for(&event)
    }

    #[test]
    fn keys_are_the_expression_values_as_text() {
        let event = json!({ "name": "a/b", "data": { "i": 1234, "who": "ann" }, "user_id": "u1" });
        assert_eq!(key("event.user_id", event.clone()), "u1");
        assert_eq!(key("event.data.who", event.clone()), "ann");
        // JSON numbers are unsigned or double to CEL: convert before mixing with ints.
        assert_eq!(key("int(event.data.i) % 1000", event.clone()), "234");
        assert_eq!(
            key("event.data.who + \"-\" + event.name", event.clone()),
            "ann-a/b"
        );
        // Nothing to evaluate: the empty key, shared by every such run.
        assert_eq!(key("event.data.missing.deeper", event.clone()), "");
        let whole = Concurrency {
            limit: 2,
            key: None,
        };
        assert_eq!(whole.key_for(&event), "");
        assert_eq!(whole.to_string(), "2 at once");
        assert_eq!(
            Concurrency {
                limit: 1,
                key: Some("event.user_id".into())
            }
            .to_string(),
            "1 at once per event.user_id"
        );
    }
}
