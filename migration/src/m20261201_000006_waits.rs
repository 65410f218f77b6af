//! Waiting for events: the step kinds `wait`, `invoke` and `send` and the step status
//! `waiting`; the open and ended waits (`wait`); and the events some function may wait
//! for (`awaited_event`), kept for the longest lookback so that a wait can match an
//! event sent shortly before it began, and marked `pending` until the matcher has
//! compared them with the open waits.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const STEP_COLUMNS: &str =
    "run_id, step_id, name, kind, status, position, attempts, output, error, errors, started_at, ended_at, wake_at";

fn step_table(name: &str, kinds: &str, states: &str) -> String {
    format!(
        "CREATE TABLE {name} (
            run_id varchar NOT NULL,
            step_id varchar NOT NULL,
            name varchar NOT NULL,
            kind varchar NOT NULL CHECK (kind IN ({kinds})),
            status varchar NOT NULL CHECK (status IN ({states})),
            position integer NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            output text NULL,
            error text NULL,
            errors text NOT NULL,
            started_at bigint NOT NULL,
            ended_at bigint NULL,
            wake_at bigint NULL,
            PRIMARY KEY (run_id, step_id),
            FOREIGN KEY (run_id) REFERENCES run (id) ON DELETE CASCADE
        )"
    )
}

/// Replaces the step table's CHECKs: SQLite cannot alter them, so it copies the table.
async fn step_checks(manager: &SchemaManager<'_>, kinds: &str, states: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if db.get_database_backend() == DbBackend::Sqlite {
        // One call, so that every statement runs on the same connection.
        let copy = [
            step_table("step_new", kinds, states),
            format!("INSERT INTO step_new ({STEP_COLUMNS}) SELECT {STEP_COLUMNS} FROM step"),
            "DROP TABLE step".into(),
            "ALTER TABLE step_new RENAME TO step".into(),
        ];
        db.execute_unprepared(&copy.join(";\n")).await?;
    } else {
        db.execute_unprepared(&format!(
            "ALTER TABLE step
                DROP CONSTRAINT step_kind_check,
                DROP CONSTRAINT step_status_check,
                ADD CONSTRAINT step_kind_check CHECK (kind IN ({kinds})),
                ADD CONSTRAINT step_status_check CHECK (status IN ({states}))"
        ))
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        step_checks(
            manager,
            "'run', 'sleep', 'wait', 'invoke', 'send'",
            "'completed', 'retrying', 'failed', 'sleeping', 'waiting'",
        )
        .await?;
        let db = manager.get_connection();
        for sql in [
            // user_key: the run's user id, or '' for none (so that it can be indexed and
            // compared with =). match_key: `<field>=<JSON value>` the new event must have.
            "CREATE TABLE wait (
                run_id varchar NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                step_id varchar NOT NULL,
                user_key varchar NOT NULL,
                event_name varchar NOT NULL,
                match_key text NULL,
                condition text NULL,
                window_start bigint NOT NULL,
                expires_at bigint NOT NULL,
                status varchar NOT NULL CHECK (status IN ('open', 'matched', 'timed_out', 'cancelled')),
                event_id varchar NULL,
                created_at bigint NOT NULL,
                ended_at bigint NULL,
                PRIMARY KEY (run_id, step_id)
            )",
            "CREATE INDEX idx_wait_open ON wait (event_name, user_key, match_key) WHERE status = 'open'",
            "CREATE TABLE awaited_event (
                event_id varchar NOT NULL PRIMARY KEY REFERENCES event (id) ON DELETE CASCADE,
                name varchar NOT NULL,
                user_key varchar NOT NULL,
                ts bigint NOT NULL,
                pending boolean NOT NULL
            )",
            "CREATE INDEX idx_awaited_event_recent ON awaited_event (name, user_key, ts)",
            "CREATE INDEX idx_awaited_event_pending ON awaited_event (ts) WHERE pending",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "DROP TABLE awaited_event",
            "DROP TABLE wait",
            "DELETE FROM step WHERE kind NOT IN ('run', 'sleep') OR status = 'waiting'",
        ] {
            db.execute_unprepared(sql).await?;
        }
        step_checks(
            manager,
            "'run', 'sleep'",
            "'completed', 'retrying', 'failed', 'sleeping'",
        )
        .await
    }
}
