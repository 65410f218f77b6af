//! Deleting finished runs, their steps and their events once they are old enough.
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr};

use super::final_states;
use crate::engine::entities::{batch_event, run, step};

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
            .and_where(final_states())
            .and_where(Expr::col(run::Column::EndedAt).lt(cutoff))
            .limit(PRUNE_BATCH);
        // Steps and batch lists first: on PostgreSQL no foreign key cascades from a run
        // to its steps (see migration 16), and SQLite cascades only with keys on.
        let mut steps = Query::delete();
        steps
            .from_table(step::Entity)
            .and_where(Expr::col(step::Column::RunId).in_subquery(old.clone()));
        let mut batched = Query::delete();
        batched
            .from_table(batch_event::Entity)
            .and_where(Expr::col(batch_event::Column::RunId).in_subquery(old.clone()));
        let mut doomed = Query::delete();
        doomed
            .from_table(run::Entity)
            .and_where(Expr::col(run::Column::Id).in_subquery(old));
        db.execute(&steps).await?;
        db.execute(&batched).await?;
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
             AND NOT EXISTS (SELECT 1 FROM run r WHERE r.event_id = e.id) \
             AND NOT EXISTS (SELECT 1 FROM batch_event b WHERE b.event_id = e.id) \
             LIMIT {PRUNE_BATCH})"
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
