//! `step.send_event` on a real database: events sent once for the run's user, even when
//! the step's record is lost after the send and the step runs again.
#![cfg(feature = "ssr")]

mod common;

use std::time::Duration;

use common::{fast, refuse_steps_named, run_row, steps_of, test_db, wait_for, wait_for_all};
use nodebase::engine::entities::{event, run};
use nodebase::engine::{Engine, EngineConfig, Function, NewEvent, RunStatus, StepKind};
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
