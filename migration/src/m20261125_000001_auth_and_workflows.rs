//! Users, their sessions and their workflows. Times are Unix milliseconds (BIGINT), which
//! compare the same way on SQLite and PostgreSQL.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(User::Table)
                    .if_not_exists()
                    .col(string(User::Id).primary_key())
                    .col(string_uniq(User::Email))
                    .col(string(User::PasswordHash))
                    .col(integer(User::FailedSignIns).default(0))
                    .col(big_integer_null(User::LockedUntil))
                    .col(big_integer(User::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Session::Table)
                    .if_not_exists()
                    .col(string(Session::TokenHash).primary_key())
                    .col(string(Session::UserId))
                    .col(big_integer(Session::ExpiresAt))
                    .col(big_integer(Session::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Session::Table, Session::UserId)
                            .to(User::Table, User::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_session_user")
                    .table(Session::Table)
                    .col(Session::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Workflow::Table)
                    .if_not_exists()
                    .col(string(Workflow::Id).primary_key())
                    .col(string(Workflow::Name))
                    .col(string(Workflow::UserId))
                    .col(big_integer(Workflow::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Workflow::Table, Workflow::UserId)
                            .to(User::Table, User::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_workflow_user_created")
                    .table(Workflow::Table)
                    .col(Workflow::UserId)
                    .col(Workflow::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Workflow::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Session::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(User::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum User {
    Table,
    Id,
    Email,
    PasswordHash,
    FailedSignIns,
    LockedUntil,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Session {
    Table,
    TokenHash,
    UserId,
    ExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Workflow {
    Table,
    Id,
    Name,
    UserId,
    CreatedAt,
}
