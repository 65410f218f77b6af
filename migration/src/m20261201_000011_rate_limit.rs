//! Rate limit: a run of a rate-limited function carries its rate-limit key, and a send
//! counts the key's runs queued in the window on their own index. An event over the
//! limit starts no run; it is recorded in `skipped_run`, with why, and goes with its
//! event.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "ALTER TABLE run ADD COLUMN rate_key varchar NULL",
            "CREATE INDEX idx_run_rate ON run (function_id, rate_key, created_at) WHERE rate_key IS NOT NULL",
            "CREATE TABLE skipped_run (
                id varchar NOT NULL PRIMARY KEY,
                event_id varchar NOT NULL REFERENCES event (id) ON DELETE CASCADE,
                function_id varchar NOT NULL,
                user_id varchar NULL,
                reason text NOT NULL,
                created_at bigint NOT NULL
            )",
            "CREATE INDEX idx_skipped_run_event ON skipped_run (event_id)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "DROP TABLE skipped_run",
            "DROP INDEX idx_run_rate",
            "ALTER TABLE run DROP COLUMN rate_key",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
