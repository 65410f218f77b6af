//! Batching: a run of a batched function carries its batch key until the batch is full
//! or starts, and counts its events; `batch_event` lists them, in order. A unique index
//! over the runs not started yet makes concurrent sends agree on one batch.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "ALTER TABLE run ADD COLUMN batch_key varchar NULL",
    "ALTER TABLE run ADD COLUMN batch_size integer NOT NULL DEFAULT 0",
    "CREATE UNIQUE INDEX idx_run_batch ON run (function_id, batch_key) WHERE status = 'queued' AND claims = 0 AND batch_key IS NOT NULL",
    "CREATE TABLE batch_event (
        run_id varchar NOT NULL REFERENCES run (id) ON DELETE CASCADE,
        position integer NOT NULL,
        event_id varchar NOT NULL,
        PRIMARY KEY (run_id, position)
    )",
    // Pruning keeps the events of batches.
    "CREATE INDEX idx_batch_event_event ON batch_event (event_id)",
];

const DOWN: &[&str] = &[
    "DROP TABLE batch_event",
    "DROP INDEX idx_run_batch",
    "ALTER TABLE run DROP COLUMN batch_size",
    "ALTER TABLE run DROP COLUMN batch_key",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
