//! PostgreSQL's LISTEN/NOTIFY signals, as SQL: `nodebase_wake` says "runs may be due"
//! (sent inside the sending transaction, so it is delivered only if the runs commit);
//! `nodebase_match` says "events some wait may match were recorded" (likewise);
//! `nodebase_runs` carries run status changes, many per payload, and the hello of a
//! process that starts listening (a payload of no runs).
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use serde::{Deserialize, Serialize};

use crate::domain::RunStatus;
use crate::engine::progress::RunUpdate;

pub(crate) const WAKE: &str = "nodebase_wake";
pub(crate) const RUNS: &str = "nodebase_runs";
pub(crate) const MATCH: &str = "nodebase_match";

/// Run updates as they travel between processes, many per notification. The payload
/// also names the process that published them (`from`, see [`sent_by`]), which already
/// told its own subscribers.
#[derive(Deserialize)]
pub(crate) struct Wire {
    pub runs: Vec<WireRun>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct WireRun {
    run: String,
    function: String,
    user: Option<String>,
    status: RunStatus,
}

impl From<WireRun> for RunUpdate {
    fn from(run: WireRun) -> Self {
        RunUpdate {
            run_id: run.run,
            function_id: run.function,
            user_id: run.user,
            status: run.status,
        }
    }
}

/// PostgreSQL refuses payloads of 8000 bytes or more; stay well below.
const MAX_PAYLOAD: usize = 7_000;

/// Inside a transaction on PostgreSQL: wake every process's workers at commit.
pub(crate) async fn wake_on_commit(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let mut select = Query::select();
    select.expr(Expr::cust(wake_sql(None)));
    conn.execute(&select).await.map(|_| ())
}

/// Inside a transaction on PostgreSQL: wake every process's matcher at commit.
pub(crate) async fn match_on_commit(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let mut select = Query::select();
    select.expr(Expr::cust(format!("pg_notify('{MATCH}', '')")));
    conn.execute(&select).await.map(|_| ())
}

/// The SQL expression that sends the wake-up signal (PostgreSQL only). `from`: the
/// process that sends it, when that process wakes its own dispatcher after the commit
/// (its listener then ignores the signal); `None` wakes every process.
pub(crate) fn wake_sql(from: Option<&str>) -> String {
    let from = from.unwrap_or_default().replace('\'', "''");
    format!("pg_notify('{WAKE}', '{from}')")
}

/// On PostgreSQL: tells the other processes about `updates` (at commit, if `conn` is a
/// transaction). One statement for the whole batch.
pub(crate) async fn announce(
    conn: &impl ConnectionTrait,
    worker_id: &str,
    updates: &[RunUpdate],
) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres || updates.is_empty() {
        return Ok(());
    }
    let payloads = payloads(worker_id, updates);
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("SELECT pg_notify('{RUNS}', p) FROM unnest($1::text[]) AS p"),
        [payloads.into()],
    ))
    .await
    .map(|_| ())
}

/// Tells every other process's listener that this process (`worker_id`) listens now: a
/// payload with no runs.
pub(crate) async fn hello(conn: &impl ConnectionTrait, worker_id: &str) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("SELECT pg_notify('{RUNS}', $1)"),
        [hello_payload(worker_id).into()],
    ))
    .await
    .map(|_| ())
}

fn hello_payload(worker_id: &str) -> String {
    format!("{}]}}", header(worker_id))
}

/// How every listener's connection begins its `application_name`; the rest is its own.
pub(crate) const LISTENER: &str = "nodebase-listener ";

/// Whether a listener's connection other than `own` (its `application_name`) is open
/// on this database.
pub(crate) async fn others_listen(conn: &impl ConnectionTrait, own: &str) -> Result<bool, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
             AND starts_with(application_name, $1) AND application_name <> $2) AS others",
            [LISTENER.into(), own.into()],
        ))
        .await?;
    match row {
        Some(row) => row.try_get("", "others"),
        None => Ok(true),
    }
}

/// How a payload of [`payloads`] begins: the process that sent it.
fn header(worker_id: &str) -> String {
    let from = serde_json::to_string(worker_id).unwrap_or_default();
    format!(r#"{{"from":{from},"runs":["#)
}

/// Whether `payload` came from this process (`worker_id`), told without parsing it: a
/// process hears its own notices too, as many as it sends.
pub(crate) fn sent_by(payload: &str, worker_id: &str) -> bool {
    payload.starts_with(&header(worker_id))
}

/// `updates` as JSON payloads of at most about `MAX_PAYLOAD` bytes each.
fn payloads(worker_id: &str, updates: &[RunUpdate]) -> Vec<String> {
    // Each run is serialized once; a payload is a [`Wire`] put together from them.
    let header = header(worker_id);
    let payload = |runs: &[String]| format!("{header}{}]}}", runs.join(","));
    let room = MAX_PAYLOAD - header.len() - 2;
    let mut payloads = Vec::new();
    let mut runs: Vec<String> = Vec::new();
    let mut size = 0;
    for u in updates {
        let run = serde_json::to_string(&WireRun {
            run: u.run_id.clone(),
            function: u.function_id.clone(),
            user: u.user_id.clone(),
            status: u.status,
        })
        .unwrap_or_default();
        if size + run.len() + 1 > room && !runs.is_empty() {
            payloads.push(payload(&runs));
            runs.clear();
            size = 0;
        }
        size += run.len() + 1;
        runs.push(run);
    }
    if !runs.is_empty() {
        payloads.push(payload(&runs));
    }
    payloads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_updates_are_split_into_payloads_postgres_accepts() {
        let updates: Vec<RunUpdate> = (0..500)
            .map(|i| RunUpdate {
                run_id: format!("run-{i:020}"),
                function_id: "some-function".into(),
                user_id: Some(format!("user-{i:020}")),
                status: RunStatus::Completed,
            })
            .collect();
        let payloads = payloads("worker", &updates);
        assert!(payloads.len() > 1);
        let mut seen = Vec::new();
        for p in &payloads {
            assert!(p.len() < MAX_PAYLOAD, "{} bytes", p.len());
            let wire: Wire = serde_json::from_str(p).unwrap();
            assert!(sent_by(p, "worker") && !sent_by(p, "work"));
            assert!(!wire.runs.is_empty());
            seen.extend(wire.runs.into_iter().map(|r| r.run));
        }
        let sent: Vec<String> = updates.into_iter().map(|u| u.run_id).collect();
        assert_eq!(seen, sent);
    }

    #[test]
    fn a_hello_is_a_payload_of_no_runs_from_its_process() {
        let hello = hello_payload("worker");
        let wire: Wire = serde_json::from_str(&hello).unwrap();
        assert!(wire.runs.is_empty());
        assert!(sent_by(&hello, "worker") && !sent_by(&hello, "work"));
    }
}
