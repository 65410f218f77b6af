//! Throttle: a run of a throttled function carries its throttle key. Runs with a
//! concurrency key or a throttle key ("gated" runs) are claimed one claimer at a time,
//! the others in due order as before: the two due-run indexes split on both columns
//! now. The starts of each throttle key are counted on their own index.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "ALTER TABLE run ADD COLUMN throttle_key varchar NULL",
            // New names: another pooled SQLite connection may not have seen the drops yet.
            "DROP INDEX idx_run_due_free",
            "DROP INDEX idx_run_due_keyed",
            "CREATE INDEX idx_run_due_open ON run (due_at) WHERE status IN ('queued', 'sleeping') AND concurrency_key IS NULL AND throttle_key IS NULL",
            // With the id: runs a throttle moved to one due time are claimed in the order
            // they were queued (ids grow with time), straight from the index.
            "CREATE INDEX idx_run_due_gated ON run (due_at, id) WHERE status IN ('queued', 'sleeping') AND (concurrency_key IS NOT NULL OR throttle_key IS NOT NULL)",
            "CREATE INDEX idx_run_throttle ON run (function_id, throttle_key, started_at) WHERE throttle_key IS NOT NULL",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "DROP INDEX idx_run_throttle",
            "DROP INDEX idx_run_due_gated",
            "DROP INDEX idx_run_due_open",
            "CREATE INDEX idx_run_due_free ON run (due_at) WHERE status IN ('queued', 'sleeping') AND concurrency_key IS NULL",
            "CREATE INDEX idx_run_due_keyed ON run (due_at) WHERE status IN ('queued', 'sleeping') AND concurrency_key IS NOT NULL",
            "ALTER TABLE run DROP COLUMN throttle_key",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
