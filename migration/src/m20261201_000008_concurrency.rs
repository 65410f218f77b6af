//! Concurrency limits: a run of a limited function carries its key for each of (at most
//! two) limits. Due runs without a key are claimed in due order as before; due runs
//! with one are claimed only while their keys have room, counted from the running runs
//! by key.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "ALTER TABLE run ADD COLUMN concurrency_key varchar NULL",
            "ALTER TABLE run ADD COLUMN concurrency_key_2 varchar NULL",
            // A new name: another pooled SQLite connection may not have seen the drop yet.
            "DROP INDEX idx_run_due",
            "CREATE INDEX idx_run_due_free ON run (due_at) WHERE status IN ('queued', 'sleeping') AND concurrency_key IS NULL",
            "CREATE INDEX idx_run_due_keyed ON run (due_at) WHERE status IN ('queued', 'sleeping') AND concurrency_key IS NOT NULL",
            "CREATE INDEX idx_run_key_running ON run (function_id, concurrency_key) WHERE status = 'running' AND concurrency_key IS NOT NULL",
            "CREATE INDEX idx_run_key_2_running ON run (function_id, concurrency_key_2) WHERE status = 'running' AND concurrency_key_2 IS NOT NULL",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "DROP INDEX idx_run_key_2_running",
            "DROP INDEX idx_run_key_running",
            "DROP INDEX idx_run_due_keyed",
            "DROP INDEX idx_run_due_free",
            "CREATE INDEX idx_run_due ON run (due_at) WHERE status IN ('queued', 'sleeping')",
            "ALTER TABLE run DROP COLUMN concurrency_key_2",
            "ALTER TABLE run DROP COLUMN concurrency_key",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
