//! Events: validated, recorded, and turned into runs, in the caller's transaction.
use sea_orm::sea_query::{Alias, CommonTableExpression, Expr, OnConflict, Query, WithClause};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait, Set, TransactionSession, TransactionTrait,
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
    let rows: Vec<Rows> = prepared
        .into_iter()
        .map(|p| rows(inner, p, target, now))
        .collect();
    let one_statement = conn.get_database_backend() == DbBackend::Postgres
        && rows.len() <= ROWS_PER_INSERT
        && rows.iter().map(|r| r.runs.len()).sum::<usize>() <= ROWS_PER_INSERT
        && rows.iter().all(|r| r.idempotency_key.is_none());
    if one_statement {
        send_in_one_statement(conn, rows).await
    } else {
        send_in_transaction(conn, rows).await
    }
}

/// An event's rows and its receipt, before anything is stored.
struct Rows {
    event: event::ActiveModel,
    idempotency_key: Option<String>,
    runs: Vec<run::ActiveModel>,
    receipt: SendReceipt,
}

fn rows(inner: &Inner, p: Prepared, target: Option<&String>, now: i64) -> Rows {
    let event_id = new_id();
    let functions: Vec<&String> = match target {
        Some(function_id) => vec![function_id],
        None => inner
            .triggers
            .get(&p.event.name)
            .into_iter()
            .flatten()
            .collect(),
    };
    let mut runs = Vec::with_capacity(functions.len());
    let mut run_ids = Vec::with_capacity(functions.len());
    for function_id in functions {
        let run_id = new_id();
        runs.push(new_run(
            &run_id,
            function_id,
            &event_id,
            p.event.user_id.clone(),
            now,
        ));
        run_ids.push(run_id);
    }
    Rows {
        event: event::ActiveModel {
            id: Set(event_id.clone()),
            name: Set(p.event.name),
            data: Set(p.data),
            user_id: Set(p.event.user_id),
            idempotency_key: Set(p.event.idempotency_key.clone()),
            ts: Set(now),
        },
        idempotency_key: p.event.idempotency_key,
        runs,
        receipt: SendReceipt {
            event_id,
            run_ids,
            duplicate: false,
        },
    }
}

/// PostgreSQL, no idempotency keys: the events, their runs and the wake-up signal in
/// one statement — atomic by itself, and one round trip (plus the commit's flush when
/// `conn` is not a transaction).
async fn send_in_one_statement<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<Rows>,
) -> Result<Vec<SendReceipt>, EngineError> {
    let mut events = Vec::with_capacity(rows.len());
    let mut runs = Vec::new();
    let mut receipts = Vec::with_capacity(rows.len());
    for r in rows {
        events.push(r.event);
        runs.extend(r.runs);
        receipts.push(r.receipt);
    }
    if events.is_empty() {
        return Ok(receipts);
    }
    let insert_events = event::Entity::insert_many(events).into_query();
    let mut with = WithClause::new();
    with.cte(
        CommonTableExpression::new()
            .query(insert_events)
            .table_name(Alias::new("new_events"))
            .to_owned(),
    );
    let mut last = Query::select();
    if runs.is_empty() {
        last.expr(Expr::val(1));
    } else {
        with.cte(
            CommonTableExpression::new()
                .query(run::Entity::insert_many(runs).into_query())
                .table_name(Alias::new("new_runs"))
                .to_owned(),
        );
        last.expr(super::notifier::wake_expr());
    }
    conn.execute(&with.query(last)).await?;
    Ok(receipts)
}

/// Everything else: a transaction of our own on a plain connection, a savepoint inside
/// the caller's transaction.
async fn send_in_transaction<C: ConnectionTrait + TransactionTrait>(
    conn: &C,
    rows: Vec<Rows>,
) -> Result<Vec<SendReceipt>, EngineError> {
    let txn = conn.begin().await?;
    let conn = &txn;
    let mut receipts = Vec::with_capacity(rows.len());
    let mut event_rows = Vec::with_capacity(rows.len());
    let mut run_rows = Vec::with_capacity(rows.len());
    for r in rows {
        if let Some(key) = &r.idempotency_key {
            // Insert-or-skip in one statement, so concurrent sends with one key agree.
            let inserted = event::Entity::insert(r.event)
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
            event_rows.push(r.event);
        }
        run_rows.extend(r.runs);
        receipts.push(r.receipt);
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
