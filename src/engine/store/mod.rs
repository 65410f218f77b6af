//! All of the engine's SQL, by query family. Every state move is a guarded UPDATE: it
//! names the state (and owner) it expects, so a run can never be moved by two workers.
//!
//! - `send`: events and their new runs
//! - `claim`: taking due runs, their events and saved steps; lease renewals
//! - `complete`: the completer's group commit of step records and state moves
//! - `control`: rescue, release, cancel, re-run
//! - `prune`: deleting finished runs past their retention
//! - `notify`: PostgreSQL's NOTIFY payloads between processes
//! - `inspect`: read-only views for dashboards
pub(crate) mod claim;
mod columns;
pub(crate) mod complete;
pub(crate) mod control;
pub mod inspect;
pub(crate) mod notify;
pub(crate) mod prune;
pub(crate) mod send;
pub(crate) mod wait;

use sea_orm::sea_query::{Expr, ExprTrait, SelectStatement};
use sea_orm::{
    DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

use super::entities::run;
use super::runtime::Runtime;
use crate::domain::RunStatus;

/// Starts a write transaction: IMMEDIATE on SQLite, so that it takes the write lock
/// up front instead of failing to upgrade a read snapshot later.
async fn begin(rt: &Runtime) -> Result<DatabaseTransaction, DbErr> {
    if rt.db.get_database_backend() == DbBackend::Sqlite {
        rt.db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
    } else {
        rt.db.begin().await
    }
}

/// `status IN (…)` as literal SQL, not bound parameters, so that SQLite can match the
/// partial indexes (whose conditions the migrations write the same way).
fn in_states(states: &[RunStatus]) -> Expr {
    let names: Vec<String> = states.iter().map(|s| format!("'{s}'")).collect();
    Expr::cust(format!("status IN ({})", names.join(", ")))
}

/// Runs a worker may claim once due.
fn due_states() -> Expr {
    in_states(&[RunStatus::Queued, RunStatus::Sleeping])
}

/// Runs without a concurrency key or a throttle key: claimed in due order by any
/// worker. Literal SQL, as the migration writes it in the partial index of such runs.
fn open() -> Expr {
    Expr::cust("concurrency_key IS NULL AND throttle_key IS NULL")
}

/// Runs with a concurrency key or a throttle key: claimed one claimer at a time
/// (`claim::claim_gated`). Literal SQL, as in their partial index.
fn gated() -> Expr {
    Expr::cust("(concurrency_key IS NOT NULL OR throttle_key IS NOT NULL)")
}

/// Runs a worker holds.
fn running() -> Expr {
    in_states(&[RunStatus::Running])
}

/// Runs that have not finished.
fn live_states() -> Expr {
    in_states(&[RunStatus::Queued, RunStatus::Running, RunStatus::Sleeping])
}

/// Runs that have finished.
fn final_states() -> Expr {
    in_states(&[
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ])
}

fn id_col() -> Expr {
    Expr::col(run::Column::Id)
}

/// `locked_by` is this process.
fn locked_by_us(rt: &Runtime) -> Expr {
    Expr::col(run::Column::LockedBy).eq(rt.worker_id.as_str())
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

/// A JSON array of `rows`, for PostgreSQL's `json_to_recordset`.
pub(crate) fn to_json<T: serde::Serialize>(
    rows: impl Iterator<Item = T>,
) -> Result<String, sea_orm::DbErr> {
    serde_json::to_string(&rows.collect::<Vec<T>>())
        .map_err(|e| sea_orm::DbErr::Json(e.to_string()))
}
