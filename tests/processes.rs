//! Three worker processes share one database and drain 10,000 runs of a function whose
//! step appends to a ledger. Checked from the data: every run completed, every step's
//! effect appears exactly once, the work was shared, and no run was ever executed by two
//! processes at the same time.
//!
//! Run with `NODEBASE_PROCESS_WORKER=<database url>`, this binary is one of the workers.
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nodebase::engine::entities::run;
use nodebase::engine::{Engine, EngineConfig, Function, NewEvent};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, Statement, TransactionTrait,
};
use serde_json::json;

const WORKER_ENV: &str = "NODEBASE_PROCESS_WORKER";
const RUNS: usize = 10_000;
const PROCESSES: usize = 3;

fn micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

async fn insert(
    db: &DatabaseConnection,
    sql_sqlite: &str,
    sql_pg: &str,
    values: Vec<sea_orm::Value>,
) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        sql_pg
    } else {
        sql_sqlite
    };
    db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .map(|_| ())
}

fn ledger_function(db: DatabaseConnection) -> Function {
    Function::new("ledger", move |ctx| {
        let db = db.clone();
        async move {
            let pid = std::process::id() as i64;
            let started = micros();
            let run_id = ctx.run_id.clone();
            let (db2, run2) = (db.clone(), run_id.clone());
            ctx.step
                .run("append", || async move {
                    insert(
                        &db2,
                        "INSERT INTO ledger (run_id, pid) VALUES (?, ?)",
                        "INSERT INTO ledger (run_id, pid) VALUES ($1, $2)",
                        vec![run2.into(), pid.into()],
                    )
                    .await?;
                    Ok(())
                })
                .await?;
            // Outside any step, so recorded on every execution, repeated or not.
            insert(
                &db,
                "INSERT INTO execution (run_id, pid, started_us, ended_us) VALUES (?, ?, ?, ?)",
                "INSERT INTO execution (run_id, pid, started_us, ended_us) VALUES ($1, $2, $3, $4)",
                vec![run_id.into(), pid.into(), started.into(), micros().into()],
            )
            .await?;
            Ok(json!(null))
        }
    })
    .trigger("test/ledger")
}

fn config() -> EngineConfig {
    EngineConfig {
        workers: 32,
        poll: Duration::from_millis(250),
        ..EngineConfig::default()
    }
}

async fn worker(url: String) {
    let db = nodebase::db::connect(&url).await.expect("worker connects");
    let engine = Engine::builder(db.clone())
        .function(ledger_function(db))
        .config(config())
        .build()
        .expect("engine");
    let _workers = engine.start();
    std::future::pending::<()>().await;
}

fn spawn_worker(url: &str) -> Child {
    Command::new(std::env::current_exe().expect("own path"))
        .env(WORKER_ENV, url)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn worker")
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_string(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn three_processes_drain_ten_thousand_runs() {
    let t = common::test_db().await;
    for sql in [
        "CREATE TABLE ledger (run_id VARCHAR(64) NOT NULL, pid BIGINT NOT NULL)",
        "CREATE TABLE execution (run_id VARCHAR(64) NOT NULL, pid BIGINT NOT NULL, started_us BIGINT NOT NULL, ended_us BIGINT NOT NULL)",
    ] {
        t.db.execute_unprepared(sql).await.unwrap();
    }
    let mut workers: Vec<Child> = (0..PROCESSES).map(|_| spawn_worker(&t.url)).collect();

    // This process only sends.
    let sender = Engine::builder(t.db.clone())
        .function(ledger_function(t.db.clone()))
        .build()
        .unwrap();
    let start = Instant::now();
    for chunk in 0..RUNS / 1_000 {
        let events = (0..1_000)
            .map(|i| NewEvent::new("test/ledger", json!({ "n": chunk * 1_000 + i })))
            .collect();
        let txn = t.db.begin().await.unwrap();
        sender.send_many(&txn, events).await.unwrap();
        txn.commit().await.unwrap();
    }
    loop {
        let done = run::Entity::find()
            .filter(run::Column::Status.eq("completed"))
            .count(&t.db)
            .await
            .unwrap();
        if done as usize == RUNS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "only {done} of {RUNS} runs completed"
        );
        for w in workers.iter_mut() {
            assert!(w.try_wait().unwrap().is_none(), "a worker process died");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed();
    for w in workers.iter_mut() {
        w.kill().ok();
        w.wait().ok();
    }

    assert_eq!(
        count(&t.db, "SELECT COUNT(*) FROM ledger").await,
        RUNS as i64
    );
    assert_eq!(
        count(&t.db, "SELECT COUNT(DISTINCT run_id) FROM ledger").await,
        RUNS as i64
    );
    assert_eq!(count(&t.db, "SELECT COUNT(*) FROM step").await, RUNS as i64);
    let overlapping = count(
        &t.db,
        "SELECT COUNT(*) FROM execution a JOIN execution b ON a.run_id = b.run_id \
         AND a.pid <> b.pid AND a.started_us < b.ended_us AND b.started_us < a.ended_us",
    )
    .await;
    assert_eq!(
        overlapping, 0,
        "a run was executed by two processes at once"
    );
    let processes = count(&t.db, "SELECT COUNT(DISTINCT pid) FROM ledger").await;
    assert_eq!(processes, PROCESSES as i64, "every process took a share");
    println!(
        "ok: {PROCESSES} worker processes drained {RUNS} runs in {:.1} s; each step effect once, no run held twice",
        elapsed.as_secs_f64()
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Ok(url) = std::env::var(WORKER_ENV) {
        runtime.block_on(worker(url));
        return;
    }
    runtime.block_on(three_processes_drain_ten_thousand_runs());
}
