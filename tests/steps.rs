//! `step.send_event` and `step.invoke` on a real database: events sent once for the
//! run's user, even when the step's record is lost after the send and the step runs
//! again; a child run started once, its output or failure returned to its parent, and
//! its end heard by the parent even if no process could resume the parent when it ended.
#![cfg(feature = "ssr")]

mod common;

use std::time::Duration;

use common::{fast, refuse_steps_named, run_row, steps_of, test_db, wait_for, wait_for_all};
use nodebase::engine::entities::{event, run};
use nodebase::engine::{
    Engine, EngineConfig, FnError, Function, ManualClock, NewEvent, RunStatus, StepKind,
};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter};
use serde_json::{json, Value};

fn fan_out() -> Function {
    Function::new("fan-out", |ctx| async move {
        let n = ctx.event.data["count"].as_u64().unwrap_or(0);
        let items = (0..n)
            .map(|i| {
                // A payload's idea of whose event this is counts for nothing.
                NewEvent::new("test/item", json!({ "i": i })).for_user("someone-else")
            })
            .collect();
        let ids = ctx.step.send_event("send items", items).await?;
        Ok(json!({ "sent": ids }))
    })
    .trigger("test/fan-out")
}

fn item() -> Function {
    Function::new("item", |ctx| async move { Ok(ctx.event.data["i"].clone()) }).trigger("test/item")
}

#[tokio::test]
async fn sent_events_are_the_runs_users_and_are_sent_once_though_the_step_ran_twice() {
    let t = test_db().await;
    // The step's record is refused at first: the events go out, the record does not,
    // and the run is handed back — the next attempt runs the step again.
    refuse_steps_named(&t.db, "send items").await;
    let engine = Engine::builder(t.db.clone())
        .function(fan_out())
        .function(item())
        .config(EngineConfig {
            lease: Duration::from_millis(500),
            heartbeat: Duration::from_millis(150),
            ..fast()
        })
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let run_id = engine
        .send(
            &t.db,
            NewEvent::new("test/fan-out", json!({ "count": 3 })).for_user("u1"),
        )
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Queued).await;
    let drop = match t.db.get_database_backend() {
        DbBackend::Sqlite => "DROP TRIGGER refuse_step",
        _ => "DROP TRIGGER refuse_step ON step",
    };
    t.db.execute_unprepared(drop).await.unwrap();
    engine.wake();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;

    let items = event::Entity::find()
        .filter(event::Column::Name.eq("test/item"))
        .all(&t.db)
        .await
        .unwrap();
    assert_eq!(items.len(), 3, "sent once, though the step ran twice");
    assert!(items.iter().all(|e| e.user_id.as_deref() == Some("u1")));
    let item_runs: Vec<String> = run::Entity::find()
        .filter(run::Column::FunctionId.eq("item"))
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(item_runs.len(), 3);
    wait_for_all(&mut updates, &item_runs, RunStatus::Completed).await;
    workers.shutdown().await;

    let output: Value =
        serde_json::from_str(run_row(&t.db, &run_id).await.output.as_deref().unwrap()).unwrap();
    let mut sent: Vec<String> = output["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut stored: Vec<String> = items.into_iter().map(|e| e.id).collect();
    sent.sort();
    stored.sort();
    assert_eq!(sent, stored);
    let steps = steps_of(&t.db, &run_id).await;
    assert_eq!((steps[0].kind, steps[0].attempts), (StepKind::Send, 1));
}

#[tokio::test]
async fn a_step_sends_at_most_1000_events() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(fan_out())
        .function(item())
        .config(fast())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let run_id = engine
        .send(
            &t.db,
            NewEvent::new("test/fan-out", json!({ "count": 1001 })).for_user("u1"),
        )
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Failed).await;
    workers.shutdown().await;
    let error = run_row(&t.db, &run_id).await.error.unwrap_or_default();
    assert!(error.contains("at most 1000 events"), "{error}");
    let items = event::Entity::find()
        .filter(event::Column::Name.eq("test/item"))
        .all(&t.db)
        .await
        .unwrap();
    assert!(items.is_empty());
}

const MINUTE: Duration = Duration::from_secs(60);

fn child_doubles() -> Function {
    Function::new("child-doubles", |ctx| async move {
        let n = ctx.event.data["n"]
            .as_i64()
            .ok_or_else(|| FnError::non_retriable("no n"))?;
        Ok(json!({ "doubled": 2 * n }))
    })
    .trigger("test/child")
}

/// Invokes `child-doubles` with `data`, then sleeps a minute (so that the handler
/// replays), and returns the child's output or the error it caught.
fn parent(data: Value) -> Function {
    Function::new("parent", move |ctx| {
        let data = data.clone();
        async move {
            let child = ctx
                .step
                .invoke("double it", "child-doubles", data, MINUTE)
                .await;
            ctx.step.sleep("then rest", MINUTE).await?;
            Ok(match child {
                Ok(output) => json!({ "child": output }),
                Err(err) => json!({ "caught": err.message() }),
            })
        }
    })
    .trigger("test/parent")
}

async fn run_parent(data: Value) -> (common::TestDb, String) {
    let t = test_db().await;
    let clock = std::sync::Arc::new(ManualClock::new(1_000_000));
    let engine = Engine::builder(t.db.clone())
        .function(parent(data))
        .function(child_doubles())
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let run_id = engine
        .send(
            &t.db,
            NewEvent::new("test/parent", json!({})).for_user("u1"),
        )
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    // The child ends, the parent resumes and goes to sleep; a minute later it ends.
    loop {
        let steps = steps_of(&t.db, &run_id).await;
        if steps.len() == 2 && run_row(&t.db, &run_id).await.status == RunStatus::Sleeping {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    clock.advance(60_000);
    engine.wake();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;
    (t, run_id)
}

async fn children(db: &sea_orm::DatabaseConnection) -> Vec<run::Model> {
    run::Entity::find()
        .filter(run::Column::FunctionId.eq("child-doubles"))
        .all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn invoke_returns_the_childs_output_once_and_links_the_two_runs() {
    let (t, run_id) = run_parent(json!({ "n": 21 })).await;
    let run = run_row(&t.db, &run_id).await;
    let output: Value = serde_json::from_str(run.output.as_deref().unwrap()).unwrap();
    assert_eq!(output, json!({ "child": { "doubled": 42 } }));
    let children = children(&t.db).await;
    assert_eq!(children.len(), 1, "the replay did not invoke it again");
    assert_eq!(children[0].invoked_by.as_deref(), Some(run_id.as_str()));
    assert_eq!(children[0].user_id.as_deref(), Some("u1"));
    let step = &steps_of(&t.db, &run_id).await[0];
    assert_eq!(
        (step.kind, step.status),
        (StepKind::Invoke, nodebase::engine::StepStatus::Completed)
    );
}

#[tokio::test]
async fn a_childs_failure_is_the_invoke_steps_failure_which_the_handler_can_catch() {
    let (t, run_id) = run_parent(json!({ "n": "not a number" })).await;
    let run = run_row(&t.db, &run_id).await;
    let output: Value = serde_json::from_str(run.output.as_deref().unwrap()).unwrap();
    let caught = output["caught"].as_str().unwrap();
    assert!(
        caught.contains("child-doubles") && caught.contains("failed") && caught.contains("no n"),
        "{caught}"
    );
    assert_eq!(children(&t.db).await.len(), 1);
}

#[tokio::test]
async fn a_child_that_ends_while_its_parent_cannot_run_is_heard_by_the_parent_later() {
    let t = test_db().await;
    // A process whose child never ends: the parent starts its child and parks; the
    // process stops, handing the child back.
    let stuck = Function::new("child-doubles", |_ctx| {
        std::future::pending::<Result<serde_json::Value, FnError>>()
    })
    .trigger("test/child");
    let first = Engine::builder(t.db.clone())
        .function(parent(json!({ "n": 5 })))
        .function(stuck)
        .config(EngineConfig {
            shutdown_grace: Duration::from_millis(100),
            ..fast()
        })
        .build()
        .unwrap();
    let mut updates = common::Updates::new(first.subscribe());
    let workers = first.start();
    let run_id = first
        .send(
            &t.db,
            NewEvent::new("test/parent", json!({})).for_user("u1"),
        )
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    workers.shutdown().await;

    // A process with the child only: the child runs and ends; then the process stops,
    // before any process that has the parent could resume it.
    let second = Engine::builder(t.db.clone())
        .function(child_doubles())
        .config(fast())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(second.subscribe());
    let workers = second.start();
    let child = children(&t.db).await.remove(0);
    wait_for(&mut updates, &child.id, RunStatus::Completed).await;
    workers.shutdown().await;
    assert_ne!(run_row(&t.db, &run_id).await.status, RunStatus::Completed);

    // A process with both: the parent resumes with the child's output.
    let clock = std::sync::Arc::new(ManualClock::new(nodebase::db::now_ms()));
    let third = Engine::builder(t.db.clone())
        .function(parent(json!({ "n": 5 })))
        .function(child_doubles())
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(third.subscribe());
    let workers = third.start();
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    clock.advance(120_000);
    third.wake();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;
    let output: Value =
        serde_json::from_str(run_row(&t.db, &run_id).await.output.as_deref().unwrap()).unwrap();
    assert_eq!(output, json!({ "child": { "doubled": 10 } }));
    assert_eq!(children(&t.db).await.len(), 1);
}
