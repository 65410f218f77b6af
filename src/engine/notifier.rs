//! Cross-process signals on PostgreSQL: LISTEN/NOTIFY.
//!
//! `nodebase_wake` says "runs may be due" (sent inside the sending transaction, so it is
//! delivered only if the run commits); `nodebase_runs` carries run status changes so that
//! a browser connected to one process hears about runs finished by another. On SQLite
//! there is one process, and the in-process signals are enough.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::status::RunStatus;
use super::{Inner, RunUpdate};

const WAKE: &str = "nodebase_wake";
const RUNS: &str = "nodebase_runs";

/// A run update as it travels between processes.
#[derive(Serialize, Deserialize)]
struct Wire {
    /// The process that published it, which already told its own subscribers.
    from: String,
    run: String,
    function: String,
    user: Option<String>,
    status: String,
}

/// Inside a transaction on PostgreSQL: wake every process's workers at commit.
pub(crate) async fn wake_on_commit(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    conn.execute_raw(Statement::from_string(
        DbBackend::Postgres,
        format!("SELECT pg_notify('{WAKE}', '')"),
    ))
    .await
    .map(|_| ())
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
    let payloads: Vec<String> = updates
        .iter()
        .map(|u| {
            serde_json::to_string(&Wire {
                from: worker_id.to_string(),
                run: u.run_id.clone(),
                function: u.function_id.clone(),
                user: u.user_id.clone(),
                status: u.status.to_string(),
            })
            .unwrap_or_default()
        })
        .collect();
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("SELECT pg_notify('{RUNS}', p) FROM unnest($1::text[]) AS p"),
        [payloads.into()],
    ))
    .await
    .map(|_| ())
}

/// Starts the listener on PostgreSQL (nothing on SQLite). It reconnects by itself; after
/// a reconnect it wakes the workers, since signals sent meanwhile were lost.
pub(crate) fn start(
    inner: Arc<Inner>,
    mut stopped: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if inner.db.get_database_backend() != DbBackend::Postgres {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut listener: Option<PgListener> = None;
        loop {
            if *stopped.borrow() {
                return;
            }
            let Some(l) = listener.as_mut() else {
                match connect(&inner).await {
                    Ok(l) => {
                        listener = Some(l);
                        inner.wake.notify_one();
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot listen for notifications; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stopped.changed() => return,
                        }
                    }
                }
                continue;
            };
            let received = tokio::select! {
                received = l.try_recv() => received,
                _ = stopped.changed() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    handle(&inner, notification.channel(), notification.payload())
                }
                Ok(None) => {
                    tracing::warn!("notification connection lost; reconnecting");
                    inner.wake.notify_one();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "notification listener failed; reconnecting");
                    listener = None;
                }
            }
        }
    }))
}

async fn connect(inner: &Inner) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(inner.db.get_postgres_connection_pool()).await?;
    listener.listen_all([WAKE, RUNS]).await?;
    Ok(listener)
}

fn handle(inner: &Inner, channel: &str, payload: &str) {
    if channel == WAKE {
        inner.wake.notify_one();
        return;
    }
    let Ok(wire) = serde_json::from_str::<Wire>(payload) else {
        return;
    };
    if wire.from == inner.worker_id {
        return;
    }
    let Ok(status) = wire.status.parse::<RunStatus>() else {
        return;
    };
    if matches!(status, RunStatus::Queued | RunStatus::Sleeping) {
        inner.wake.notify_one();
    }
    let _ = inner.updates.send(RunUpdate {
        run_id: wire.run,
        function_id: wire.function,
        user_id: wire.user,
        status,
    });
}
