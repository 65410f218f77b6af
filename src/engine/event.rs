//! Events: validated, recorded, and turned into runs, in the caller's transaction.
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionSession, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::entities::{event, run};
use super::error::EngineError;
use super::status::RunStatus;
use super::Inner;

/// Rows per multi-row INSERT, well under SQLite's limit on bound parameters.
const ROWS_PER_INSERT: usize = 500;

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
    /// One run per function the event triggered.
    pub run_ids: Vec<String>,
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

struct Prepared {
    event: NewEvent,
    data: String,
}

fn prepare(inner: &Inner, events: Vec<NewEvent>) -> Result<Vec<Prepared>, EngineError> {
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
            if data.len() > inner.config.max_event_bytes {
                return Err(EngineError::InvalidEvent(format!(
                    "data is {} bytes of JSON; the limit is {}",
                    data.len(),
                    inner.config.max_event_bytes
                )));
            }
            Ok(Prepared { event, data })
        })
        .collect()
}

/// A queued run of `function_id` for `event_id`, due now.
pub(crate) fn new_run(
    run_id: &str,
    function_id: &str,
    event_id: &str,
    user_id: Option<String>,
    now: i64,
) -> run::ActiveModel {
    run::ActiveModel {
        id: Set(run_id.to_string()),
        function_id: Set(function_id.to_string()),
        event_id: Set(event_id.to_string()),
        user_id: Set(user_id),
        status: Set(RunStatus::Queued.as_str().to_string()),
        due_at: Set(now),
        locked_by: Set(None),
        lease_until: Set(None),
        claims: Set(0),
        attempts: Set(0),
        output: Set(None),
        error: Set(None),
        rerun_of: Set(None),
        created_at: Set(now),
        started_at: Set(None),
        ended_at: Set(None),
        updated_at: Set(now),
    }
}

/// Records `events` and their runs: one per function each triggers, or, with `target`,
/// one run of that function only (an invocation).
pub(crate) async fn send_many<C: ConnectionTrait + TransactionTrait>(
    inner: &Inner,
    conn: &C,
    events: Vec<NewEvent>,
    target: Option<&String>,
) -> Result<Vec<SendReceipt>, EngineError> {
    // Validate everything first: a bad event stores nothing, not even its neighbours.
    let prepared = prepare(inner, events)?;
    let now = inner.clock.now_ms();
    // Events and runs commit together: a transaction of our own on a plain connection,
    // a savepoint inside the caller's transaction.
    let txn = conn.begin().await?;
    let conn = &txn;

    let mut receipts = Vec::with_capacity(prepared.len());
    let mut event_rows = Vec::with_capacity(prepared.len());
    let mut run_rows = Vec::with_capacity(prepared.len());
    for p in prepared {
        let event_id = new_id();
        let row = event::ActiveModel {
            id: Set(event_id.clone()),
            name: Set(p.event.name.clone()),
            data: Set(p.data),
            user_id: Set(p.event.user_id.clone()),
            idempotency_key: Set(p.event.idempotency_key.clone()),
            ts: Set(now),
        };
        if let Some(key) = &p.event.idempotency_key {
            // Insert-or-skip in one statement, so concurrent sends with one key agree.
            let inserted = event::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(event::Column::IdempotencyKey)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(conn)
                .await;
            match inserted {
                Ok(0) | Err(DbErr::RecordNotInserted) => {
                    receipts.push(duplicate_receipt(conn, key).await?);
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            event_rows.push(row);
        }
        let mut run_ids = Vec::new();
        let functions: Vec<&String> = match target {
            Some(function_id) => vec![function_id],
            None => inner
                .triggers
                .get(&p.event.name)
                .into_iter()
                .flatten()
                .collect(),
        };
        for function_id in functions {
            let run_id = new_id();
            run_rows.push(new_run(
                &run_id,
                function_id,
                &event_id,
                p.event.user_id.clone(),
                now,
            ));
            run_ids.push(run_id);
        }
        receipts.push(SendReceipt {
            event_id,
            run_ids,
            duplicate: false,
        });
    }
    for chunk in event_rows.chunks(ROWS_PER_INSERT) {
        event::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    for chunk in run_rows.chunks(ROWS_PER_INSERT) {
        run::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    if !run_rows.is_empty() {
        super::notifier::wake_on_commit(conn).await?;
    }
    txn.commit().await?;
    Ok(receipts)
}

/// The receipt of the event first sent with idempotency key `key`.
async fn duplicate_receipt<C: ConnectionTrait>(
    conn: &C,
    key: &str,
) -> Result<SendReceipt, EngineError> {
    let first = event::Entity::find()
        .filter(event::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await?
        .ok_or_else(|| EngineError::Database(format!("event with key {key:?} vanished")))?;
    let run_ids = run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .filter(run::Column::EventId.eq(&first.id))
        .into_tuple::<String>()
        .all(conn)
        .await?;
    Ok(SendReceipt {
        event_id: first.id,
        run_ids,
        duplicate: true,
    })
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
