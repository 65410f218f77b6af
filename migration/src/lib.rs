//! Nodebase's schema, as SeaORM migrations. The server runs `Migrator::up` at start-up;
//! `cargo run -p migration -- <up|down|status|fresh>` runs them by hand.
pub use sea_orm_migration::prelude::*;

mod m20261125_000001_auth_and_workflows;
mod m20261125_000002_engine;
mod m20261125_000003_retention;
mod m20261201_000004_claim_fence;
mod m20261201_000005_auth_throttle;
mod m20261201_000006_waits;
mod m20261201_000007_invoke;
mod m20261201_000008_concurrency;
mod m20261201_000009_debounce;
mod m20261201_000010_throttle;
mod m20261201_000011_rate_limit;
mod m20261202_000012_unused_lease_index;
mod m20261202_000013_fair_order;
mod m20261202_000014_batch;
mod m20261203_000015_trace_parent;
mod m20261204_000016_unchecked_keys;
mod m20261205_000017_idempotency_index;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_auth_and_workflows::Migration),
            Box::new(m20261125_000002_engine::Migration),
            Box::new(m20261125_000003_retention::Migration),
            Box::new(m20261201_000004_claim_fence::Migration),
            Box::new(m20261201_000005_auth_throttle::Migration),
            Box::new(m20261201_000006_waits::Migration),
            Box::new(m20261201_000007_invoke::Migration),
            Box::new(m20261201_000008_concurrency::Migration),
            Box::new(m20261201_000009_debounce::Migration),
            Box::new(m20261201_000010_throttle::Migration),
            Box::new(m20261201_000011_rate_limit::Migration),
            Box::new(m20261202_000012_unused_lease_index::Migration),
            Box::new(m20261202_000013_fair_order::Migration),
            Box::new(m20261202_000014_batch::Migration),
            Box::new(m20261203_000015_trace_parent::Migration),
            Box::new(m20261204_000016_unchecked_keys::Migration),
            Box::new(m20261205_000017_idempotency_index::Migration),
        ]
    }
}

/// Runs `statements` in order on the migration's connection.
pub(crate) async fn execute_all(
    manager: &SchemaManager<'_>,
    statements: &[&str],
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

/// Runs `statements` in order on PostgreSQL; nothing on SQLite.
pub(crate) async fn postgres_only(
    manager: &SchemaManager<'_>,
    statements: &[&str],
) -> Result<(), DbErr> {
    if manager.get_connection().get_database_backend()
        != sea_orm_migration::sea_orm::DbBackend::Postgres
    {
        return Ok(());
    }
    execute_all(manager, statements).await
}
