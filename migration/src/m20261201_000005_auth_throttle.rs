//! Sign-in and sign-up budgets kept in the database, so that they hold across processes
//! and restarts and are spent atomically: one row per budget (an email address, a
//! client address), replacing the per-user failure count and lock.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuthThrottle {
    Table,
    Key,
    RefilledAt,
}

#[derive(DeriveIden)]
enum User {
    Table,
    FailedSignIns,
    LockedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuthThrottle::Table)
                    .col(text(AuthThrottle::Key).primary_key())
                    .col(big_integer(AuthThrottle::RefilledAt))
                    .to_owned(),
            )
            .await?;
        // One column per ALTER: SQLite drops only one at a time.
        for column in [User::FailedSignIns, User::LockedUntil] {
            manager
                .alter_table(
                    Table::alter()
                        .table(User::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(User::Table)
                    .add_column(integer(User::FailedSignIns).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(User::Table)
                    .add_column(big_integer_null(User::LockedUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(AuthThrottle::Table).to_owned())
            .await
    }
}
