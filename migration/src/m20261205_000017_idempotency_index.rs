//! PostgreSQL: the unique index on `event.idempotency_key` holds only the events that
//! have a key. The constraint it replaces indexed every event, keyless ones under NULL,
//! which cost about a fifth of the time of a large send's event rows. A key stays unique
//! (NULLs never conflicted); sends with a key name the index's predicate in their
//! `ON CONFLICT`. SQLite keeps its constraint: it cannot drop one without copying the
//! table.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::postgres_only(
            manager,
            &[
                "CREATE UNIQUE INDEX IF NOT EXISTS idx_event_idempotency ON event \
                 (idempotency_key) WHERE idempotency_key IS NOT NULL",
                "ALTER TABLE event DROP CONSTRAINT IF EXISTS event_idempotency_key_key",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::postgres_only(
            manager,
            &[
                "ALTER TABLE event ADD CONSTRAINT event_idempotency_key_key \
                 UNIQUE (idempotency_key)",
                "DROP INDEX IF EXISTS idx_event_idempotency",
            ],
        )
        .await
    }
}
