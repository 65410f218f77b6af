//! `step.invoke`: a run started by another run's step says so (`run.invoked_by`, the
//! parent run's id), so that its end is reported to the parent and each run page links
//! the other.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "ALTER TABLE run ADD COLUMN invoked_by varchar NULL",
            "CREATE INDEX idx_run_invoked_by ON run (invoked_by) WHERE invoked_by IS NOT NULL",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "DROP INDEX idx_run_invoked_by",
            "ALTER TABLE run DROP COLUMN invoked_by",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
