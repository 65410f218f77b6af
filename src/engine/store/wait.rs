//! Waits for events (`step.wait_for_event`): which events end a wait, and the SQL that
//! ends one.
//!
//! A wait and a matching event may be recorded at the same moment in two transactions
//! that cannot see each other. So each side looks for the other *after* its own commit:
//! the matcher compares each committed awaited event with the open waits, and a run
//! that has just parked on a wait looks back over the awaited events recorded since its
//! window began. At least one of the two sees both rows; ending a wait is one guarded
//! UPDATE (`… WHERE status = 'open'`), so only one of them ends it.
use std::collections::HashSet;

use sea_orm::sea_query::{
    CaseStatement, Expr, ExprTrait, IntoColumnRef, LockBehavior, LockType, Query, ReturningClause,
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use serde_json::Value;

use super::{begin, notify};
use crate::domain::RunStatus;
use crate::engine::entities::{awaited_event, event, run, wait};
use crate::engine::event::{new_id, Event, FINISHED};
use crate::engine::expr;
use crate::engine::progress::RunUpdate;
use crate::engine::runtime::Runtime;
use crate::engine::step::WaitFor;

/// Awaited events the matcher takes in one transaction.
pub(crate) const MATCH_BATCH: u64 = 100;
/// Most leaves of an event's data that can serve as match fields.
const MAX_MATCH_FIELDS: usize = 256;
/// Deepest data field that can serve as a match field.
const MAX_FIELD_DEPTH: usize = 8;
/// Most awaited events a wait looks back over when it starts.
const LOOKBACK_LIMIT: u64 = 1000;

pub(crate) const OPEN: &str = "open";
pub(crate) const MATCHED: &str = "matched";
pub(crate) const TIMED_OUT: &str = "timed_out";
/// Its run was cancelled while it waited.
pub(crate) const CANCELLED: &str = "cancelled";

/// The start of the step id of a wait that cancels its run (`Function::cancel_on`):
/// step ids never hold control characters, so these never meet a step's.
pub(crate) const CANCEL_WAIT: &str = "\u{1}cancel:";

/// The waits that cancel run `run_id`, of event `event`, by `rules`: one per rule whose
/// match field the event has (one it lacks can match nothing).
pub(crate) fn cancel_waits(
    run_id: &str,
    event: &Event,
    rules: &[WaitFor],
    now: i64,
) -> Vec<wait::Model> {
    rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| {
            let match_key = match &rule.matching {
                None => None,
                Some(field) => Some(match_key(field, &field_value(event, field)?)),
            };
            let timeout = i64::try_from(rule.timeout.as_millis()).unwrap_or(i64::MAX);
            Some(wait::Model {
                run_id: run_id.to_string(),
                step_id: format!("{CANCEL_WAIT}{i}"),
                user_key: event.user_id.clone().unwrap_or_default(),
                event_name: rule.event.clone(),
                match_key,
                condition: rule.condition.clone(),
                window_start: now,
                expires_at: now.saturating_add(timeout),
                status: OPEN.to_string(),
                event_id: None,
                created_at: now,
                ended_at: None,
            })
        })
        .collect()
}

/// Closes the open cancel waits of runs that have ended.
pub(crate) async fn close_cancel_waits<C: ConnectionTrait>(
    conn: &C,
    run_ids: &[&str],
    now: i64,
) -> Result<(), DbErr> {
    wait::Entity::update_many()
        .col_expr(wait::Column::Status, Expr::value(CANCELLED))
        .col_expr(wait::Column::EndedAt, Expr::value(now))
        .filter(wait::Column::RunId.is_in(run_ids.iter().copied()))
        .filter(wait::Column::Status.eq(OPEN))
        .exec(conn)
        .await?;
    Ok(())
}

/// Whether `wait` cancels its run rather than ends a step's wait.
pub(crate) fn is_cancel_wait(wait_step_id: &str) -> bool {
    wait_step_id.starts_with(CANCEL_WAIT)
}

/// An event as match fields and CEL expressions see it.
/// The value at `field` (`data.order.id`) of `event`, if it is a string, number or bool.
pub(crate) fn field_value(event: &Event, field: &str) -> Option<String> {
    let mut value = &event.as_json();
    for part in field.split('.') {
        value = value.get(part)?;
    }
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

/// `<field>=<value>`, as stored in `wait.match_key`.
pub(crate) fn match_key(field: &str, value: &str) -> String {
    format!("{field}={value}")
}

/// Every match key `event` could satisfy: one per string, number or bool in its data.
fn candidate_keys(event: &Event) -> Vec<String> {
    fn walk(value: &Value, path: &mut String, depth: usize, keys: &mut Vec<String>) {
        if keys.len() >= MAX_MATCH_FIELDS {
            return;
        }
        match value {
            Value::Object(map) if depth < MAX_FIELD_DEPTH => {
                for (name, child) in map {
                    let len = path.len();
                    path.push('.');
                    path.push_str(name);
                    walk(child, path, depth + 1, keys);
                    path.truncate(len);
                }
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                keys.push(match_key(path, &value.to_string()));
            }
            _ => {}
        }
    }
    let mut keys = Vec::new();
    walk(&event.data, &mut "data".to_string(), 0, &mut keys);
    keys
}

/// Whether `new` ends `wait`, whose run's event is `waiting`: it has the wait's name,
/// user and window, the match field's value, and the condition holds.
pub(crate) fn matches(wait: &wait::Model, waiting: Option<&Event>, new: &Event) -> bool {
    if new.name != wait.event_name
        || new.user_id.as_deref().unwrap_or_default() != wait.user_key
        || new.ts < wait.window_start
        || new.ts >= wait.expires_at
    {
        return false;
    }
    if let Some(key) = &wait.match_key {
        let Some((field, expected)) = key.split_once('=') else {
            return false;
        };
        if field_value(new, field).as_deref() != Some(expected) {
            return false;
        }
    }
    match (&wait.condition, waiting) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(expression), Some(waiting)) => condition_holds(expression, waiting, new)
            .unwrap_or_else(|err| {
                tracing::debug!(run_id = %wait.run_id, step = %wait.step_id, error = %err,
                "a wait's condition could not be evaluated; the event does not match");
                false
            }),
    }
}

/// Checks that a condition is CEL the evaluator accepts.
pub(crate) fn check_condition(expression: &str) -> Result<(), String> {
    expr::check(expression)
}

/// Evaluates a wait's CEL condition with `event` (the waiting run's event) and `async`
/// (the new one), as Inngest's `if` does.
fn condition_holds(expression: &str, waiting: &Event, new: &Event) -> Result<bool, String> {
    expr::holds(
        expression,
        vec![("event", waiting.as_json()), ("async", new.as_json())],
    )
}

/// The wait of `run_id`'s step `step_id`.
pub(crate) async fn get<C: ConnectionTrait>(
    conn: &C,
    run_id: &str,
    step_id: &str,
) -> Result<Option<wait::Model>, DbErr> {
    wait::Entity::find_by_id((run_id.to_string(), step_id.to_string()))
        .one(conn)
        .await
}

/// The event with this id, as a handler sees it.
pub(crate) async fn event<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<Event>, DbErr> {
    event::Entity::find_by_id(id.to_string())
        .one(conn)
        .await?
        .map(|row| Event::try_from(row).map_err(|e| DbErr::Custom(e.to_string())))
        .transpose()
}

/// Ends an open wait that has expired; false if it had ended already (matched).
pub(crate) async fn time_out<C: ConnectionTrait>(
    conn: &C,
    run_id: &str,
    step_id: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let ended = wait::Entity::update_many()
        .col_expr(wait::Column::Status, Expr::value(TIMED_OUT))
        .col_expr(wait::Column::EndedAt, Expr::value(now))
        .filter(wait::Column::RunId.eq(run_id))
        .filter(wait::Column::StepId.eq(step_id))
        .filter(wait::Column::Status.eq(OPEN))
        .filter(wait::Column::ExpiresAt.lte(now))
        .exec(conn)
        .await?;
    Ok(ended.rows_affected == 1)
}

/// Ends `wait` with `event_id` unless it has ended already or its run has used that
/// event for another wait, and makes its run due now. True if it ended it.
async fn end_with<C: ConnectionTrait + TransactionTrait>(
    conn: &C,
    wait: &wait::Model,
    event_id: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let used = wait::Entity::find()
        .filter(wait::Column::RunId.eq(&wait.run_id))
        .filter(wait::Column::EventId.eq(event_id))
        .one(conn)
        .await?;
    if used.is_some() {
        return Ok(false);
    }
    Ok(!end_all(conn, &[(wait, event_id)], now)
        .await?
        .woken
        .is_empty())
}

/// Makes parked runs due now (nothing for one not parked, or due already).
async fn wake_runs<C: ConnectionTrait>(
    conn: &C,
    run_ids: Vec<String>,
    now: i64,
) -> Result<(), DbErr> {
    run::Entity::update_many()
        .col_expr(run::Column::DueAt, Expr::value(now))
        .col_expr(run::Column::FairAt, Expr::value(now))
        .col_expr(run::Column::UpdatedAt, Expr::value(now))
        .filter(run::Column::Id.is_in(run_ids))
        .filter(run::Column::Status.eq(RunStatus::Sleeping.as_str()))
        .filter(run::Column::DueAt.gt(now))
        .exec(conn)
        .await?;
    Ok(())
}

/// The event each run was sent, by run id.
async fn run_events<C: ConnectionTrait>(
    conn: &C,
    run_ids: Vec<String>,
) -> Result<std::collections::HashMap<String, Event>, DbErr> {
    let rows: Vec<(run::Model, Option<event::Model>)> = run::Entity::find()
        .filter(run::Column::Id.is_in(run_ids))
        .find_also_related(event::Entity)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(run, event)| Some((run.id, Event::try_from(event?).ok()?)))
        .collect())
}

/// The matcher's pass: takes up to [`MATCH_BATCH`] pending awaited events, oldest
/// first, ends the open waits they match, and marks them compared — in one transaction
/// and a fixed number of statements, whatever the number of events and waits. Returns
/// how many events it took and what ending waits did.
pub(crate) async fn match_pending(rt: &Runtime) -> Result<(usize, Ended), DbErr> {
    // A plain read first: most passes find nothing, and need no write lock for that.
    let any = awaited_event::Entity::find()
        .filter(Expr::cust("pending"))
        .limit(1)
        .one(&rt.db)
        .await?;
    if any.is_none() {
        return Ok((0, Ended::default()));
    }
    let now = rt.clock.now_ms();
    let txn = begin(rt).await?;
    let mut pending = awaited_event::Entity::find()
        .filter(Expr::cust("pending"))
        .order_by_asc(awaited_event::Column::Ts)
        .limit(MATCH_BATCH);
    if txn.get_database_backend() == DbBackend::Postgres {
        // Processes share the pending events instead of all comparing each.
        pending = pending.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let pending = pending.all(&txn).await?;
    if pending.is_empty() {
        txn.rollback().await?;
        return Ok((0, Ended::default()));
    }
    let ids: Vec<String> = pending.iter().map(|a| a.event_id.clone()).collect();
    let events: Vec<Event> = event::Entity::find()
        .filter(event::Column::Id.is_in(ids.clone()))
        .order_by_asc(event::Column::Ts)
        .order_by_asc(event::Column::Id)
        .all(&txn)
        .await?
        .into_iter()
        .filter_map(|row| Event::try_from(row).ok())
        .collect();

    // Every open wait any of the events could end, found by index in one query.
    let mut names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let mut users: Vec<&str> = events
        .iter()
        .map(|e| e.user_id.as_deref().unwrap_or_default())
        .collect();
    let mut keys: Vec<String> = events.iter().flat_map(candidate_keys).collect();
    for list in [&mut names, &mut users] {
        list.sort_unstable();
        list.dedup();
    }
    keys.sort_unstable();
    keys.dedup();
    let mut key_match = Condition::any().add(wait::Column::MatchKey.is_null());
    for chunk in keys.chunks(500) {
        key_match = key_match.add(wait::Column::MatchKey.is_in(chunk.to_vec()));
    }
    let open = wait::Entity::find()
        .filter(Expr::cust("status = 'open'"))
        .filter(wait::Column::EventName.is_in(names))
        .filter(wait::Column::UserKey.is_in(users))
        .filter(key_match)
        .order_by_asc(wait::Column::CreatedAt)
        .all(&txn)
        .await?;
    let ended = if open.is_empty() {
        Ended::default()
    } else {
        let runs: Vec<String> = open.iter().map(|w| w.run_id.clone()).collect();
        let with_condition: Vec<String> = open
            .iter()
            .filter(|w| w.condition.is_some())
            .map(|w| w.run_id.clone())
            .collect();
        let waiting = run_events(&txn, with_condition).await?;
        // What these runs' other waits already took: a run gets each event once.
        let mut used: HashSet<(String, String)> = wait::Entity::find()
            .select_only()
            .column(wait::Column::RunId)
            .column(wait::Column::EventId)
            .filter(wait::Column::RunId.is_in(runs))
            .filter(wait::Column::EventId.is_in(ids.clone()))
            .into_tuple()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let mut taken = HashSet::new();
        let mut ends = Vec::new();
        for new in &events {
            for wait in &open {
                let key = (wait.run_id.clone(), wait.step_id.clone());
                if taken.contains(&key) || used.contains(&(wait.run_id.clone(), new.id.clone())) {
                    continue;
                }
                if matches(wait, waiting.get(&wait.run_id), new) {
                    used.insert((wait.run_id.clone(), new.id.clone()));
                    taken.insert(key);
                    ends.push((wait, new.id.as_str()));
                }
            }
        }
        end_all(&txn, &ends, now).await?
    };
    awaited_event::Entity::update_many()
        .col_expr(awaited_event::Column::Pending, Expr::value(false))
        .filter(awaited_event::Column::EventId.is_in(ids))
        .exec(&txn)
        .await?;
    if !ended.woken.is_empty() {
        notify::wake_on_commit(&txn).await?;
    }
    txn.commit().await?;
    Ok((pending.len(), ended))
}

/// What ending waits did.
#[derive(Default)]
pub(crate) struct Ended {
    /// The runs made due now: their step's wait ended.
    pub woken: Vec<String>,
    /// The runs cancelled by an event (`Function::cancel_on`).
    pub cancelled: Vec<RunUpdate>,
}

/// Ends each wait with its event, unless it has ended meanwhile (one guarded UPDATE for
/// all); makes the runs of the step waits it ended due now (one UPDATE), and cancels the
/// runs of the cancel waits it ended.
async fn end_all<C: ConnectionTrait + TransactionTrait>(
    conn: &C,
    ends: &[(&wait::Model, &str)],
    now: i64,
) -> Result<Ended, DbErr> {
    let mut ended = Ended::default();
    if ends.is_empty() {
        return Ok(ended);
    }
    let mut event_id = CaseStatement::new();
    let mut which = Condition::any();
    for (wait, event) in ends {
        let this = Expr::col(wait::Column::RunId)
            .eq(wait.run_id.as_str())
            .and(Expr::col(wait::Column::StepId).eq(wait.step_id.as_str()));
        event_id = event_id.case(this.clone(), *event);
        which = which.add(this);
    }
    let mut update = Query::update();
    update
        .table(wait::Entity)
        .value(wait::Column::Status, MATCHED)
        .value(wait::Column::EventId, event_id)
        .value(wait::Column::EndedAt, now)
        .cond_where(which)
        .and_where(Expr::col(wait::Column::Status).eq(OPEN))
        .returning(ReturningClause::Columns(vec![
            wait::Column::RunId.into_column_ref(),
            wait::Column::StepId.into_column_ref(),
            wait::Column::EventId.into_column_ref(),
        ]));
    let mut cancelling = Vec::new();
    for row in conn.query_all(&update).await? {
        let run_id: String = row.try_get("", "run_id")?;
        if is_cancel_wait(&row.try_get::<String>("", "step_id")?) {
            cancelling.push((run_id, row.try_get::<String>("", "event_id")?));
        } else {
            ended.woken.push(run_id);
        }
    }
    if !ended.woken.is_empty() {
        wake_runs(conn, ended.woken.clone(), now).await?;
    }
    for (run_id, event_id) in cancelling {
        let by = format!("event {event_id}");
        if let Some(update) = super::control::cancel(conn, &run_id, Some(&by), now).await? {
            ended.cancelled.push(update);
        }
    }
    Ok(ended)
}

/// After `wait` was committed with its run parked: ends it with the oldest awaited event
/// recorded in its window that matches (the lookback, and any event sent while the wait
/// was being recorded), or wakes the run if the matcher ended it meanwhile. True if the
/// run is due now.
pub(crate) async fn look_back(
    rt: &Runtime,
    wait: &wait::Model,
    waiting: &Event,
) -> Result<bool, DbErr> {
    let now = rt.clock.now_ms();
    let txn = begin(rt).await?;
    let current = get(&txn, &wait.run_id, &wait.step_id).await?;
    let Some(current) = current else {
        txn.rollback().await?;
        return Ok(false);
    };
    if current.status != OPEN {
        if current.status == MATCHED {
            wake_runs(&txn, vec![wait.run_id.clone()], now).await?;
            notify::wake_on_commit(&txn).await?;
            txn.commit().await?;
            return Ok(true);
        }
        txn.rollback().await?;
        return Ok(false);
    }
    let recent: Vec<String> = awaited_event::Entity::find()
        .select_only()
        .column(awaited_event::Column::EventId)
        .filter(awaited_event::Column::Name.eq(&wait.event_name))
        .filter(awaited_event::Column::UserKey.eq(&wait.user_key))
        .filter(awaited_event::Column::Ts.gte(wait.window_start))
        .filter(awaited_event::Column::Ts.lt(wait.expires_at))
        .order_by_asc(awaited_event::Column::Ts)
        .limit(LOOKBACK_LIMIT)
        .into_tuple()
        .all(&txn)
        .await?;
    if recent.is_empty() {
        txn.rollback().await?;
        return Ok(false);
    }
    let events = event::Entity::find()
        .filter(event::Column::Id.is_in(recent))
        .order_by_asc(event::Column::Ts)
        .order_by_asc(event::Column::Id)
        .all(&txn)
        .await?;
    for row in events {
        let Ok(new) = Event::try_from(row) else {
            continue;
        };
        if matches(&current, Some(waiting), &new) && end_with(&txn, &current, &new.id, now).await? {
            notify::wake_on_commit(&txn).await?;
            txn.commit().await?;
            return Ok(true);
        }
    }
    txn.rollback().await?;
    Ok(false)
}

/// How an invoked run ended, for its parent.
pub(crate) struct End<'a> {
    pub run_id: &'a str,
    pub function_id: &'a str,
    pub user_id: Option<&'a str>,
    pub status: RunStatus,
    /// The output, as JSON text.
    pub output: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// Records a [`FINISHED`] event for each end, pending for the matcher, in the caller's
/// transaction — the one that ends the runs — so that no end goes unreported.
pub(crate) async fn report_ends<C: ConnectionTrait>(
    conn: &C,
    ends: &[End<'_>],
    now: i64,
) -> Result<(), DbErr> {
    if ends.is_empty() {
        return Ok(());
    }
    let mut events = Vec::with_capacity(ends.len());
    let mut awaited = Vec::with_capacity(ends.len());
    for end in ends {
        let id = new_id();
        let output: Value = end
            .output
            .and_then(|o| serde_json::from_str(o).ok())
            .unwrap_or(Value::Null);
        let data = serde_json::json!({
            "run_id": end.run_id,
            "function_id": end.function_id,
            "status": end.status.as_str(),
            "output": output,
            "error": end.error,
        });
        events.push(event::ActiveModel {
            id: Set(id.clone()),
            name: Set(FINISHED.to_string()),
            data: Set(data.to_string()),
            user_id: Set(end.user_id.map(str::to_string)),
            idempotency_key: Set(None),
            ts: Set(now),
        });
        awaited.push(awaited_event::ActiveModel {
            event_id: Set(id),
            name: Set(FINISHED.to_string()),
            user_key: Set(end.user_id.unwrap_or_default().to_string()),
            ts: Set(now),
            pending: Set(true),
        });
    }
    event::Entity::insert_many(events)
        .exec_without_returning(conn)
        .await?;
    awaited_event::Entity::insert_many(awaited)
        .exec_without_returning(conn)
        .await?;
    notify::match_on_commit(conn).await
}

/// Deletes compared awaited events older than the longest lookback.
pub(crate) async fn forget_awaited<C: ConnectionTrait>(
    conn: &C,
    before: i64,
) -> Result<u64, DbErr> {
    let deleted = awaited_event::Entity::delete_many()
        .filter(Expr::cust("NOT pending"))
        .filter(awaited_event::Column::Ts.lt(before))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: Value) -> Event {
        Event {
            id: "e".into(),
            name: "demo/approval.decided".into(),
            data,
            user_id: Some("u1".into()),
            ts: 100,
        }
    }

    fn wait(match_key: Option<String>, condition: Option<&str>) -> wait::Model {
        wait::Model {
            run_id: "r".into(),
            step_id: "s".into(),
            user_key: "u1".into(),
            event_name: "demo/approval.decided".into(),
            match_key,
            condition: condition.map(str::to_string),
            window_start: 50,
            expires_at: 200,
            status: OPEN.into(),
            event_id: None,
            created_at: 60,
            ended_at: None,
        }
    }

    #[test]
    fn candidate_keys_name_every_scalar_of_the_data() {
        let keys = candidate_keys(&event(serde_json::json!({
            "request_id": "r1", "n": 2, "ok": true, "nested": {"id": 7}, "list": [1], "none": null
        })));
        let mut keys = keys;
        keys.sort();
        assert_eq!(
            keys,
            [
                r#"data.n=2"#,
                r#"data.nested.id=7"#,
                r#"data.ok=true"#,
                r#"data.request_id="r1""#,
            ]
        );
    }

    #[test]
    fn a_wait_matches_on_its_field_and_condition_within_its_window() {
        let waiting = event(serde_json::json!({"request_id": "r1", "limit": 10}));
        let key = Some(match_key(
            "data.request_id",
            &field_value(&waiting, "data.request_id").unwrap(),
        ));
        let same = event(serde_json::json!({"request_id": "r1", "amount": 5}));
        let other = event(serde_json::json!({"request_id": "r2"}));
        assert!(matches(&wait(key.clone(), None), Some(&waiting), &same));
        assert!(!matches(&wait(key.clone(), None), Some(&waiting), &other));

        let cel = "async.data.amount < event.data.limit";
        assert!(check_condition(cel).is_ok());
        assert!(matches(
            &wait(key.clone(), Some(cel)),
            Some(&waiting),
            &same
        ));
        let big = event(serde_json::json!({"request_id": "r1", "amount": 50}));
        assert!(!matches(
            &wait(key.clone(), Some(cel)),
            Some(&waiting),
            &big
        ));
        // A condition that cannot be evaluated never matches.
        assert!(!matches(
            &wait(None, Some("async.data.missing > 1")),
            Some(&waiting),
            &same
        ));
        assert!(check_condition("async.data.amount <").is_err());

        let mut early = same.clone();
        early.ts = 49;
        assert!(!matches(&wait(key.clone(), None), Some(&waiting), &early));
        let mut late = same.clone();
        late.ts = 200;
        assert!(!matches(&wait(key.clone(), None), Some(&waiting), &late));
        let mut stranger = same;
        stranger.user_id = Some("u2".into());
        assert!(!matches(&wait(key, None), Some(&waiting), &stranger));
    }
}
