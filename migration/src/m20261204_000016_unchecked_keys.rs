//! PostgreSQL: `run.event_id` and `step.run_id` keep their indexes but lose their
//! foreign keys. Each key's check locks the parent row of every new row (`FOR KEY
//! SHARE`: a write to the parent's page and to the WAL) although the statements that
//! write these rows already hold the parent: a send writes an event and its runs in one
//! statement, and a commit writes steps only for the runs it has just updated under
//! their claim. The run key cost about 15% of a one-event send and 18% of a 1,000-event
//! one; the step key 6–10% of the drain. Deletes do by hand what the keys' cascades did:
//! the pruner deletes a run's steps before the run, and only events that no run names;
//! a re-run locks the event it reads until it commits. SQLite keeps its keys, whose
//! checks are lookups that write nothing (and it cannot drop a constraint without
//! copying the table).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::postgres_only(
            manager,
            &[
                "ALTER TABLE run DROP CONSTRAINT IF EXISTS run_event_id_fkey",
                "ALTER TABLE step DROP CONSTRAINT IF EXISTS step_run_id_fkey",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::postgres_only(
            manager,
            &[
                "ALTER TABLE run ADD CONSTRAINT run_event_id_fkey FOREIGN KEY (event_id) \
                 REFERENCES event (id) ON DELETE CASCADE",
                "ALTER TABLE step ADD CONSTRAINT step_run_id_fkey FOREIGN KEY (run_id) \
                 REFERENCES run (id) ON DELETE CASCADE",
            ],
        )
        .await
    }
}
