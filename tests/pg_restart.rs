//! The PostgreSQL server restarts under a running engine: sends during the outage fail
//! with a clear error (nothing is silently lost), and afterwards the engine reconnects —
//! a run that slept through the outage wakes, and new events run at once.
//!
//! PostgreSQL only (there is no server to restart with SQLite); `scripts/test` runs it
//! in its PostgreSQL pass. `NODEBASE_TEST_PG_CLUSTER` names the cluster for
//! `pg_ctlcluster` (default `15 main`).
mod common;

use std::process::Command;
use std::time::Duration;

use common::{wait_for, Updates};
use nodebase::engine::{Backoff, Engine, EngineConfig, EngineError, Function, NewEvent, RunStatus};
use serde_json::json;

fn pg_ctl(action: &str) {
    let cluster = std::env::var("NODEBASE_TEST_PG_CLUSTER").unwrap_or_else(|_| "15 main".into());
    let mut args: Vec<&str> = cluster.split_whitespace().collect();
    args.push(action);
    let status = Command::new("pg_ctlcluster")
        .args(&args)
        .status()
        .expect("run pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {cluster} {action} failed");
}

async fn survives_a_server_restart() {
    let t = common::test_db().await;
    let function = Function::new("steady", |ctx| async move {
        if ctx.event.data["nap"].as_bool() == Some(true) {
            ctx.step.sleep("nap", Duration::from_secs(3)).await?;
        }
        ctx.step.run("work", || async { Ok(1) }).await?;
        Ok(json!("ok"))
    })
    .trigger("test/steady");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(EngineConfig {
            poll: Duration::from_millis(500),
            backoff: Backoff::fast(),
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();

    let before = engine
        .send(&t.db, NewEvent::new("test/steady", json!({})))
        .await
        .unwrap();
    wait_for(&mut updates, &before.run_ids[0], RunStatus::Completed).await;
    let sleeper = engine
        .send(&t.db, NewEvent::new("test/steady", json!({ "nap": true })))
        .await
        .unwrap();
    wait_for(&mut updates, &sleeper.run_ids[0], RunStatus::Sleeping).await;

    pg_ctl("stop");
    let during = engine
        .send(&t.db, NewEvent::new("test/steady", json!({})))
        .await;
    let message = match during {
        Err(EngineError::Database(message)) => message,
        other => {
            pg_ctl("start");
            panic!("a send during the outage must fail loudly, got {other:?}");
        }
    };
    println!("send during the outage failed as it should: {message}");
    pg_ctl("start");

    // The sleeper wakes on time even though its timer spanned the outage.
    wait_for(&mut updates, &sleeper.run_ids[0], RunStatus::Completed).await;
    let after = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match engine
                .send(&t.db, NewEvent::new("test/steady", json!({})))
                .await
            {
                Ok(receipt) => return receipt,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .expect("sends work again after the restart");
    wait_for(&mut updates, &after.run_ids[0], RunStatus::Completed).await;
    workers.shutdown().await;
    println!("ok: the engine carried on after a PostgreSQL restart");
}

fn main() {
    let backend = std::env::var("NODEBASE_TEST_DATABASE").unwrap_or_default();
    if !backend.starts_with("postgres") {
        println!("pg_restart: PostgreSQL only; it runs in scripts/test's PostgreSQL pass");
        return;
    }
    tokio::runtime::Runtime::new()
        .expect("tokio runtime")
        .block_on(survives_a_server_restart());
}
