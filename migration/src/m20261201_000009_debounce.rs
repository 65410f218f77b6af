//! Debounce: a run of a debounced function that has not started yet carries its
//! debounce key (per user); at most one such run exists per function and key, so a new
//! event for the key takes over the pending run instead of queuing another.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "ALTER TABLE run ADD COLUMN debounce_key varchar NULL",
            "CREATE UNIQUE INDEX idx_run_debounce ON run (function_id, debounce_key) WHERE status = 'queued' AND claims = 0 AND debounce_key IS NOT NULL",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "DROP INDEX idx_run_debounce",
            "ALTER TABLE run DROP COLUMN debounce_key",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
