//! The engine's SQL, in one place. Every state move is a guarded UPDATE: it names the
//! state (and owner) it expects, so a run can never be moved by two workers.
use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{
    Alias, Asterisk, CaseStatement, CommonTableExpression, Expr, ExprTrait, Func, IntoColumnRef,
    LockBehavior, LockType, OnConflict, Order, Query, ReturningClause, SelectStatement,
    UpdateStatement, WithClause,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, FromQueryResult, IdenStatic, IntoActiveModel, Iterable, QueryFilter, QueryOrder,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use super::completer::{Transition, Write};
use super::entities::{event, run, step};
use super::event::Event;
use super::status::RunStatus;
use super::{Inner, RunUpdate};

// Literal SQL, not bound parameters, so that SQLite can match the partial indexes.
const DUE_STATES: &str = "status IN ('queued', 'sleeping')";
const RUNNING: &str = "status = 'running'";
const LIVE_STATES: &str = "status IN ('queued', 'running', 'sleeping')";
const FINAL_STATES: &str = "status IN ('completed', 'failed', 'cancelled')";

/// Starts a write transaction: IMMEDIATE on SQLite, so that it takes the write lock
/// up front instead of failing to upgrade a read snapshot later.
async fn begin(inner: &Inner) -> Result<DatabaseTransaction, DbErr> {
    if inner.db.get_database_backend() == DbBackend::Sqlite {
        inner
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
    } else {
        inner.db.begin().await
    }
}

fn id_col() -> Expr {
    Expr::col(run::Column::Id)
}

/// `id IN (ids)`. On PostgreSQL `id = ANY(ARRAY(ids))`: the ids (which may be locked
/// there) are found first and then looked up by primary key, whatever the generic plan
/// guesses about how many there are. See scripts/claim-plan.sh.
fn id_in(postgres: bool, ids: SelectStatement) -> Expr {
    if postgres {
        let ids = Expr::SubQuery(None, Box::new(ids.into()));
        Expr::cust_with_expr(r#""id" = ANY(ARRAY($1))"#, ids)
    } else {
        id_col().in_subquery(ids)
    }
}

/// Claims up to `limit` due runs for this worker, oldest due first, with their events
/// (`None` if the event is gone).
pub(crate) async fn claim(
    inner: &Inner,
    limit: usize,
) -> Result<Vec<(run::Model, Option<Event>)>, DbErr> {
    let now = inner.clock.now_ms();
    let mut due = Query::select();
    due.column(run::Column::Id)
        .from(run::Entity)
        .and_where(Expr::cust(DUE_STATES))
        .and_where(Expr::col(run::Column::DueAt).lte(now))
        .order_by(run::Column::DueAt, Order::Asc)
        .limit(limit as u64);
    let postgres = inner.db.get_database_backend() == DbBackend::Postgres;
    if postgres {
        // Concurrent claimers skip each other's rows instead of waiting on them.
        due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let mut claim = Query::update();
    claim
        .table(run::Entity)
        .value(run::Column::Status, RunStatus::Running.as_str())
        .value(run::Column::LockedBy, inner.worker_id.as_str())
        .value(
            run::Column::LeaseUntil,
            now + inner.config.lease.as_millis() as i64,
        )
        .value(run::Column::Claims, Expr::col(run::Column::Claims).add(1))
        .value(
            run::Column::StartedAt,
            Func::coalesce([Expr::col(run::Column::StartedAt), Expr::val(now)]),
        )
        .value(run::Column::UpdatedAt, now)
        .and_where(Expr::cust(DUE_STATES))
        .returning_all();
    claim.and_where(id_in(postgres, due));
    if !postgres {
        // SQLite has no UPDATE inside WITH: two statements.
        let rows = inner.leases.query_all(&claim).await?;
        let runs = rows
            .iter()
            .map(|row| run::Model::from_query_result(row, ""))
            .collect::<Result<Vec<_>, _>>()?;
        let events = events(inner, runs.iter().map(|r| r.event_id.clone()).collect()).await?;
        return Ok(runs
            .into_iter()
            .map(|r| {
                // One event may have started several of these runs.
                let event = events.get(&r.event_id).cloned();
                (r, event)
            })
            .collect());
    }
    // PostgreSQL: the claim and its events in one round trip.
    let claimed = Alias::new("claimed");
    let mut select = Query::select();
    select
        .column((claimed.clone(), Asterisk))
        .from(claimed.clone())
        .left_join(
            event::Entity,
            Expr::col((event::Entity, event::Column::Id))
                .equals((claimed.clone(), run::Column::EventId)),
        );
    for column in event::Column::iter() {
        select.expr_as(
            Expr::col((event::Entity, column)),
            Alias::new(format!("{EVENT_PREFIX}{}", column.as_str())),
        );
    }
    let mut with = WithClause::new();
    with.cte(
        CommonTableExpression::new()
            .query(claim)
            .table_name(claimed)
            .to_owned(),
    );
    let query = with.query(select);
    let rows = inner.leases.query_all(&query).await?;
    rows.iter()
        .map(|row| {
            let run = run::Model::from_query_result(row, "")?;
            let event = match row.try_get::<Option<String>>("", &format!("{EVENT_PREFIX}id"))? {
                Some(_) => Some(
                    Event::try_from(event::Model::from_query_result(row, EVENT_PREFIX)?)
                        .map_err(|e| DbErr::Custom(e.to_string()))?,
                ),
                None => None,
            };
            Ok((run, event))
        })
        .collect()
}

/// Names the event's columns apart from the run's in the claim's result (the run has
/// an `event_id` of its own).
const EVENT_PREFIX: &str = "ev_";

/// The events with these ids.
async fn events(inner: &Inner, ids: Vec<String>) -> Result<HashMap<String, Event>, DbErr> {
    let rows = event::Entity::find()
        .filter(event::Column::Id.is_in(ids))
        .all(&inner.db)
        .await?;
    let mut events = HashMap::with_capacity(rows.len());
    for row in rows {
        let event = Event::try_from(row).map_err(|e| DbErr::Custom(e.to_string()))?;
        events.insert(event.id.clone(), event);
    }
    Ok(events)
}

/// The saved steps of these runs.
pub(crate) async fn steps(
    inner: &Inner,
    run_ids: Vec<String>,
) -> Result<HashMap<String, Vec<step::Model>>, DbErr> {
    let mut by_run: HashMap<String, Vec<step::Model>> = HashMap::new();
    if run_ids.is_empty() {
        return Ok(by_run);
    }
    let rows = step::Entity::find()
        .filter(step::Column::RunId.is_in(run_ids))
        .order_by_asc(step::Column::Position)
        .all(&inner.db)
        .await?;
    for row in rows {
        by_run.entry(row.run_id.clone()).or_default().push(row);
    }
    Ok(by_run)
}

/// Commits a batch of writes in one transaction and returns the runs that were still
/// ours (running, locked by this worker); other runs' writes are dropped.
pub(crate) async fn commit(inner: &Inner, writes: &[Write]) -> Result<HashSet<String>, DbErr> {
    let now = inner.clock.now_ms();
    let mut run_ids: Vec<&str> = writes.iter().map(|w| w.run_id.as_str()).collect();
    run_ids.sort_unstable();
    run_ids.dedup();

    let txn = begin(inner).await?;
    // Renewing the lease is also the ownership check, under the row's write lock.
    let mut renew = Query::update();
    renew
        .table(run::Entity)
        .value(
            run::Column::LeaseUntil,
            now + inner.config.lease.as_millis() as i64,
        )
        .value(run::Column::UpdatedAt, now)
        .and_where(id_col().is_in(run_ids))
        .and_where(Expr::cust(RUNNING))
        .and_where(Expr::col(run::Column::LockedBy).eq(inner.worker_id.as_str()))
        .returning_col(run::Column::Id);
    let owned: HashSet<String> = txn
        .query_all(&renew)
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "id"))
        .collect::<Result<_, _>>()?;

    // The last record of each step wins.
    let mut steps: HashMap<(&str, &str), &step::Model> = HashMap::new();
    for write in writes.iter().filter(|w| owned.contains(&w.run_id)) {
        if let Some(step) = &write.step {
            steps.insert((step.run_id.as_str(), step.step_id.as_str()), step);
        }
    }
    if !steps.is_empty() {
        let rows: Vec<step::ActiveModel> = steps
            .into_values()
            .map(|s| s.clone().into_active_model().reset_all())
            .collect();
        step::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([step::Column::RunId, step::Column::StepId])
                    .update_columns([
                        step::Column::Status,
                        step::Column::Attempts,
                        step::Column::Output,
                        step::Column::Error,
                        step::Column::Errors,
                        step::Column::EndedAt,
                        step::Column::WakeAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }

    let moves: Vec<(&str, &Transition)> = writes
        .iter()
        .filter(|w| owned.contains(&w.run_id))
        .filter_map(|w| w.transition.as_ref().map(|t| (w.run_id.as_str(), t)))
        .collect();
    if !moves.is_empty() {
        txn.execute(&transitions(inner, &moves, now)).await?;
        let updates: Vec<RunUpdate> = writes
            .iter()
            .filter(|w| owned.contains(&w.run_id))
            .filter_map(|w| {
                w.transition.as_ref().map(|t| RunUpdate {
                    run_id: w.run_id.clone(),
                    function_id: w.function_id.clone(),
                    user_id: w.user_id.clone(),
                    status: t.status(),
                })
            })
            .collect();
        super::notifier::announce(&txn, &inner.worker_id, &updates).await?;
    }
    txn.commit().await?;
    Ok(owned)
}

/// One UPDATE that moves many running runs at once, each to its own state.
fn transitions(inner: &Inner, moves: &[(&str, &Transition)], now: i64) -> UpdateStatement {
    /// A `CASE id WHEN … END` that keeps the column's value for runs it does not name.
    struct Column {
        col: run::Column,
        case: CaseStatement,
        arms: usize,
    }
    impl Column {
        fn new(col: run::Column) -> Self {
            Column {
                col,
                case: CaseStatement::new(),
                arms: 0,
            }
        }
        fn set(&mut self, run_id: &str, value: impl Into<Expr>) {
            let case = std::mem::take(&mut self.case);
            self.case = case.case(id_col().eq(run_id), value);
            self.arms += 1;
        }
    }
    let mut status = Column::new(run::Column::Status);
    let mut due_at = Column::new(run::Column::DueAt);
    let mut output = Column::new(run::Column::Output);
    let mut error = Column::new(run::Column::Error);
    let mut attempts = Column::new(run::Column::Attempts);
    let mut ended_at = Column::new(run::Column::EndedAt);
    for &(run_id, transition) in moves {
        status.set(run_id, transition.status().as_str());
        match transition {
            Transition::Queued {
                due_at: at,
                attempts: n,
                error: e,
            } => {
                due_at.set(run_id, *at);
                if let Some(n) = n {
                    attempts.set(run_id, *n);
                }
                if let Some(e) = e {
                    error.set(run_id, e.as_str());
                }
            }
            Transition::Sleeping { due_at: at } => due_at.set(run_id, *at),
            Transition::Completed { output: o } => {
                output.set(run_id, o.as_str());
                ended_at.set(run_id, now);
            }
            Transition::Failed {
                error: e,
                attempts: n,
            } => {
                error.set(run_id, e.as_str());
                if let Some(n) = n {
                    attempts.set(run_id, *n);
                }
                ended_at.set(run_id, now);
            }
        }
    }
    let mut update = Query::update();
    update.table(run::Entity);
    for column in [status, due_at, output, error, attempts, ended_at] {
        if column.arms > 0 {
            update.value(column.col, column.case.finally(Expr::col(column.col)));
        }
    }
    update
        .value(run::Column::LockedBy, Option::<String>::None)
        .value(run::Column::LeaseUntil, Option::<i64>::None)
        .value(run::Column::UpdatedAt, now)
        .and_where(id_col().is_in(moves.iter().map(|(id, _)| *id)))
        .and_where(Expr::cust(RUNNING))
        .and_where(Expr::col(run::Column::LockedBy).eq(inner.worker_id.as_str()))
        .to_owned()
}

/// Renews the leases of this worker's runs that are still executing.
pub(crate) async fn heartbeat(inner: &Inner, run_ids: Vec<String>) -> Result<u64, DbErr> {
    if run_ids.is_empty() {
        return Ok(0);
    }
    let now = inner.clock.now_ms();
    let postgres = inner.db.get_database_backend() == DbBackend::Postgres;
    let mut ours = Query::select();
    ours.column(run::Column::Id)
        .from(run::Entity)
        .and_where(id_col().is_in(run_ids));
    if postgres {
        // A run whose writes are being committed right now is skipped: that commit
        // renews its lease, and waiting for it could deadlock with it.
        ours.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let mut renew = Query::update();
    renew
        .table(run::Entity)
        .value(
            run::Column::LeaseUntil,
            now + inner.config.lease.as_millis() as i64,
        )
        .and_where(id_in(postgres, ours))
        .and_where(Expr::cust(RUNNING))
        .and_where(Expr::col(run::Column::LockedBy).eq(inner.worker_id.as_str()));
    Ok(inner.leases.execute(&renew).await?.rows_affected())
}

fn updates_from(
    rows: Vec<sea_orm::QueryResult>,
    status: RunStatus,
) -> Result<Vec<RunUpdate>, DbErr> {
    rows.iter()
        .map(|row| {
            Ok(RunUpdate {
                run_id: row.try_get("", "id")?,
                function_id: row.try_get("", "function_id")?,
                user_id: row.try_get("", "user_id")?,
                status,
            })
        })
        .collect()
}

/// An UPDATE that moves runs to `status` without an owner, returning what a
/// [`RunUpdate`] needs; the callers add which runs.
fn unlock(status: RunStatus, now: i64) -> UpdateStatement {
    let mut update = Query::update();
    update
        .table(run::Entity)
        .value(run::Column::Status, status.as_str())
        .value(run::Column::LockedBy, Option::<String>::None)
        .value(run::Column::LeaseUntil, Option::<i64>::None)
        .value(run::Column::UpdatedAt, now)
        .returning(ReturningClause::Columns(vec![
            run::Column::Id.into_column_ref(),
            run::Column::FunctionId.into_column_ref(),
            run::Column::UserId.into_column_ref(),
        ]));
    update
}

/// Puts runs whose lease lapsed (their worker died or hung) back in the queue.
pub(crate) async fn rescue(inner: &Inner) -> Result<Vec<RunUpdate>, DbErr> {
    let now = inner.clock.now_ms();
    let mut rescue = unlock(RunStatus::Queued, now);
    rescue
        .value(run::Column::DueAt, now)
        .and_where(Expr::cust(RUNNING))
        .and_where(Expr::col(run::Column::LeaseUntil).lt(now));
    updates_from(inner.db.query_all(&rescue).await?, RunStatus::Queued)
}

/// Hands this worker's unfinished runs back to the queue (at shutdown).
pub(crate) async fn release(inner: &Inner, run_ids: Vec<String>) -> Result<Vec<RunUpdate>, DbErr> {
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    let now = inner.clock.now_ms();
    let mut release = unlock(RunStatus::Queued, now);
    release
        .value(run::Column::DueAt, now)
        .and_where(id_col().is_in(run_ids))
        .and_where(Expr::cust(RUNNING))
        .and_where(Expr::col(run::Column::LockedBy).eq(inner.worker_id.as_str()));
    updates_from(inner.db.query_all(&release).await?, RunStatus::Queued)
}

/// Cancels a run that has not finished; `None` if it had (or does not exist).
pub(crate) async fn cancel(
    db: &impl ConnectionTrait,
    run_id: &str,
    now: i64,
) -> Result<Option<RunUpdate>, DbErr> {
    let mut cancel = unlock(RunStatus::Cancelled, now);
    cancel
        .value(run::Column::EndedAt, now)
        .and_where(id_col().eq(run_id))
        .and_where(Expr::cust(LIVE_STATES));
    let rows = db.query_all(&cancel).await?;
    Ok(updates_from(rows, RunStatus::Cancelled)?.pop())
}

/// When the next queued or sleeping run falls due, if any.
pub(crate) async fn next_due(inner: &Inner) -> Result<Option<i64>, DbErr> {
    let mut next = Query::select();
    next.expr(Func::min(Expr::col(run::Column::DueAt)))
        .from(run::Entity)
        .and_where(Expr::cust(DUE_STATES));
    let row = inner.db.query_one(&next).await?;
    match row {
        Some(row) => row.try_get_by_index::<Option<i64>>(0),
        None => Ok(None),
    }
}

/// Queues a new run like `run_id` (same function, same event) if `run_id` has finished.
pub(crate) async fn rerun(
    db: &impl ConnectionTrait,
    run_id: &str,
    now: i64,
) -> Result<Option<String>, DbErr> {
    let Some(old) = run::Entity::find_by_id(run_id.to_string()).one(db).await? else {
        return Ok(None);
    };
    let finished = old
        .status
        .parse::<RunStatus>()
        .map(RunStatus::is_final)
        .unwrap_or(false);
    if !finished {
        return Ok(None);
    }
    let new_id = super::event::new_id();
    let mut row = super::event::new_run(&new_id, &old.function_id, &old.event_id, old.user_id, now);
    row.rerun_of = sea_orm::Set(Some(old.id));
    run::Entity::insert(row).exec_without_returning(db).await?;
    Ok(Some(new_id))
}

/// Rows deleted per statement when pruning.
const PRUNE_BATCH: u64 = 1_000;

/// Deletes finished runs that ended before `cutoff` (their steps go with them), then
/// events from before `cutoff` that have no run left, a batch at a time.
pub(crate) async fn prune(db: &impl ConnectionTrait, cutoff: i64) -> Result<(u64, u64), DbErr> {
    let backend = db.get_database_backend();
    let mut runs = 0;
    loop {
        let mut old = Query::select();
        old.column(run::Column::Id)
            .from(run::Entity)
            .and_where(Expr::cust(FINAL_STATES))
            .and_where(Expr::col(run::Column::EndedAt).lt(cutoff))
            .limit(PRUNE_BATCH);
        // Steps first: SQLite enforces the cascade only with foreign keys on.
        let mut steps = Query::delete();
        steps
            .from_table(step::Entity)
            .and_where(Expr::col(step::Column::RunId).in_subquery(old.clone()));
        let mut doomed = Query::delete();
        doomed
            .from_table(run::Entity)
            .and_where(Expr::col(run::Column::Id).in_subquery(old));
        db.execute(&steps).await?;
        let deleted = db.execute(&doomed).await?.rows_affected();
        runs += deleted;
        if deleted < PRUNE_BATCH {
            break;
        }
    }
    let mut events = 0;
    loop {
        let sql = format!(
            "DELETE FROM event WHERE id IN (SELECT e.id FROM event e WHERE e.ts < {cutoff} \
             AND NOT EXISTS (SELECT 1 FROM run r WHERE r.event_id = e.id) LIMIT {PRUNE_BATCH})"
        );
        let deleted = db
            .execute_raw(sea_orm::Statement::from_string(backend, sql))
            .await?
            .rows_affected();
        events += deleted;
        if deleted < PRUNE_BATCH {
            break;
        }
    }
    Ok((runs, events))
}
