//! Traces: a run remembers the span that created it (the request that sent its event,
//! the step that invoked it), as a W3C `traceparent`, so that each process that runs it
//! can make its spans children of that one.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &["ALTER TABLE run ADD COLUMN trace_parent varchar NULL"];

const DOWN: &[&str] = &["ALTER TABLE run DROP COLUMN trace_parent"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_all(manager, DOWN).await
    }
}
