//! The durable engine's tables: events, the runs they trigger, and each run's steps.
//! Times are Unix milliseconds. The partial indexes cover only live runs, so claiming
//! stays fast however many finished runs the table holds.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const RUN_STATES: [&str; 6] = [
    "queued",
    "running",
    "sleeping",
    "completed",
    "failed",
    "cancelled",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Event::Table)
                    .if_not_exists()
                    .col(string(Event::Id).primary_key())
                    .col(string(Event::Name))
                    .col(text(Event::Data))
                    .col(string_null(Event::UserId))
                    .col(string_null(Event::IdempotencyKey).unique_key())
                    .col(big_integer(Event::Ts))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Run::Table)
                    .if_not_exists()
                    .col(string(Run::Id).primary_key())
                    .col(string(Run::FunctionId))
                    .col(string(Run::EventId))
                    .col(string_null(Run::UserId))
                    .col(string(Run::Status).check(Expr::col(Run::Status).is_in(RUN_STATES)))
                    .col(big_integer(Run::DueAt))
                    .col(string_null(Run::LockedBy))
                    .col(big_integer_null(Run::LeaseUntil))
                    .col(integer(Run::Claims).default(0))
                    .col(integer(Run::Attempts).default(0))
                    .col(text_null(Run::Output))
                    .col(text_null(Run::Error))
                    .col(string_null(Run::RerunOf))
                    .col(big_integer(Run::CreatedAt))
                    .col(big_integer_null(Run::StartedAt))
                    .col(big_integer_null(Run::EndedAt))
                    .col(big_integer(Run::UpdatedAt))
                    // A running run always has an owner and a lease; no other run has one.
                    .check(Expr::cust(
                        "(status = 'running') = (locked_by IS NOT NULL AND lease_until IS NOT NULL)",
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Run::Table, Run::EventId)
                            .to(Event::Table, Event::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Step::Table)
                    .if_not_exists()
                    .col(string(Step::RunId))
                    .col(string(Step::StepId))
                    .col(string(Step::Name))
                    .col(string(Step::Kind).check(Expr::col(Step::Kind).is_in(["run", "sleep"])))
                    .col(string(Step::Status).check(Expr::col(Step::Status).is_in([
                        "completed",
                        "retrying",
                        "failed",
                        "sleeping",
                    ])))
                    .col(integer(Step::Position))
                    .col(integer(Step::Attempts).default(0))
                    .col(text_null(Step::Output))
                    .col(text_null(Step::Error))
                    .col(text(Step::Errors))
                    .col(big_integer(Step::StartedAt))
                    .col(big_integer_null(Step::EndedAt))
                    .col(big_integer_null(Step::WakeAt))
                    .primary_key(Index::create().col(Step::RunId).col(Step::StepId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Step::Table, Step::RunId)
                            .to(Run::Table, Run::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // Plain SQL: partial indexes read the same on SQLite and PostgreSQL.
        let db = manager.get_connection();
        for sql in [
            "CREATE INDEX IF NOT EXISTS idx_run_due ON run (due_at) WHERE status IN ('queued', 'sleeping')",
            "CREATE INDEX IF NOT EXISTS idx_run_lease ON run (lease_until) WHERE status = 'running'",
            "CREATE INDEX IF NOT EXISTS idx_run_locked_by ON run (locked_by) WHERE status = 'running'",
            "CREATE INDEX IF NOT EXISTS idx_run_user ON run (user_id, id)",
            "CREATE INDEX IF NOT EXISTS idx_run_event ON run (event_id)",
            "CREATE INDEX IF NOT EXISTS idx_event_user ON event (user_id, id)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Step::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Run::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Event::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Event {
    Table,
    Id,
    Name,
    Data,
    UserId,
    IdempotencyKey,
    Ts,
}

#[derive(DeriveIden)]
enum Run {
    Table,
    Id,
    FunctionId,
    EventId,
    UserId,
    Status,
    DueAt,
    LockedBy,
    LeaseUntil,
    Claims,
    Attempts,
    Output,
    Error,
    RerunOf,
    CreatedAt,
    StartedAt,
    EndedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
#[allow(clippy::enum_variant_names)] // the column is step_id
enum Step {
    Table,
    RunId,
    StepId,
    Name,
    Kind,
    Status,
    Position,
    Attempts,
    Output,
    Error,
    Errors,
    StartedAt,
    EndedAt,
    WakeAt,
}
