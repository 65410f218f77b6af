//! Events: what a caller sends, what a handler sees, and the checks a send passes
//! before anything is stored (`store::send` records them).
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::entities::event;
use super::error::EngineError;

/// The event a run started by `Engine::invoke` or `step.invoke` is given.
pub const INVOKED: &str = "nodebase/function.invoked";
/// The event that reports the end of a run started by `step.invoke` to its parent:
/// `{"run_id", "function_id", "status", "output", "error"}`.
pub const FINISHED: &str = "nodebase/function.finished";

/// The event a failure handler (`Function::on_failure`) runs for:
/// `{"function_id", "run_id", "error", "event"}` (see `Failure`).
pub const FAILED: &str = "nodebase/function.failed";

/// The event of a cron tick (`Function::cron`): `{"cron", "time_zone", "tick", "tick_at"}`
/// (`tick` in Unix ms, `tick_at` in RFC 3339 in the schedule's zone). It belongs to no
/// user.
pub const SCHEDULED: &str = "nodebase/scheduled.tick";

/// Event names starting with this are the engine's own: only the engine sends them.
pub const RESERVED_PREFIX: &str = "nodebase/";

/// Refuses an event name the engine keeps for itself.
pub(crate) fn not_reserved(name: &str) -> Result<(), EngineError> {
    if name.starts_with(RESERVED_PREFIX) {
        return Err(EngineError::InvalidEvent(format!(
            "{name:?}: names starting with {RESERVED_PREFIX:?} are the engine's own"
        )));
    }
    Ok(())
}

/// An event to send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Like `app/user.signup`: letters, digits and `._-/:`, at most 128 characters.
    pub name: String,
    pub data: Value,
    /// The user the event belongs to; their runs are theirs to see.
    pub user_id: Option<String>,
    /// Sending the same key again is a no-op that answers with the first event.
    pub idempotency_key: Option<String>,
}

impl NewEvent {
    /// An event named `name` carrying `data`.
    pub fn new(name: impl Into<String>, data: Value) -> Self {
        NewEvent {
            name: name.into(),
            data,
            user_id: None,
            idempotency_key: None,
        }
    }

    /// Marks the event as `user_id`'s.
    pub fn for_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Makes repeated sends with `key` a no-op.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// An event as a handler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub data: Value,
    pub user_id: Option<String>,
    /// When it was sent, in Unix milliseconds.
    pub ts: i64,
}

impl Event {
    /// The event as CEL expressions see it (`event.name`, `event.data.x`, …).
    pub(crate) fn as_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "data": self.data,
            "user_id": self.user_id,
            "ts": self.ts,
        })
    }
}

impl TryFrom<event::Model> for Event {
    type Error = EngineError;

    fn try_from(row: event::Model) -> Result<Self, Self::Error> {
        let data = serde_json::from_str(&row.data).map_err(|e| {
            EngineError::Database(format!("event {} has unreadable data: {e}", row.id))
        })?;
        Ok(Event {
            id: row.id,
            name: row.name,
            data,
            user_id: row.user_id,
            ts: row.ts,
        })
    }
}

/// What a send recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReceipt {
    pub event_id: String,
    /// One run per function the event triggered (and did not skip).
    pub run_ids: Vec<String>,
    /// The function of each run in `run_ids`, in the same order.
    pub functions: Vec<String>,
    /// The user the event was sent for, if any.
    pub user_id: Option<String>,
    /// The functions the event triggered whose rate limit skipped it: they record it
    /// (`skipped_run`) and start no run.
    pub skipped: Vec<String>,
    /// True when the idempotency key had been used: nothing new was recorded.
    pub duplicate: bool,
}

/// Checks an event (or trigger) name.
pub fn validate_name(name: &str) -> Result<(), EngineError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c));
    if name.is_empty()
        || name.len() > 128
        || !ok_chars
        || name.starts_with('/')
        || name.ends_with('/')
    {
        return Err(EngineError::InvalidEvent(format!(
            "{name:?} is not a valid event name: use 1-128 letters, digits and ._-/: (like \"app/user.signup\")"
        )));
    }
    Ok(())
}

/// A new id: a UUIDv7, which sorts by creation time.
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A checked event with its payload as JSON text.
pub(crate) struct Prepared {
    pub event: NewEvent,
    pub data: String,
}

/// Checks every event (name, key, payload size) before any is stored.
pub(crate) fn prepare(
    events: Vec<NewEvent>,
    max_bytes: usize,
) -> Result<Vec<Prepared>, EngineError> {
    events
        .into_iter()
        .map(|event| {
            validate_name(&event.name)?;
            if let Some(key) = &event.idempotency_key {
                if key.is_empty() || key.len() > 256 {
                    return Err(EngineError::InvalidEvent(
                        "an idempotency key must have 1-256 characters".into(),
                    ));
                }
            }
            let data = serde_json::to_string(&event.data)
                .map_err(|e| EngineError::InvalidEvent(format!("data is not JSON: {e}")))?;
            if data.len() > max_bytes {
                return Err(EngineError::InvalidEvent(format!(
                    "data is {} bytes of JSON; the limit is {}",
                    data.len(),
                    max_bytes
                )));
            }
            Ok(Prepared { event, data })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn event_names_are_checked() {
        for ok in ["test/hello.world", "app/user.signup", "a", "x:y-z_1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/leading",
            "trailing/",
            "has space",
            "한글",
            &"x".repeat(129),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
