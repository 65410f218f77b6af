//! Moves made outside an executor: rescue of lapsed leases, hand-back at shutdown,
//! cancel, and re-run.
use sea_orm::sea_query::{Expr, ExprTrait, IntoColumnRef, Query, ReturningClause, UpdateStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect,
    TransactionSession, TransactionTrait,
};

use super::send::new_run;
use super::wait::End;
use super::{id_col, live_states, locked_by_us, running};
use crate::domain::{RunStatus, StepStatus};
use crate::engine::entities::{event, run, step, wait};
use crate::engine::error::storable;
use crate::engine::event::{new_id, Event};
use crate::engine::progress::{RunRef, RunUpdate};
use crate::engine::runtime::Runtime;

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
pub(crate) async fn rescue(rt: &Runtime) -> Result<Vec<RunUpdate>, DbErr> {
    let now = rt.clock.now_ms();
    let mut rescue = unlock(RunStatus::Queued, now);
    rescue
        .value(run::Column::DueAt, now)
        .value(run::Column::FairAt, now)
        .and_where(running())
        .and_where(Expr::col(run::Column::LeaseUntil).lt(now));
    updates_from(rt.db.query_all(&rescue).await?, RunStatus::Queued)
}

/// `stalled_claims - 1`: takes back the count of the claim being handed back.
fn undo_stall() -> Expr {
    Expr::col(run::Column::StalledClaims).sub(1)
}

/// Hands this worker's unfinished runs back to the queue (at shutdown).
pub(crate) async fn release(rt: &Runtime, run_ids: Vec<String>) -> Result<Vec<RunUpdate>, DbErr> {
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    let now = rt.clock.now_ms();
    let mut release = unlock(RunStatus::Queued, now);
    release
        .value(run::Column::DueAt, now)
        .value(run::Column::FairAt, now)
        .value(run::Column::StalledClaims, undo_stall())
        .and_where(id_col().is_in(run_ids))
        .and_where(running())
        .and_where(locked_by_us(rt));
    updates_from(rt.db.query_all(&release).await?, RunStatus::Queued)
}

/// Puts a running run of ours back in the queue at `due_at` with `reason` as its error,
/// if `run`'s claim still holds it. Unless `stalled`, the claim is not counted as one
/// that recorded no progress.
pub(crate) async fn hand_back(
    rt: &Runtime,
    run: &RunRef,
    due_at: i64,
    reason: &str,
    stalled: bool,
) -> Result<Vec<RunUpdate>, DbErr> {
    let now = rt.clock.now_ms();
    let mut hand_back = unlock(RunStatus::Queued, now);
    if !stalled {
        hand_back.value(run::Column::StalledClaims, undo_stall());
    }
    hand_back
        .value(run::Column::DueAt, due_at)
        .value(run::Column::FairAt, due_at)
        .value(run::Column::Error, storable(reason))
        .and_where(id_col().eq(run.run_id.as_str()))
        .and_where(running())
        .and_where(locked_by_us(rt))
        .and_where(Expr::col(run::Column::Claims).eq(run.claim));
    updates_from(rt.db.query_all(&hand_back).await?, RunStatus::Queued)
}

/// Cancels a run that has not finished; `None` if it had (or does not exist).
/// Its steps that were sleeping or waiting for a retry end as failed, "cancelled".
/// `by` says who cancelled it (shown on the run page).
pub(crate) async fn cancel<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    run_id: &str,
    by: Option<&str>,
    now: i64,
) -> Result<Option<RunUpdate>, DbErr> {
    let txn = db.begin().await?;
    let mut cancel = unlock(RunStatus::Cancelled, now);
    cancel
        .value(run::Column::EndedAt, now)
        .value(run::Column::CancelledBy, by.map(storable))
        .and_where(id_col().eq(run_id))
        .and_where(live_states());
    let rows = txn.query_all(&cancel).await?;
    let cancelled = updates_from(rows, RunStatus::Cancelled)?.pop();
    if let Some(update) = &cancelled {
        // A run another run invoked: its end is reported to that run.
        let run = run::Entity::find_by_id(run_id.to_string())
            .one(&txn)
            .await?;
        if run.as_ref().is_some_and(|r| r.invoked_by.is_some()) {
            let end = End {
                run_id,
                function_id: &update.function_id,
                user_id: update.user_id.as_deref(),
                status: RunStatus::Cancelled,
                output: None,
                error: Some("the run was cancelled"),
            };
            super::wait::report_ends(&txn, &[end], now).await?;
        }
        // Its open waits end with it.
        wait::Entity::update_many()
            .col_expr(wait::Column::Status, Expr::value(super::wait::CANCELLED))
            .col_expr(wait::Column::EndedAt, Expr::value(now))
            .filter(wait::Column::RunId.eq(run_id))
            .filter(wait::Column::Status.eq(super::wait::OPEN))
            .exec(&txn)
            .await?;
        let mut steps = Query::update();
        steps
            .table(step::Entity)
            .value(step::Column::Status, StepStatus::Failed.as_str())
            .value(step::Column::Error, "the run was cancelled")
            .value(step::Column::EndedAt, now)
            .and_where(Expr::col(step::Column::RunId).eq(run_id))
            .and_where(Expr::col(step::Column::Status).is_in([
                StepStatus::Sleeping.as_str(),
                StepStatus::Retrying.as_str(),
                StepStatus::Waiting.as_str(),
            ]));
        txn.execute(&steps).await?;
    }
    txn.commit().await?;
    Ok(cancelled)
}

/// Queues a new run like `run_id` (same function, same event) if `run_id` has finished,
/// with the waits of its function's cancel rules, as a send would, in one transaction.
pub(crate) async fn rerun(
    rt: &Runtime,
    run_id: &str,
    now: i64,
) -> Result<Option<RunUpdate>, DbErr> {
    // IMMEDIATE on SQLite: it reads, then writes, and must not lose the write lock race.
    let txn = super::begin(rt).await?;
    let Some(old) = run::Entity::find_by_id(run_id.to_string())
        .one(&txn)
        .await?
    else {
        return Ok(None);
    };
    if !old.status.is_final() {
        return Ok(None);
    }
    // The re-run is queued as a send of its event would queue it: its concurrency and
    // throttle keys and (the window starting now) its cancel waits come from the event.
    // On PostgreSQL the event stays locked until the re-run commits, so that the pruner
    // cannot delete it in between (no foreign key guards `run.event_id` there: see
    // migration 16).
    let Some(event) = event::Entity::find_by_id(old.event_id.clone())
        .lock(sea_orm::sea_query::LockType::KeyShare)
        .one(&txn)
        .await?
        .and_then(|e| Event::try_from(e).ok())
    else {
        return Ok(None);
    };
    let id = new_id();
    let queued = RunUpdate {
        run_id: id.clone(),
        function_id: old.function_id.clone(),
        user_id: old.user_id.clone(),
        status: RunStatus::Queued,
    };
    let mut row = new_run(&id, &old.function_id, &old.event_id, old.user_id, now);
    // Not debounced: a re-run is asked for by hand and starts now.
    super::send::with_gate_keys(rt, &mut row, &old.function_id, &event);
    row.rerun_of = sea_orm::Set(Some(old.id));
    super::send::place_all(&txn, &mut [&mut row], now).await?;
    run::Entity::insert(row)
        .exec_without_returning(&txn)
        .await?;
    if let Some(rules) = rt.cancel_rules.get(&old.function_id) {
        let waits: Vec<wait::ActiveModel> = super::wait::cancel_waits(&id, &event, rules, now)
            .into_iter()
            .map(|w| w.into_active_model())
            .collect();
        if !waits.is_empty() {
            wait::Entity::insert_many(waits)
                .exec_without_returning(&txn)
                .await?;
        }
    }
    txn.commit().await?;
    Ok(Some(queued))
}
