//! Crash recovery with real processes and SIGKILL.
//!
//! 1. An engine worker process is killed in the middle of a step. A new worker finishes
//!    the run after the dead one's lease lapses: completed steps are not run again, the
//!    interrupted step runs again, and every step is recorded exactly once.
//! 2. The real `nodebase` server is killed during hello-world's durable sleeps and
//!    started again: the run completes and exactly one `workflow-from-inngest` appears.
//!
//! 3. A run whose step kills its worker process every time fails once it has been
//!    claimed more than `max_stalled_claims` times without recording progress, instead
//!    of taking every new worker down with it.
//!
//! This file is its own test binary (`harness = false`): run with
//! `NODEBASE_CRASH_CHILD=<database url>` it acts as the worker process to be killed,
//! and with `NODEBASE_ABORT_CHILD=<database url>` as the worker that kills itself.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodebase::engine::entities::{run, step};
use nodebase::engine::{Backoff, Engine, EngineConfig, Function, NewEvent, RunStatus};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Statement,
};
use serde_json::json;

const CHILD_ENV: &str = "NODEBASE_CRASH_CHILD";
const ABORT_CHILD_ENV: &str = "NODEBASE_ABORT_CHILD";
const IN_STEP_TWO: &str = "in step two";

fn config() -> EngineConfig {
    EngineConfig {
        workers: 4,
        lease: Duration::from_millis(1_500),
        heartbeat: Duration::from_millis(500),
        poll: Duration::from_millis(200),
        backoff: Backoff::fast(),
        ..EngineConfig::default()
    }
}

async fn effect(db: &DatabaseConnection, run_id: &str, what: &str) -> Result<(), sea_orm::DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => "INSERT INTO effect (run_id, what) VALUES ($1, $2)",
            _ => "INSERT INTO effect (run_id, what) VALUES (?, ?)",
        },
        [run_id.into(), what.into()],
    ))
    .await
    .map(|_| ())
}

/// Three steps that each leave an effect row; in the child process, step two announces
/// itself on stdout and then hangs until the process is killed.
fn three_steps(db: DatabaseConnection, hang_in_two: bool) -> Function {
    Function::new("crashy", move |ctx| {
        let db = db.clone();
        async move {
            let run_id = ctx.run_id.clone();
            for name in ["one", "two", "three"] {
                let (db, run_id) = (db.clone(), run_id.clone());
                ctx.step
                    .run(name, || async move {
                        if name == "two" && hang_in_two {
                            println!("{IN_STEP_TWO}");
                            std::future::pending::<()>().await;
                        }
                        effect(&db, &run_id, name).await?;
                        Ok(name.to_string())
                    })
                    .await?;
            }
            Ok(json!("done"))
        }
    })
    .trigger("test/crash")
}

async fn child(url: String) {
    let db = nodebase::db::connect(&url).await.expect("child connects");
    let engine = Engine::builder(db.clone())
        .function(three_steps(db, true))
        .config(config())
        .build()
        .expect("child engine");
    let _workers = engine.start();
    std::future::pending::<()>().await;
}

/// A function whose only step aborts the process that runs it.
fn suicidal() -> Function {
    Function::new("suicidal", |ctx| async move {
        ctx.step
            .run("abort", || async {
                std::process::abort();
                #[allow(unreachable_code)]
                Ok(())
            })
            .await?;
        Ok(json!("unreachable"))
    })
    .trigger("test/suicidal")
}

fn abort_config() -> EngineConfig {
    EngineConfig {
        lease: Duration::from_millis(300),
        heartbeat: Duration::from_millis(100),
        ..config()
    }
}

async fn abort_child(url: String) {
    let db = nodebase::db::connect(&url).await.expect("child connects");
    let engine = Engine::builder(db)
        .function(suicidal())
        .config(abort_config())
        .build()
        .expect("child engine");
    let _workers = engine.start();
    std::future::pending::<()>().await;
}

fn spawn_child(url: &str) -> Child {
    spawn_as(CHILD_ENV, url)
}

fn spawn_as(role: &str, url: &str) -> Child {
    Command::new(std::env::current_exe().expect("own path"))
        .env(role, url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn worker process")
}

/// Blocks until the child prints `line` (its explicit "I am here" signal).
fn wait_for_line(child: &mut Child, line: &str) {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l == line => return,
            Some(Ok(_)) => {}
            _ => panic!("worker process ended before saying {line:?}"),
        }
    }
}

async fn killed_mid_step_then_finished_by_a_new_worker() {
    let t = common::test_db().await;
    t.db.execute_unprepared(
        "CREATE TABLE effect (run_id VARCHAR(64) NOT NULL, what VARCHAR(16) NOT NULL)",
    )
    .await
    .unwrap();
    let engine = Engine::builder(t.db.clone())
        .function(three_steps(t.db.clone(), false))
        .config(config())
        .build()
        .unwrap();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/crash", json!({})))
        .await
        .unwrap();
    let run_id = receipt.run_ids[0].clone();

    let mut worker = spawn_child(&t.url);
    wait_for_line(&mut worker, IN_STEP_TWO);
    worker.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    worker.wait().unwrap();

    let run = run::Entity::find_by_id(run_id.clone())
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        run.status.as_str(),
        "running",
        "the dead worker still holds the lease"
    );
    let recorded: Vec<String> = steps(&t.db, &run_id)
        .await
        .into_iter()
        .map(|s| s.step_id)
        .collect();
    assert_eq!(
        recorded,
        vec!["one"],
        "step one was recorded before the kill"
    );

    // A new worker (this process) takes over once the lease lapses.
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    common::wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;

    let steps = steps(&t.db, &run_id).await;
    let summary: Vec<(String, String, i32)> = steps
        .iter()
        .map(|s| (s.step_id.clone(), s.status.as_str().to_string(), s.attempts))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("one".into(), "completed".into(), 1),
            ("two".into(), "completed".into(), 1),
            ("three".into(), "completed".into(), 1),
        ]
    );
    for what in ["one", "two", "three"] {
        let rows =
            t.db.query_all_raw(Statement::from_string(
                t.db.get_database_backend(),
                format!("SELECT what FROM effect WHERE what = '{what}'"),
            ))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "effect of step {what} appears exactly once");
    }
    let run = run::Entity::find_by_id(run_id)
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.claims, 2);
    println!("ok: a worker killed mid-step; its run was finished by another, each step once");
}

async fn steps(db: &DatabaseConnection, run_id: &str) -> Vec<step::Model> {
    step::Entity::find()
        .filter(step::Column::RunId.eq(run_id))
        .order_by_asc(step::Column::Position)
        .all(db)
        .await
        .unwrap()
}

/// Starts the real server binary on `url`.
fn start_server(url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nodebase"))
        .env("DATABASE_URL", url)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("LEPTOS_OUTPUT_NAME", "nodebase")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start nodebase")
}

/// Waits (checking every 20 ms, up to 30 s) until `ready` says yes.
async fn until<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !ready().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn server_killed_during_hello_world_sleeps() {
    let t = common::test_db().await;
    let user = common::sign_up(&t.db, "crash@example.com", "correct horse battery")
        .await
        .unwrap();
    // What create_workflow sends, through the same engine API.
    let mut builder = Engine::builder(t.db.clone()).state(t.db.clone());
    for function in nodebase::functions::all() {
        builder = builder.function(function);
    }
    let engine = builder.build().unwrap();
    let receipt = engine
        .send(
            &t.db,
            NewEvent::new(
                "test/hello.world",
                json!({ "email": user.email, "userId": user.id }),
            )
            .for_user(&user.id),
        )
        .await
        .unwrap();
    let run_id = receipt.run_ids[0].clone();
    let db = Arc::new(t.db.clone());

    let mut server = start_server(&t.url, 3970);
    let sleeping_in_second = || {
        let (db, run_id) = (db.clone(), run_id.clone());
        async move {
            steps(&db, &run_id)
                .await
                .iter()
                .any(|s| s.name == "비디오 → 텍스트 변환" && s.status.as_str() == "sleeping")
        }
    };
    until("the run to sleep in its second step", sleeping_in_second).await;
    server.kill().expect("SIGKILL");
    server.wait().unwrap();

    let mut server = start_server(&t.url, 3971);
    let completed = || {
        let (db, run_id) = (db.clone(), run_id.clone());
        async move {
            run::Entity::find_by_id(run_id)
                .one(&*db)
                .await
                .unwrap()
                .is_some_and(|r| r.status.as_str() == "completed")
        }
    };
    until("the run to complete after the restart", completed).await;
    server.kill().ok();
    server.wait().ok();

    let from_background = nodebase::entities::workflow::Entity::find()
        .filter(nodebase::entities::workflow::Column::Name.eq("workflow-from-inngest"))
        .filter(nodebase::entities::workflow::Column::UserId.eq(&user.id))
        .count(&t.db)
        .await
        .unwrap();
    assert_eq!(from_background, 1);
    let names: Vec<String> = steps(&t.db, &run_id)
        .await
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        vec![
            "비디오 가져오기",
            "비디오 → 텍스트 변환",
            "OpenAI로 전송해서 요약/분석",
            "create-workflow"
        ]
    );
    println!("ok: the server was killed during hello-world's sleeps; after a restart the run completed once");
}

async fn a_run_that_kills_every_worker_fails_after_too_many_claims() {
    let t = common::test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(suicidal())
        .config(abort_config())
        .build()
        .unwrap();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/suicidal", json!({})))
        .await
        .unwrap();
    let run_id = receipt.run_ids[0].clone();
    let status = || async {
        run::Entity::find_by_id(run_id.clone())
            .one(&t.db)
            .await
            .unwrap()
            .expect("run exists")
    };
    let limit = abort_config().max_stalled_claims as usize;
    let mut workers_started = 0;
    while status().await.status != RunStatus::Failed {
        assert!(
            workers_started <= limit + 1,
            "still not failed after {workers_started} workers: {:?}",
            status().await
        );
        // Each worker claims the run once its lease lapses, and dies in its step.
        let mut worker = spawn_as(ABORT_CHILD_ENV, &t.url);
        workers_started += 1;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if worker.try_wait().unwrap().is_some() {
                break;
            }
            if status().await.status == RunStatus::Failed {
                worker.kill().ok();
                worker.wait().ok();
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker neither died nor failed the run"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let run = status().await;
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains(&format!(
            "claimed {} times without recording any progress",
            limit + 1
        )),
        "{error}"
    );
    assert_eq!(
        workers_started,
        limit + 1,
        "the last worker failed it instead of dying"
    );
    println!("ok: a run that killed {limit} workers was failed by the next one");
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Ok(url) = std::env::var(CHILD_ENV) {
        runtime.block_on(child(url));
        return;
    }
    if let Ok(url) = std::env::var(ABORT_CHILD_ENV) {
        runtime.block_on(abort_child(url));
        return;
    }
    runtime.block_on(killed_mid_step_then_finished_by_a_new_worker());
    runtime.block_on(server_killed_during_hello_world_sleeps());
    runtime.block_on(a_run_that_kills_every_worker_fails_after_too_many_claims());
}
