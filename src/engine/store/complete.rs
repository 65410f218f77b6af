//! The completer's group commit: step records and state moves of many runs in one
//! transaction, each kept only if its run is still this worker's.
use std::collections::HashMap;

use sea_orm::sea_query::{
    CaseStatement, Expr, ExprTrait, IntoColumnRef, OnConflict, Query, ReturningClause,
    UpdateStatement,
};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel};

use super::wait::End;
use super::{begin, id_col, locked_by_us, running};
use crate::engine::entities::{run, step, wait};
use crate::engine::progress::{Owned, Transition, Write};
use crate::engine::runtime::Runtime;

/// Commits a batch of writes in one transaction and returns the runs that were still
/// ours (running, locked by this worker, under the claim the writes were made under);
/// other writes are dropped.
pub(crate) async fn commit(rt: &Runtime, writes: &[&Write]) -> Result<Owned, DbErr> {
    if rt.postgres() && writes.iter().all(|w| plain(rt, w)) {
        return commit_in_one_statement(rt, writes).await;
    }
    let now = rt.clock.now_ms();
    let mut run_ids: Vec<&str> = writes.iter().map(|w| w.run.run_id.as_str()).collect();
    run_ids.sort_unstable();
    run_ids.dedup();

    let txn = begin(rt).await?;
    // Renewing the lease is also the ownership check, under the row's write lock.
    let mut renew = Query::update();
    renew
        .table(run::Entity)
        .value(run::Column::LeaseUntil, rt.lease_from(now))
        .value(run::Column::StalledClaims, 0)
        .value(run::Column::UpdatedAt, now)
        .and_where(id_col().is_in(run_ids))
        .and_where(running())
        .and_where(locked_by_us(rt))
        .returning(ReturningClause::Columns(vec![
            run::Column::Id.into_column_ref(),
            run::Column::Claims.into_column_ref(),
        ]));
    let owned = Owned(
        txn.query_all(&renew)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "claims")?)))
            .collect::<Result<_, DbErr>>()?,
    );

    // The last record of each step wins.
    let mut steps: HashMap<(&str, &str), &step::Model> = HashMap::new();
    for write in writes.iter().filter(|w| owned.has(w)) {
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

    let waits: Vec<wait::ActiveModel> = writes
        .iter()
        .filter(|w| owned.has(w))
        .filter_map(|w| w.wait.clone())
        .map(|w| w.into_active_model().reset_all())
        .collect();
    if !waits.is_empty() {
        wait::Entity::insert_many(waits)
            .on_conflict(
                OnConflict::columns([wait::Column::RunId, wait::Column::StepId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }

    let moves: Vec<(&str, &Transition)> = writes
        .iter()
        .filter(|w| owned.has(w))
        .filter_map(|w| w.transition.as_ref().map(|t| (w.run.run_id.as_str(), t)))
        .collect();
    if !moves.is_empty() {
        // Other processes hear of the moves after the commit (`notifier::Outbox`).
        txn.execute(&transitions(rt, &moves, now)).await?;
    }
    // The end of a run that another run invoked is reported to it in the same commit.
    let ends: Vec<End> = writes
        .iter()
        .filter(|w| owned.has(w))
        .filter(|w| w.run.invoked_by.is_some())
        .filter_map(|w| {
            let (output, error) = match w.transition.as_ref()? {
                Transition::Completed { output } => (Some(output.as_str()), None),
                Transition::Failed { error, .. } => (None, Some(error.as_str())),
                _ => return None,
            };
            Some(End {
                run_id: &w.run.run_id,
                function_id: &w.run.function_id,
                user_id: w.run.user_id.as_deref(),
                status: w.transition.as_ref()?.status(),
                output,
                error,
            })
        })
        .collect();
    super::wait::report_ends(&txn, &ends, now).await?;
    // A run that failed for good starts its function's failure handler, if it has one.
    let failed: Vec<_> = writes
        .iter()
        .filter(|w| owned.has(w))
        .filter_map(|w| match w.transition.as_ref()? {
            Transition::Failed { error, .. } => Some((&w.run, error.as_str())),
            _ => None,
        })
        .collect();
    let handling = super::send::start_failure_handlers(rt, &txn, &failed).await?;
    // A run that ended no longer waits for the events that would have cancelled it.
    let cancellable: Vec<&str> = writes
        .iter()
        .filter(|w| owned.has(w) && rt.cancel_rules.contains_key(&w.run.function_id))
        .filter(|w| w.transition.as_ref().is_some_and(|t| t.status().is_final()))
        .map(|w| w.run.run_id.as_str())
        .collect();
    if !cancellable.is_empty() {
        super::wait::close_cancel_waits(&txn, &cancellable, now).await?;
    }
    txn.commit().await?;
    if !ends.is_empty() {
        rt.match_wake.notify_one();
    }
    if handling {
        rt.wake.notify_one();
    }
    Ok(owned)
}

/// One UPDATE that moves many running runs at once, each to its own state.
fn transitions(rt: &Runtime, moves: &[(&str, &Transition)], now: i64) -> UpdateStatement {
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
    // A parked run goes back in the fair order at the time it falls due.
    let mut fair_at = Column::new(run::Column::FairAt);
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
                fair_at.set(run_id, *at);
                if let Some(n) = n {
                    attempts.set(run_id, *n);
                }
                if let Some(e) = e {
                    error.set(run_id, e.as_str());
                }
            }
            Transition::Sleeping { due_at: at } => {
                due_at.set(run_id, *at);
                fair_at.set(run_id, *at);
            }
            Transition::Completed { output: o } => {
                output.set(run_id, o.as_str());
                // An earlier attempt's error no longer describes the run.
                error.set(run_id, Option::<String>::None);
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
    for column in [status, due_at, fair_at, output, error, attempts, ended_at] {
        if column.arms > 0 {
            update.value(column.col, column.case.finally(Expr::col(column.col)));
        }
    }
    update
        .value(run::Column::LockedBy, Option::<String>::None)
        .value(run::Column::LeaseUntil, Option::<i64>::None)
        .value(run::Column::UpdatedAt, now)
        .and_where(id_col().is_in(moves.iter().map(|(id, _)| *id)))
        .and_where(running())
        .and_where(locked_by_us(rt))
        .to_owned()
}

/// Whether `write` is only a step record and/or a move that nothing else hangs on: no
/// wait to open, no invoking run to tell, no failure handler to start, no cancel waits
/// to close. Almost every write is.
fn plain(rt: &Runtime, write: &Write) -> bool {
    let Some(transition) = &write.transition else {
        return write.wait.is_none();
    };
    let function_id = &write.run.function_id;
    let ends = transition.status().is_final();
    write.wait.is_none()
        && !(ends && write.run.invoked_by.is_some())
        && !(ends && rt.cancel_rules.contains_key(function_id))
        && !(matches!(transition, Transition::Failed { .. })
            && rt.failure_handlers.contains_key(function_id))
}

/// PostgreSQL, plain writes only ([`plain`]): the whole group commit in one statement,
/// atomic by itself and one round trip. One UPDATE renews the lease of each run that is
/// still ours under the write's claim — the ownership check, under the row's lock —
/// and moves those with a transition; the step records of exactly those runs are
/// upserted beside it. The rows travel as two JSON arrays (`json_to_recordset`), so
/// the statement's text never changes and is prepared once per connection. The runs
/// are found by primary key from the array of their ids (as the claim does): joined on
/// the JSON rows alone, the generic plan scanned every running run of this worker,
/// and the dead index entries of those that had finished. For the same reason the
/// statement does not say `status = 'running'`: `locked_by = me` already means it
/// (CHECK `run_check`), and with it the planner, which believes few runs are running,
/// chose `idx_run_lease` and read every running run's entry for each commit.
async fn commit_in_one_statement(rt: &Runtime, writes: &[&Write]) -> Result<Owned, DbErr> {
    let now = rt.clock.now_ms();
    // One row per run and claim: the last move among its writes, if any.
    let mut runs: HashMap<(&str, i32), Option<&Transition>> = HashMap::new();
    // The last record of each step wins.
    let mut steps: HashMap<(&str, &str), (&step::Model, i32)> = HashMap::new();
    for write in writes {
        let run = runs
            .entry((write.run.run_id.as_str(), write.run.claim))
            .or_default();
        if write.transition.is_some() {
            *run = write.transition.as_ref();
        }
        if let Some(step) = &write.step {
            steps.insert(
                (step.run_id.as_str(), step.step_id.as_str()),
                (step, write.run.claim),
            );
        }
    }
    let runs = super::to_json(runs.into_iter().map(|((id, claims), transition)| {
        let mut row = MoveRow {
            id,
            claims,
            ..MoveRow::default()
        };
        if let Some(t) = transition {
            row.status = Some(t.status().as_str());
            match t {
                Transition::Queued {
                    due_at,
                    attempts,
                    error,
                } => {
                    row.due_at = Some(*due_at);
                    row.attempts = *attempts;
                    if let Some(e) = error {
                        row.set_error = true;
                        row.error = Some(e);
                    }
                }
                Transition::Sleeping { due_at } => row.due_at = Some(*due_at),
                Transition::Completed { output } => {
                    row.set_output = true;
                    row.output = Some(output);
                    // An earlier attempt's error no longer describes the run.
                    row.set_error = true;
                    row.ended = true;
                }
                Transition::Failed { error, attempts } => {
                    row.set_error = true;
                    row.error = Some(error);
                    row.attempts = *attempts;
                    row.ended = true;
                }
            }
        }
        row
    }))?;
    let steps = super::to_json(steps.into_values().map(|(s, claims)| StepRow {
        run_id: &s.run_id,
        claims,
        step_id: &s.step_id,
        name: &s.name,
        kind: s.kind.as_str(),
        status: s.status.as_str(),
        position: s.position,
        attempts: s.attempts,
        output: s.output.as_deref(),
        error: s.error.as_deref(),
        errors: &s.errors,
        started_at: s.started_at,
        ended_at: s.ended_at,
        wake_at: s.wake_at,
    }))?;
    const COMMIT: &str = "WITH w AS (SELECT * FROM json_to_recordset($1::json) AS w(\
            id text, claims integer, status text, due_at bigint, attempts integer, \
            set_output boolean, output text, set_error boolean, error text, ended boolean)), \
        owned AS (UPDATE run SET \
            status = coalesce(w.status, run.status), \
            due_at = coalesce(w.due_at, run.due_at), \
            fair_at = coalesce(w.due_at, run.fair_at), \
            attempts = coalesce(w.attempts, run.attempts), \
            output = CASE WHEN w.set_output THEN w.output ELSE run.output END, \
            error = CASE WHEN w.set_error THEN w.error ELSE run.error END, \
            ended_at = CASE WHEN w.ended THEN $4 ELSE run.ended_at END, \
            locked_by = CASE WHEN w.status IS NULL THEN run.locked_by END, \
            lease_until = CASE WHEN w.status IS NULL THEN $3 END, \
            stalled_claims = 0, updated_at = $4 \
            FROM w WHERE run.id = ANY(ARRAY(SELECT id FROM w)) \
            AND run.id = w.id AND run.claims = w.claims AND run.locked_by = $5 \
            RETURNING run.id, run.claims), \
        steps AS (INSERT INTO step (run_id, step_id, name, kind, status, position, attempts, \
            output, error, errors, started_at, ended_at, wake_at) \
            SELECT s.run_id, s.step_id, s.name, s.kind, s.status, s.position, s.attempts, \
            s.output, s.error, s.errors, s.started_at, s.ended_at, s.wake_at \
            FROM json_to_recordset($2::json) AS s(run_id text, claims integer, step_id text, \
            name text, kind text, status text, position integer, attempts integer, \
            output text, error text, errors text, started_at bigint, ended_at bigint, \
            wake_at bigint) \
            JOIN owned ON owned.id = s.run_id AND owned.claims = s.claims \
            ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status, \
            attempts = excluded.attempts, output = excluded.output, error = excluded.error, \
            errors = excluded.errors, ended_at = excluded.ended_at, wake_at = excluded.wake_at) \
        SELECT id, claims FROM owned";
    let statement = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        COMMIT,
        [
            runs.into(),
            steps.into(),
            rt.lease_from(now).into(),
            now.into(),
            rt.worker_id.as_str().into(),
        ],
    );
    let rows = rt.db.query_all_raw(statement).await?;
    Ok(Owned(
        rows.iter()
            .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "claims")?)))
            .collect::<Result<_, DbErr>>()?,
    ))
}

/// A run's row in the one-statement commit: its claim and, if it moves, where to.
#[derive(Default, serde::Serialize)]
struct MoveRow<'a> {
    id: &'a str,
    claims: i32,
    status: Option<&'static str>,
    due_at: Option<i64>,
    attempts: Option<i32>,
    set_output: bool,
    output: Option<&'a str>,
    set_error: bool,
    error: Option<&'a str>,
    ended: bool,
}

/// A step record's row in the one-statement commit, with the claim it was made under.
#[derive(serde::Serialize)]
struct StepRow<'a> {
    run_id: &'a str,
    claims: i32,
    step_id: &'a str,
    name: &'a str,
    kind: &'static str,
    status: &'static str,
    position: i32,
    attempts: i32,
    output: Option<&'a str>,
    error: Option<&'a str>,
    errors: &'a str,
    started_at: i64,
    ended_at: Option<i64>,
    wake_at: Option<i64>,
}
