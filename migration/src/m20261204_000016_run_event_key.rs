//! PostgreSQL: `run.event_id` keeps its index but loses its foreign key. The key's check
//! locks each new run's event row (`FOR KEY SHARE`, a write to the event's page and to
//! the WAL) although the send writes the event and its runs in one statement; it cost
//! about 15% of a one-event send and 18% of a 1,000-event one. No path needs it: the
//! pruner deletes only events that no run names, and a re-run locks the event it reads
//! until it commits. SQLite keeps its key, whose check costs a lookup and no write (and
//! SQLite cannot drop a constraint without copying the table).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only(
            manager,
            "ALTER TABLE run DROP CONSTRAINT IF EXISTS run_event_id_fkey",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        postgres_only(
            manager,
            "ALTER TABLE run ADD CONSTRAINT run_event_id_fkey FOREIGN KEY (event_id) \
             REFERENCES event (id) ON DELETE CASCADE",
        )
        .await
    }
}

async fn postgres_only(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    db.execute_unprepared(sql).await.map(|_| ())
}
