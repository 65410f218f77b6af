//! Three worker processes share one database and drain 10,000 runs of a function whose
//! step appends to a ledger. Checked from the data: every run completed, every step's
//! effect appears exactly once, the work was shared, and no run was ever executed by two
//! processes at the same time.
//!
//! Then three fresh worker processes drain runs of a function with two concurrency
//! limits (3 in all, 2 per key, over 2 keys): the handlers' own records of when they ran show that no
//! moment ever had more than 2 of one key or 3 in all executing, in whichever processes.
//!
//! Then three fresh worker processes drain runs of a throttled function (4 starts per
//! 500 ms per key, over 2 keys), all due at once: the runs' start times show that no
//! window of 500 ms ever held more than 4 starts of one key, whichever processes took them.
//!
//! Last, three worker processes with a cron function that ticks every second: each tick
//! makes exactly one event and one run, however many processes reach it.
//!
//! Run with `NODEBASE_PROCESS_WORKER=<database url>`, this binary is one of the workers
//! (of the cron function alone with `NODEBASE_PROCESS_CRON=1`).
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nodebase::engine::entities::run;
use nodebase::engine::{Engine, EngineConfig, Function, NewEvent, Throttle};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, Statement, TransactionTrait,
};
use serde_json::json;

const WORKER_ENV: &str = "NODEBASE_PROCESS_WORKER";
const CRON_ENV: &str = "NODEBASE_PROCESS_CRON";
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

/// 3 runs at once in all, 2 per `data.k`; each works for a few milliseconds and then
/// records when it ran (outside any step, so every execution is recorded).
fn limited_function(db: DatabaseConnection) -> Function {
    Function::new("limited", move |ctx| {
        let db = db.clone();
        async move {
            let started = micros();
            ctx.step
                .run("work", || async {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    Ok(())
                })
                .await?;
            let key = ctx.event.data["k"].as_i64().unwrap_or(-1);
            insert(
                &db,
                "INSERT INTO slot_use (k, pid, started_us, ended_us) VALUES (?, ?, ?, ?)",
                "INSERT INTO slot_use (k, pid, started_us, ended_us) VALUES ($1, $2, $3, $4)",
                vec![
                    key.into(),
                    (std::process::id() as i64).into(),
                    started.into(),
                    micros().into(),
                ],
            )
            .await?;
            Ok(json!(null))
        }
    })
    .trigger("test/limited")
    .concurrency(LIMIT_ALL)
    .concurrency_key(LIMIT_PER_KEY, "event.data.k")
}

const THROTTLED_RUNS: usize = 80;
const THROTTLE_LIMIT: usize = 4;
const THROTTLE_PERIOD_MS: i64 = 500;

/// 4 starts per 500 ms per `data.k`; does nothing else.
fn throttled_function() -> Function {
    Function::new("throttled", |_| async { Ok(json!(null)) })
        .trigger("test/throttled")
        .throttle(
            Throttle::new(
                THROTTLE_LIMIT as u32,
                Duration::from_millis(THROTTLE_PERIOD_MS as u64),
            )
            .key("event.data.k"),
        )
}

const LIMITED_RUNS: usize = 600;
const KEYS: usize = 2;
const LIMIT_ALL: u32 = 3;
const LIMIT_PER_KEY: u32 = 2;

fn config() -> EngineConfig {
    EngineConfig {
        workers: 32,
        poll: Duration::from_millis(250),
        ..EngineConfig::default()
    }
}

/// Ticks every second; its output is the tick's time.
fn ticker_function() -> Function {
    Function::new(
        "ticker",
        |ctx| async move { Ok(ctx.event.data["tick"].clone()) },
    )
    .cron("* * * * * *")
}

async fn worker(url: String) {
    let db = nodebase::db::connect(&url).await.expect("worker connects");
    let builder = if std::env::var_os(CRON_ENV).is_some() {
        Engine::builder(db.clone()).function(ticker_function())
    } else {
        Engine::builder(db.clone())
            .function(ledger_function(db.clone()))
            .function(limited_function(db))
            .function(throttled_function())
    };
    let engine = builder.config(config()).build().expect("engine");
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

fn spawn_cron_worker(url: &str) -> Child {
    Command::new(std::env::current_exe().expect("own path"))
        .env(WORKER_ENV, url)
        .env(CRON_ENV, "1")
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
    until_completed(
        &t.db,
        "ledger",
        RUNS,
        Duration::from_secs(180),
        &mut workers,
    )
    .await;
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

/// The most intervals of `uses` (start, end) that overlap at any one moment.
fn most_at_once(uses: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = uses
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // At equal times an end comes before a start: touching intervals do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

async fn three_processes_keep_concurrency_limits() {
    let t = common::test_db().await;
    t.db.execute_unprepared(
        "CREATE TABLE slot_use (k BIGINT NOT NULL, pid BIGINT NOT NULL, started_us BIGINT NOT NULL, ended_us BIGINT NOT NULL)",
    )
    .await
    .unwrap();
    let elapsed = drain_queued(
        &t,
        limited_function(t.db.clone()),
        "test/limited",
        LIMITED_RUNS,
    )
    .await;

    let rows =
        t.db.query_all_raw(Statement::from_string(
            t.db.get_database_backend(),
            "SELECT k, pid, started_us, ended_us FROM slot_use",
        ))
        .await
        .unwrap();
    let uses: Vec<(i64, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
                r.try_get_by_index(2).unwrap(),
                r.try_get_by_index(3).unwrap(),
            )
        })
        .collect();
    assert!(
        uses.len() >= LIMITED_RUNS,
        "every run recorded its execution"
    );
    let all: Vec<(i64, i64)> = uses.iter().map(|u| (u.2, u.3)).collect();
    let in_all = most_at_once(&all);
    assert!(
        in_all <= LIMIT_ALL as usize,
        "{in_all} runs executed at once (limit {LIMIT_ALL})"
    );
    let mut per_key = 0;
    for k in 0..KEYS as i64 {
        let of_key: Vec<(i64, i64)> = uses
            .iter()
            .filter(|u| u.0 == k)
            .map(|u| (u.2, u.3))
            .collect();
        let most = most_at_once(&of_key);
        assert!(
            most <= LIMIT_PER_KEY as usize,
            "{most} runs of key {k} executed at once (limit {LIMIT_PER_KEY})"
        );
        per_key = per_key.max(most);
    }
    // The limits were used, not merely respected by running one at a time.
    assert!(in_all >= 2, "runs executed side by side");
    let pids: std::collections::HashSet<i64> = uses.iter().map(|u| u.1).collect();
    assert!(
        pids.len() >= 2,
        "more than one process took a share ({pids:?})"
    );
    println!(
        "ok: {PROCESSES} worker processes drained {LIMITED_RUNS} limited runs in {:.1} s; at most {in_all} at once in all (limit {LIMIT_ALL}), {per_key} per key (limit {LIMIT_PER_KEY}), {} processes took a share",
        elapsed.as_secs_f64(),
        pids.len()
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Ok(url) = std::env::var(WORKER_ENV) {
        runtime.block_on(worker(url));
        return;
    }
    runtime.block_on(three_processes_drain_ten_thousand_runs());
    runtime.block_on(three_processes_keep_concurrency_limits());
    runtime.block_on(three_processes_keep_a_throttle());
    runtime.block_on(three_processes_make_one_run_per_cron_tick());
}

/// Queues `runs` events `name` for `function` (`data.k` cycling over [`KEYS`]) before any
/// worker starts, so that all of them find a full queue; then three worker processes
/// drain them. Returns how long they took.
async fn drain_queued(t: &common::TestDb, function: Function, name: &str, runs: usize) -> Duration {
    let function_id = function.id().to_string();
    let sender = Engine::builder(t.db.clone())
        .function(function)
        .build()
        .unwrap();
    let events = (0..runs)
        .map(|i| NewEvent::new(name, json!({ "k": i % KEYS })))
        .collect();
    sender.send_many(&t.db, events).await.unwrap();
    let start = Instant::now();
    let mut workers: Vec<Child> = (0..PROCESSES).map(|_| spawn_worker(&t.url)).collect();
    until_completed(
        &t.db,
        &function_id,
        runs,
        Duration::from_secs(120),
        &mut workers,
    )
    .await;
    let elapsed = start.elapsed();
    for w in workers.iter_mut() {
        w.kill().ok();
        w.wait().ok();
    }
    elapsed
}

/// Waits (up to `limit`) until `runs` runs of `function` have completed, the workers
/// alive.
async fn until_completed(
    db: &DatabaseConnection,
    function: &str,
    runs: usize,
    limit: Duration,
    workers: &mut [Child],
) {
    let start = Instant::now();
    loop {
        let done = run::Entity::find()
            .filter(run::Column::FunctionId.eq(function))
            .filter(run::Column::Status.eq("completed"))
            .count(db)
            .await
            .unwrap();
        if done as usize == runs {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "only {done} of {runs} {function} runs completed"
        );
        for w in workers.iter_mut() {
            assert!(w.try_wait().unwrap().is_none(), "a worker process died");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn three_processes_keep_a_throttle() {
    let t = common::test_db().await;
    let elapsed = drain_queued(&t, throttled_function(), "test/throttled", THROTTLED_RUNS).await;

    let rows = run::Entity::find()
        .filter(run::Column::FunctionId.eq("throttled"))
        .all(&t.db)
        .await
        .unwrap();
    let mut keys: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for r in &rows {
        let key = r.throttle_key.clone().expect("a throttled run's key");
        keys.entry(key)
            .or_default()
            .push(r.started_at.expect("a completed run started"));
    }
    assert_eq!(keys.len(), KEYS, "{:?}", keys.keys());
    let mut busiest = 0;
    for (k, mut starts) in keys {
        assert_eq!(starts.len(), THROTTLED_RUNS / KEYS, "runs of key {k}");
        starts.sort_unstable();
        // Any LIMIT + 1 consecutive starts span at least a period.
        for w in starts.windows(THROTTLE_LIMIT + 1) {
            assert!(
                w[THROTTLE_LIMIT] - w[0] >= THROTTLE_PERIOD_MS,
                "{} starts of key {k} within {} ms (limit {THROTTLE_LIMIT} per {THROTTLE_PERIOD_MS} ms): {w:?}",
                THROTTLE_LIMIT + 1,
                w[THROTTLE_LIMIT] - w[0]
            );
        }
        let most = starts
            .iter()
            .map(|&s| {
                starts
                    .iter()
                    .filter(|&&o| o >= s && o < s + THROTTLE_PERIOD_MS)
                    .count()
            })
            .max()
            .unwrap_or(0);
        busiest = busiest.max(most);
    }
    // The throttle was used up, not merely respected by starting one at a time.
    assert_eq!(busiest, THROTTLE_LIMIT, "the fullest window");
    println!(
        "ok: {PROCESSES} worker processes drained {THROTTLED_RUNS} throttled runs in {:.1} s; no {THROTTLE_PERIOD_MS} ms window held more than {THROTTLE_LIMIT} starts of a key",
        elapsed.as_secs_f64()
    );
}

async fn three_processes_make_one_run_per_cron_tick() {
    const TICKS: i64 = 5;
    let t = common::test_db().await;
    let mut workers: Vec<Child> = (0..PROCESSES).map(|_| spawn_cron_worker(&t.url)).collect();
    let start = Instant::now();
    let done_sql = "SELECT COUNT(*) FROM run WHERE function_id = 'ticker' AND status = 'completed'";
    while count(&t.db, done_sql).await < TICKS {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "fewer than {TICKS} ticks ran within 60 s"
        );
        for w in workers.iter_mut() {
            assert!(w.try_wait().unwrap().is_none(), "a worker process died");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in workers.iter_mut() {
        w.kill().ok();
        w.wait().ok();
    }

    let events = count(&t.db, "SELECT COUNT(*) FROM event").await;
    let runs = count(&t.db, "SELECT COUNT(*) FROM run").await;
    assert_eq!(runs, events, "one run per tick's event");
    let rows =
        t.db.query_all_raw(Statement::from_string(
            t.db.get_database_backend(),
            "SELECT data FROM event ORDER BY id".to_string(),
        ))
        .await
        .unwrap();
    let mut ticks: Vec<i64> = rows
        .iter()
        .map(|row| {
            let data: String = row.try_get_by_index(0).unwrap();
            let data: serde_json::Value = serde_json::from_str(&data).unwrap();
            data["tick"].as_i64().expect("a tick's time")
        })
        .collect();
    ticks.sort_unstable();
    let distinct = ticks.windows(2).all(|w| w[0] < w[1]);
    assert!(distinct, "a tick made two events: {ticks:?}");
    // Every second from the first tick on, none skipped.
    let consecutive = ticks.windows(2).all(|w| w[1] - w[0] == 1_000);
    assert!(consecutive, "ticks were skipped: {ticks:?}");
    println!(
        "ok: {PROCESSES} worker processes with a cron function: {} ticks, one event and one run each",
        ticks.len()
    );
}
