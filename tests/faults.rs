//! Fault injection: randomized schedules of a mixed workload — several `step.run`s,
//! retries, durable sleeps, parallel steps, cancels — run by two worker processes while
//! faults are injected: SIGKILL of a worker, a worker paused past its lease (SIGSTOP,
//! then SIGCONT), the database refusing step records for a while, a worker's clock
//! jumping past the lease, and (PostgreSQL) a restart of the database server.
//!
//! After each schedule it checks, on the database and on effect rows written by the
//! step closures themselves (outside the engine):
//! - every run ended (completed, failed or cancelled) and no event or run was lost;
//! - no recorded step output ever changed (a trigger watches every update of a step);
//! - every recorded output was produced by an execution of that step in the process
//!   that held the run when the execution began (never by a stale claim);
//! - a completed run's output is made of its steps' recorded outputs;
//! - a step's closure ran no more often than its recorded attempts plus the faults
//!   that could explain a repeat.
//!
//! `cargo test --features ssr --test faults -- --schedules 1000 --seed 7` runs a longer
//! soak (default 50 schedules, seed from the clock; both are printed, and a failing
//! schedule can be replayed with its seed). `NODEBASE_TEST_DATABASE` picks the backend.
//! The binary re-executes itself as the worker processes (`NODEBASE_FAULTS_CHILD`).
mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodebase::engine::entities::{run, step};
use nodebase::engine::{
    Backoff, Clock, Engine, EngineConfig, FnError, Function, NewEvent, RunStatus, StepStatus,
    SystemClock,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    Statement, Value,
};
use serde_json::json;

const CHILD_ENV: &str = "NODEBASE_FAULTS_CHILD";
const CLOCK_ENV: &str = "NODEBASE_FAULTS_CLOCK";
const LEASE_MS: u64 = 600;
const RETRIES: u32 = 3;

fn config() -> EngineConfig {
    EngineConfig {
        workers: 8,
        lease: Duration::from_millis(LEASE_MS),
        heartbeat: Duration::from_millis(150),
        poll: Duration::from_millis(100),
        backoff: Backoff::fast(),
        ..EngineConfig::default()
    }
}

/// Runs `sql` with `?` placeholders on either backend.
async fn exec(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        let mut n = 0;
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        sql.to_string()
    };
    db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .map(|_| ())
}

/// One execution of a step's closure: leaves an effect row (with whether this process
/// held the run as it began) and returns a fresh nonce; a step told to fail does so
/// on its first execution.
async fn effect(
    db: &DatabaseConnection,
    run_id: &str,
    step: &str,
    fail_first: bool,
    work_ms: u64,
) -> Result<String, FnError> {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let holder = run::Entity::find_by_id(run_id.to_string())
        .one(db)
        .await?
        .and_then(|r| r.locked_by.filter(|_| r.status == RunStatus::Running))
        .unwrap_or_default();
    let held = holder.contains(&format!("-{}-", std::process::id()));
    exec(
        db,
        "INSERT INTO fault_effect (run_id, step, nonce, held) VALUES (?, ?, ?, ?)",
        vec![
            run_id.into(),
            step.into(),
            nonce.clone().into(),
            held.into(),
        ],
    )
    .await?;
    // The work itself, long enough for faults to land in the middle of it.
    tokio::time::sleep(Duration::from_millis(work_ms)).await;
    if fail_first {
        let runs = count(
            db,
            "SELECT COUNT(*) FROM fault_effect WHERE run_id = ? AND step = ?",
            vec![run_id.into(), step.into()],
        )
        .await?;
        if runs == 1 {
            return Err(FnError::failed("a planned failure"));
        }
    }
    Ok(nonce)
}

async fn count(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
) -> Result<i64, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Postgres {
        sql.replacen('?', "$1", 1).replacen('?', "$2", 1)
    } else {
        sql.to_string()
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no row".into()))?;
    row.try_get_by_index::<i64>(0)
}

/// How long each step of the event's run works.
fn work_ms(event: &nodebase::engine::Event) -> u64 {
    event.data["work_ms"].as_u64().unwrap_or(0)
}

/// The workload: `chain` (three steps, one may fail once), `napper` (a step, a durable
/// sleep, a step) and `fanout` (two steps side by side, then one more).
fn functions(db: &DatabaseConnection) -> Vec<Function> {
    let chain = {
        let db = db.clone();
        Function::new("chain", move |ctx| {
            let db = db.clone();
            async move {
                let fail = ctx.event.data["fail"].as_str().unwrap_or("").to_string();
                let work = work_ms(&ctx.event);
                let mut out = Vec::new();
                for name in ["s1", "s2", "s3"] {
                    let (db, run_id, fail) = (db.clone(), ctx.run_id.clone(), fail == name);
                    let nonce: String = ctx
                        .step
                        .run(name, || async move {
                            effect(&db, &run_id, name, fail, work).await
                        })
                        .await?;
                    out.push(nonce);
                }
                Ok(json!(out))
            }
        })
        .trigger("faults/chain")
        .retries(RETRIES)
    };
    let napper = {
        let db = db.clone();
        Function::new("napper", move |ctx| {
            let db = db.clone();
            async move {
                let nap = ctx.event.data["nap_ms"].as_u64().unwrap_or(50);
                let work = work_ms(&ctx.event);
                let (d, r) = (db.clone(), ctx.run_id.clone());
                let first: String = ctx
                    .step
                    .run(
                        "s1",
                        || async move { effect(&d, &r, "s1", false, work).await },
                    )
                    .await?;
                ctx.step.sleep("nap", Duration::from_millis(nap)).await?;
                let (d, r) = (db.clone(), ctx.run_id.clone());
                let second: String = ctx
                    .step
                    .run(
                        "s2",
                        || async move { effect(&d, &r, "s2", false, work).await },
                    )
                    .await?;
                Ok(json!([first, second]))
            }
        })
        .trigger("faults/napper")
        .retries(RETRIES)
    };
    let fanout = {
        let db = db.clone();
        Function::new("fanout", move |ctx| {
            let db = db.clone();
            async move {
                let work = work_ms(&ctx.event);
                let (d1, r1) = (db.clone(), ctx.run_id.clone());
                let (d2, r2) = (db.clone(), ctx.run_id.clone());
                let a = ctx.step.run(
                    "a",
                    || async move { effect(&d1, &r1, "a", false, work).await },
                );
                let b = ctx.step.run(
                    "b",
                    || async move { effect(&d2, &r2, "b", false, work).await },
                );
                let (a, b): (Result<String, _>, Result<String, _>) = futures::join!(a, b);
                let (a, b) = (a?, b?);
                let (d, r) = (db.clone(), ctx.run_id.clone());
                let c: String = ctx
                    .step
                    .run(
                        "c",
                        || async move { effect(&d, &r, "c", false, work).await },
                    )
                    .await?;
                Ok(json!([a, b, c]))
            }
        })
        .trigger("faults/fanout")
        .retries(RETRIES)
    };
    vec![chain, napper, fanout]
}

/// The worker processes' clock: the system's, moved by an offset the test writes to a
/// file (read every 20 ms), so that the test can make a worker's clock jump.
struct JumpClock(Arc<AtomicI64>);

impl Clock for JumpClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.0.load(Ordering::Relaxed)
    }
}

async fn child(url: String, clock_file: String) {
    let offset = Arc::new(AtomicI64::new(0));
    {
        let offset = offset.clone();
        std::thread::spawn(move || loop {
            if let Ok(text) = std::fs::read_to_string(&clock_file) {
                if let Ok(ms) = text.trim().parse::<i64>() {
                    offset.store(ms, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        });
    }
    // A worker started while the database restarts keeps trying, as a real one would.
    let mut tries = 0;
    let db = loop {
        match nodebase::db::connect(&url).await {
            Ok(db) => break db,
            Err(err) if tries < 100 => {
                tries += 1;
                eprintln!("worker cannot connect yet ({err}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("worker cannot connect: {err}"),
        }
    };
    let mut builder = Engine::builder(db.clone())
        .config(config())
        .clock(Arc::new(JumpClock(offset)));
    for function in functions(&db) {
        builder = builder.function(function);
    }
    let _workers = builder.build().expect("child engine").start();
    std::future::pending::<()>().await;
}

/// A worker process and the file that sets its clock.
struct Worker {
    child: Child,
    clock_file: std::path::PathBuf,
}

fn spawn_worker(url: &str, dir: &std::path::Path, n: usize) -> Worker {
    let clock_file = dir.join(format!("clock-{n}"));
    std::fs::write(&clock_file, "0").unwrap();
    let child = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, url)
        .env(CLOCK_ENV, &clock_file)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn worker");
    Worker { child, clock_file }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Faults injected so far, by kind.
#[derive(Default)]
struct Tally(BTreeMap<&'static str, usize>);

impl Tally {
    fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }
}

/// The SQL that makes the database refuse (or stop refusing) step records named `s2`,
/// and that records any change of a completed step's output.
fn refuse_sql(backend: DbBackend, on: bool) -> Vec<String> {
    match (backend, on) {
        (DbBackend::Sqlite, true) => vec!["CREATE TRIGGER fault_refuse BEFORE INSERT ON step \
             WHEN NEW.name = 's2' BEGIN SELECT RAISE(ABORT, 'refused by the fault suite'); END"
            .into()],
        (DbBackend::Sqlite, false) => vec!["DROP TRIGGER IF EXISTS fault_refuse".into()],
        (_, true) => vec![
            "CREATE TRIGGER fault_refuse BEFORE INSERT ON step FOR EACH ROW \
             EXECUTE FUNCTION fault_refuse()"
                .into(),
        ],
        (_, false) => vec!["DROP TRIGGER IF EXISTS fault_refuse ON step".into()],
    }
}

async fn prepare(db: &DatabaseConnection) {
    let backend = db.get_database_backend();
    let mut sql: Vec<String> = vec![
        "CREATE TABLE fault_effect (run_id VARCHAR(64) NOT NULL, step VARCHAR(16) NOT NULL, \
         nonce VARCHAR(64) NOT NULL, held BOOLEAN NOT NULL)"
            .into(),
        "CREATE INDEX fault_effect_run ON fault_effect (run_id, step)".into(),
        "CREATE TABLE fault_violation (run_id VARCHAR(64), step_id VARCHAR(300), \
         old_output TEXT, new_output TEXT)"
            .into(),
    ];
    if backend == DbBackend::Sqlite {
        sql.push(
            "CREATE TRIGGER fault_watch AFTER UPDATE ON step WHEN OLD.status = 'completed' \
             AND (NEW.status != 'completed' OR NEW.output IS NOT OLD.output) BEGIN \
             INSERT INTO fault_violation VALUES (OLD.run_id, OLD.step_id, OLD.output, NEW.output); END"
                .into(),
        );
    } else {
        sql.push(
            "CREATE FUNCTION fault_refuse() RETURNS trigger AS $$ BEGIN \
             IF NEW.name = 's2' THEN RAISE EXCEPTION 'refused by the fault suite'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql"
                .into(),
        );
        sql.push(
            "CREATE FUNCTION fault_watch() RETURNS trigger AS $$ BEGIN \
             IF OLD.status = 'completed' AND (NEW.status <> 'completed' \
             OR NEW.output IS DISTINCT FROM OLD.output) THEN \
             INSERT INTO fault_violation VALUES (OLD.run_id, OLD.step_id, OLD.output, NEW.output); \
             END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                .into(),
        );
        sql.push(
            "CREATE TRIGGER fault_watch AFTER UPDATE ON step FOR EACH ROW \
             EXECUTE FUNCTION fault_watch()"
                .into(),
        );
    }
    for statement in sql {
        db.execute_unprepared(&statement).await.unwrap();
    }
}

/// What every schedule works on.
struct Rig<'a> {
    db: &'a DatabaseConnection,
    /// Sends the events and cancels runs (it runs no workers).
    sender: &'a Engine,
    url: &'a str,
    /// Where the workers' clock files are.
    dir: &'a std::path::Path,
    /// The PostgreSQL cluster to restart, if any.
    pg_cluster: Option<&'a str>,
}

/// One schedule: send a random workload, inject random faults for about a second, let
/// every run end, and check the invariants. Returns the violations found.
async fn schedule(
    rig: &Rig<'_>,
    workers: &mut [Worker],
    rng: &mut StdRng,
    tally: &mut Tally,
) -> Vec<String> {
    let Rig {
        db,
        sender,
        url,
        dir,
        pg_cluster,
    } = *rig;
    let backend = db.get_database_backend();
    let mut events = Vec::new();
    for _ in 0..rng.gen_range(6..=12) {
        let event = match rng.gen_range(0..3) {
            0 => {
                let fail = ["", "s1", "s2", "s3"][rng.gen_range(0..4)];
                NewEvent::new("faults/chain", json!({ "fail": fail }))
            }
            1 => NewEvent::new("faults/napper", json!({ "nap_ms": rng.gen_range(10..300) })),
            _ => NewEvent::new("faults/fanout", json!({})),
        };
        let mut event = event;
        event.data["work_ms"] = json!(rng.gen_range(0..250));
        events.push(event);
    }
    let receipts = sender.send_many(db, events).await.expect("send");
    let run_ids: Vec<String> = receipts.iter().flat_map(|r| r.run_ids.clone()).collect();

    // Faults, at random moments over about a second.
    let mut repeats_explained = 0usize;
    let mut refusing = false;
    for _ in 0..rng.gen_range(1..=4) {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        let w = rng.gen_range(0..workers.len());
        match rng.gen_range(0..100) {
            0..=29 => {
                workers[w].child.kill().ok();
                workers[w].child.wait().ok();
                workers[w] = spawn_worker(url, dir, rng.gen());
                tally.add("kill");
                repeats_explained += 1;
            }
            30..=49 => {
                signal(&workers[w].child, "-STOP");
                tokio::time::sleep(Duration::from_millis(LEASE_MS + 300)).await;
                signal(&workers[w].child, "-CONT");
                tally.add("pause");
                repeats_explained += 1;
            }
            50..=64 => {
                for sql in refuse_sql(backend, true) {
                    db.execute_unprepared(&sql).await.ok();
                }
                refusing = true;
                tally.add("refused writes");
                // Each run may have its record refused on every claim until it fails.
                repeats_explained += config().max_stalled_claims as usize + 1;
            }
            65..=79 => {
                std::fs::write(&workers[w].clock_file, (2 * LEASE_MS).to_string()).unwrap();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(100..400))).await;
                std::fs::write(&workers[w].clock_file, "0").unwrap();
                tally.add("clock jump");
                repeats_explained += 1;
            }
            80..=94 => {
                let victim = &run_ids[rng.gen_range(0..run_ids.len())];
                sender.cancel(victim).await.ok();
                tally.add("cancel");
            }
            _ => {
                if let Some(cluster) = pg_cluster {
                    let status = Command::new("pg_ctlcluster")
                        .args(cluster.split_whitespace())
                        .arg("restart")
                        .stdout(Stdio::null())
                        .status()
                        .expect("pg_ctlcluster");
                    assert!(status.success(), "PostgreSQL restart failed");
                    // Let the pools find their connections dropped before the checks.
                    tokio::time::sleep(Duration::from_millis(1_500)).await;
                    tally.add("database restart");
                    repeats_explained += 1;
                }
            }
        }
        if refusing && rng.gen_bool(0.5) {
            for sql in refuse_sql(backend, false) {
                db.execute_unprepared(&sql).await.ok();
            }
            refusing = false;
        }
    }
    if refusing {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for sql in refuse_sql(backend, false) {
            db.execute_unprepared(&sql).await.ok();
        }
    }

    // Every run ends once the faults stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut violations = Vec::new();
    let runs = loop {
        let runs = match run::Entity::find()
            .filter(run::Column::Id.is_in(run_ids.clone()))
            .all(db)
            .await
        {
            Ok(runs) => runs,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if runs.len() == run_ids.len() && runs.iter().all(|r| r.status.is_final()) {
            break runs;
        }
        if Instant::now() > deadline {
            for r in runs.iter().filter(|r| !r.status.is_final()) {
                violations.push(format!("run {} never ended: {:?}", r.id, r));
            }
            if runs.len() != run_ids.len() {
                violations.push(format!("{} runs sent, {} found", run_ids.len(), runs.len()));
            }
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    violations.extend(check(db, &runs, repeats_explained).await);
    violations
}

/// The invariants, on one schedule's runs.
async fn check(
    db: &DatabaseConnection,
    runs: &[run::Model],
    repeats_explained: usize,
) -> Vec<String> {
    let mut violations = Vec::new();
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    let steps = step::Entity::find()
        .filter(step::Column::RunId.is_in(ids.clone()))
        .all(db)
        .await
        .unwrap();
    // (run, step) -> [(nonce, held)] of every execution.
    let mut effects: HashMap<(String, String), Vec<(String, bool)>> = HashMap::new();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT run_id, step, nonce, held FROM fault_effect".to_string(),
        ))
        .await
        .unwrap();
    for row in rows {
        let run_id: String = row.try_get_by_index(0).unwrap();
        if !ids.contains(&run_id) {
            continue;
        }
        let key = (run_id, row.try_get_by_index::<String>(1).unwrap());
        effects.entry(key).or_default().push((
            row.try_get_by_index(2).unwrap(),
            row.try_get_by_index(3).unwrap(),
        ));
    }
    for s in steps.iter().filter(|s| s.status == StepStatus::Completed) {
        let Some(output) = &s.output else { continue };
        if s.name == "nap" {
            continue;
        }
        let nonce: String = serde_json::from_str(output).unwrap_or_default();
        let runs_of = effects.get(&(s.run_id.clone(), s.name.clone()));
        match runs_of.and_then(|e| e.iter().find(|(n, _)| *n == nonce)) {
            None => violations.push(format!(
                "step {}/{} recorded {nonce}, which no execution of it produced",
                s.run_id, s.step_id
            )),
            Some((_, false)) => violations.push(format!(
                "step {}/{} recorded the result of an execution whose process did not hold the run",
                s.run_id, s.step_id
            )),
            Some(_) => {}
        }
        let executions = runs_of.map_or(0, Vec::len);
        if executions > s.attempts as usize + repeats_explained {
            violations.push(format!(
                "step {}/{} ran {executions} times for {} recorded attempts and {repeats_explained} faults",
                s.run_id, s.step_id, s.attempts
            ));
        }
    }
    for r in runs.iter().filter(|r| r.status == RunStatus::Completed) {
        let output: Vec<String> =
            serde_json::from_str(r.output.as_deref().unwrap_or("[]")).unwrap_or_default();
        let names: &[&str] = match r.function_id.as_str() {
            "chain" => &["s1", "s2", "s3"],
            "napper" => &["s1", "s2"],
            _ => &["a", "b", "c"],
        };
        let recorded: Vec<String> = names
            .iter()
            .map(|name| {
                steps
                    .iter()
                    .find(|s| s.run_id == r.id && s.name == *name)
                    .and_then(|s| s.output.as_deref())
                    .and_then(|o| serde_json::from_str(o).ok())
                    .unwrap_or_default()
            })
            .collect();
        if output != recorded {
            violations.push(format!(
                "run {} output {output:?} is not its steps' recorded outputs {recorded:?}",
                r.id
            ));
        }
    }
    let changed = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT run_id, step_id, old_output, new_output FROM fault_violation".to_string(),
        ))
        .await
        .unwrap();
    for row in changed {
        let run_id: String = row.try_get_by_index(0).unwrap();
        let step_id: String = row.try_get_by_index(1).unwrap();
        violations.push(format!(
            "the recorded output of step {run_id}/{step_id} changed"
        ));
    }
    db.execute_unprepared("DELETE FROM fault_violation")
        .await
        .ok();
    violations
}

async fn suite(schedules: usize, seed: u64) {
    let t = common::test_db().await;
    let backend = t.db.get_database_backend();
    let pg_cluster = std::env::var("NODEBASE_TEST_PG_CLUSTER")
        .ok()
        .filter(|_| backend == DbBackend::Postgres);
    prepare(&t.db).await;
    let mut sender = Engine::builder(t.db.clone()).config(config());
    for function in functions(&t.db) {
        sender = sender.function(function);
    }
    let sender = sender.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut workers: Vec<Worker> = (0..2)
        .map(|n| spawn_worker(&t.url, dir.path(), n))
        .collect();
    println!(
        "fault suite on {backend:?}: {schedules} schedules, seed {seed} \
         (replay with -- --schedules {schedules} --seed {seed})"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let mut failed = Vec::new();
    let started = Instant::now();
    for n in 0..schedules {
        let rig = Rig {
            db: &t.db,
            sender: &sender,
            url: &t.url,
            dir: dir.path(),
            pg_cluster: pg_cluster.as_deref(),
        };
        let before = tally.0.clone();
        let violations = schedule(&rig, &mut workers, &mut rng, &mut tally).await;
        if !violations.is_empty() {
            let injected: Vec<String> = tally
                .0
                .iter()
                .map(|(k, n)| (k, n - before.get(k).unwrap_or(&0)))
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            println!(
                "schedule {n} (seed {seed}): {} violations, after faults: {}",
                violations.len(),
                injected.join(", ")
            );
            for v in &violations {
                println!("  {v}");
            }
            failed.push(n);
        }
    }
    for mut w in workers {
        w.child.kill().ok();
        w.child.wait().ok();
    }
    let faults: Vec<String> = tally.0.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "fault suite on {backend:?}: {schedules} schedules in {:.0} s, faults: {}; \
         schedules with violations: {}",
        started.elapsed().as_secs_f64(),
        faults.join(", "),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "violations in schedules {failed:?} (seed {seed})"
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Ok(url) = std::env::var(CHILD_ENV) {
        let clock = std::env::var(CLOCK_ENV).expect("clock file");
        runtime.block_on(child(url, clock));
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let schedules = flag("--schedules").unwrap_or(50) as usize;
    let seed = flag("--seed").unwrap_or_else(|| SystemClock.now_ms() as u64);
    runtime.block_on(suite(schedules, seed));
}
