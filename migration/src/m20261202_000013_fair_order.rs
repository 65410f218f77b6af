//! Fair order among users: runs without concurrency or throttle keys are claimed in the
//! order of `fair_at` (see the engine's `fairness` module) instead of `due_at`. Existing
//! runs keep their due order. `idx_run_due_open` stays: it tells when the next run falls
//! due.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "ALTER TABLE run ADD COLUMN fair_at bigint NOT NULL DEFAULT 0",
    "UPDATE run SET fair_at = due_at",
    "CREATE INDEX idx_run_fair ON run (fair_at) WHERE status IN ('queued', 'sleeping') AND concurrency_key IS NULL AND throttle_key IS NULL",
];

const DOWN: &[&str] = &[
    "DROP INDEX idx_run_fair",
    "ALTER TABLE run DROP COLUMN fair_at",
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
