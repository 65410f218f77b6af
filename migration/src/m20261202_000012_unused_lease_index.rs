//! Drops `idx_run_locked_by`: every statement that names `locked_by` also names the
//! runs by id (or by lease time, on `idx_run_lease`), so the index was only written —
//! once more at every claim — and never read.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX idx_run_locked_by")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX idx_run_locked_by ON run (locked_by) WHERE status = 'running'",
            )
            .await?;
        Ok(())
    }
}
