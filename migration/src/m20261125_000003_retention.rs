//! Indexes that keep pruning cheap: finished runs by end time, events by time.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_run_ended ON run (ended_at) \
             WHERE status IN ('completed', 'failed', 'cancelled')",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS idx_event_ts ON event (ts)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS idx_run_ended")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idx_event_ts")
            .await?;
        Ok(())
    }
}
