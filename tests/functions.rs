//! Function options on a real database: a failure handler that runs once per failed run
//! as a run of its own, for the same user; typed event data and output; state shared
//! by every handler; the event names only the engine may send.
#![cfg(feature = "ssr")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast, run_row, test_db, wait_for, Updates};
use nodebase::engine::entities::run;
use nodebase::engine::{
    failure_handler_id, Engine, EngineError, FnError, Function, ManualClock, NewEvent, RunStatus,
    WaitFor, FAILED, FINISHED,
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Fails (retryably) on every attempt; its failure handler returns what it was told.
fn failing() -> Function {
    Function::new("always-fails", |ctx| async move {
        if ctx.event.data["ok"] == json!(true) {
            return Ok(json!("fine"));
        }
        Err(FnError::failed("the service is down"))
    })
    .trigger("test/fails")
    .retries(1)
    .on_failure(|ctx| async move {
        let failure = ctx.failure()?;
        Ok(json!({
            "run_id": failure.run_id,
            "function_id": failure.function_id,
            "error": failure.error,
            "event_data": failure.event.data,
            "handler_event": ctx.event.name,
        }))
    })
}

async fn runs_of(db: &DatabaseConnection, function_id: &str) -> Vec<run::Model> {
    run::Entity::find()
        .filter(run::Column::FunctionId.eq(function_id))
        .all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_run_that_fails_for_good_starts_its_failure_handler_once_for_the_same_user() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(failing())
        .config(fast())
        .build()
        .unwrap();
    let handler_id = failure_handler_id("always-fails");
    assert!(
        engine
            .functions()
            .iter()
            .any(|f| f.id() == handler_id && f.handles_failures_of() == Some("always-fails")),
        "the handler is a function of its own"
    );
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let send = |data: Value| engine.send(&t.db, NewEvent::new("test/fails", data).for_user("u1"));
    let ok = send(json!({ "ok": true })).await.unwrap().run_ids[0].clone();
    let failed = send(json!({ "order": 7 })).await.unwrap().run_ids[0].clone();
    wait_for(&mut updates, &ok, RunStatus::Completed).await;
    wait_for(&mut updates, &failed, RunStatus::Failed).await;

    // The handler's run was started in the commit that failed the run.
    let handlers = runs_of(&t.db, &handler_id).await;
    assert_eq!(
        handlers.len(),
        1,
        "one handler run, and none for the run that succeeded"
    );
    let handler = &handlers[0];
    assert_eq!(handler.user_id.as_deref(), Some("u1"));
    wait_for(&mut updates, &handler.id, RunStatus::Completed).await;
    let output: Value =
        serde_json::from_str(&run_row(&t.db, &handler.id).await.output.unwrap()).unwrap();
    assert_eq!(output["run_id"], json!(failed));
    assert_eq!(output["function_id"], json!("always-fails"));
    assert_eq!(output["event_data"], json!({ "order": 7 }));
    assert_eq!(output["handler_event"], json!(FAILED));
    let error = output["error"].as_str().unwrap();
    assert!(error.contains("the service is down"), "{error}");

    // A cancelled run is not a failure; a re-run that fails again is handled again.
    let cancelled = send(json!({ "order": 8 })).await.unwrap().run_ids[0].clone();
    engine.cancel(&cancelled).await.unwrap();
    let again = engine.rerun(&failed).await.unwrap().unwrap();
    wait_for(&mut updates, &again, RunStatus::Failed).await;
    let handlers = runs_of(&t.db, &handler_id).await;
    assert_eq!(handlers.len(), 2, "{handlers:?}");
    workers.shutdown().await;
}

#[tokio::test]
async fn a_failing_failure_handler_starts_no_handler_of_its_own() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(
            Function::new("fails", |_ctx| async move {
                Err::<(), _>(FnError::non_retriable("no"))
            })
            .trigger("test/fails")
            .on_failure(|_ctx| async move { Err::<(), _>(FnError::non_retriable("nor this")) }),
        )
        .config(fast())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let run_id = engine
        .send(&t.db, NewEvent::new("test/fails", json!({})))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Failed).await;
    let handler = runs_of(&t.db, "fails-on-failure").await.remove(0);
    wait_for(&mut updates, &handler.id, RunStatus::Failed).await;
    let all = run::Entity::find().all(&t.db).await.unwrap();
    assert_eq!(all.len(), 2, "no handler for the handler: {all:?}");
    workers.shutdown().await;
}

#[derive(Debug, Deserialize)]
struct Order {
    id: u32,
    items: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Receipt {
    order: u32,
    count: usize,
}

#[tokio::test]
async fn typed_functions_read_their_data_and_fail_clearly_on_data_that_does_not_fit() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(
            Function::typed("count-items", |_ctx, order: Order| async move {
                Ok(Receipt {
                    order: order.id,
                    count: order.items.len(),
                })
            })
            .trigger("test/order")
            .retries(3),
        )
        .config(fast())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let send = |data: Value| engine.send(&t.db, NewEvent::new("test/order", data));
    let good = send(json!({ "id": 4, "items": ["a", "b"] }))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    let bad = send(json!({ "id": "four" })).await.unwrap().run_ids[0].clone();
    wait_for(&mut updates, &good, RunStatus::Completed).await;
    wait_for(&mut updates, &bad, RunStatus::Failed).await;
    let output: Value = serde_json::from_str(&run_row(&t.db, &good).await.output.unwrap()).unwrap();
    assert_eq!(output, json!({ "order": 4, "count": 2 }));
    let bad = run_row(&t.db, &bad).await;
    let error = bad.error.unwrap();
    assert!(
        error.contains("does not fit") && error.contains("Order") && error.contains("four"),
        "{error}"
    );
    assert_eq!(bad.attempts, 1, "no retry can change the event");
    workers.shutdown().await;
}

/// A stand-in for a service a handler needs: an API client, a pool.
struct Greeter {
    greeting: String,
}

#[tokio::test]
async fn handlers_share_the_state_the_engine_was_given() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .state(Greeter {
            greeting: "hello".into(),
        })
        .function(
            Function::new("greet", |ctx| async move {
                let greeter = ctx.state::<Greeter>()?;
                let name = ctx.event.data["name"].as_str().unwrap_or("nobody");
                Ok(format!("{} {name}", greeter.greeting))
            })
            .trigger("test/greet"),
        )
        .function(
            Function::new("needs-more", |ctx| async move {
                ctx.state::<String>()?;
                Ok(())
            })
            .trigger("test/greet"),
        )
        .config(fast())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/greet", json!({ "name": "Ada" })))
        .await
        .unwrap();
    let mut greeted = None;
    let mut missing = None;
    for id in &receipt.run_ids {
        let row = run_row(&t.db, id).await;
        if row.function_id == "greet" {
            greeted = Some(id.clone());
        } else {
            missing = Some(id.clone());
        }
    }
    let (greeted, missing) = (greeted.unwrap(), missing.unwrap());
    wait_for(&mut updates, &greeted, RunStatus::Completed).await;
    wait_for(&mut updates, &missing, RunStatus::Failed).await;
    assert_eq!(
        run_row(&t.db, &greeted).await.output.as_deref(),
        Some("\"hello Ada\"")
    );
    let error = run_row(&t.db, &missing).await.error.unwrap();
    assert!(
        error.contains("no state of type alloc::string::String"),
        "{error}"
    );
    workers.shutdown().await;
}

#[tokio::test]
async fn only_the_engine_sends_events_named_nodebase_slash() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(failing())
        .build()
        .unwrap();
    for name in [FAILED, FINISHED, "nodebase/anything"] {
        let err = engine
            .send(&t.db, NewEvent::new(name, json!({ "run_id": "x" })))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::InvalidEvent(m) if m.contains("the engine's own")),
            "{name}: {err}"
        );
    }
    let stored = run::Entity::find().all(&t.db).await.unwrap();
    assert!(stored.is_empty());
}

const CANCELLED: &str = "test/order.cancelled";

/// An order's run: sleeps a day (or, with `"stuck"`, works forever), unless cancelled by
/// `test/order.cancelled` with the same `data.order` within an hour.
fn order_flow() -> Function {
    Function::new("order-flow", |ctx| async move {
        if ctx.event.data["stuck"] == json!(true) {
            ctx.step
                .run("work forever", || {
                    std::future::pending::<Result<(), FnError>>()
                })
                .await?;
        }
        ctx.step.sleep("a day", Duration::from_secs(86_400)).await?;
        Ok(())
    })
    .trigger("test/order")
    .cancel_on(WaitFor::event(CANCELLED, Duration::from_secs(3600)).matching("data.order"))
}

#[tokio::test]
async fn an_event_cancels_the_matching_runs_of_its_user_within_the_rules_time() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(10_000_000));
    let engine = Engine::builder(t.db.clone())
        .function(order_flow())
        .clock(clock.clone())
        .config(fast())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let send = |name: &'static str, user: &'static str, data: Value| {
        let engine = engine.clone();
        let db = t.db.clone();
        async move {
            let receipt = engine
                .send(&db, NewEvent::new(name, data).for_user(user))
                .await
                .unwrap();
            receipt.run_ids.first().cloned().unwrap_or(receipt.event_id)
        }
    };
    // A cancellation sent before the run's own event does not cancel it.
    send(CANCELLED, "u1", json!({ "order": 9 })).await;
    clock.advance(10);
    let early = send("test/order", "u1", json!({ "order": 9 })).await;
    let mine = send("test/order", "u1", json!({ "order": 1 })).await;
    let other = send("test/order", "u1", json!({ "order": 2 })).await;
    let theirs = send("test/order", "u2", json!({ "order": 1 })).await;
    let running = send("test/order", "u1", json!({ "order": 3, "stuck": true })).await;
    let late = send("test/order", "u1", json!({ "order": 4 })).await;
    for id in [&early, &mine, &other, &theirs, &late] {
        wait_for(&mut updates, id, RunStatus::Sleeping).await;
    }

    // u1 cancels order 1: only u1's run of order 1 ends.
    clock.advance(10);
    let cancel = send(CANCELLED, "u1", json!({ "order": 1 })).await;
    wait_for(&mut updates, &mine, RunStatus::Cancelled).await;
    let row = run_row(&t.db, &mine).await;
    assert_eq!(row.cancelled_by, Some(format!("event {cancel}")));
    for id in [&early, &other, &theirs] {
        assert_eq!(run_row(&t.db, id).await.status, RunStatus::Sleeping, "{id}");
    }

    // A running run stops where it stands.
    assert_eq!(run_row(&t.db, &running).await.status, RunStatus::Running);
    send(CANCELLED, "u1", json!({ "order": 3 })).await;
    wait_for(&mut updates, &running, RunStatus::Cancelled).await;

    // After the rule's hour, a cancellation no longer counts.
    clock.advance(3_600_000);
    send(CANCELLED, "u1", json!({ "order": 4 })).await;
    send(CANCELLED, "u1", json!({ "order": 2 })).await;
    let last = send("test/order", "u1", json!({ "order": 5 })).await;
    wait_for(&mut updates, &last, RunStatus::Sleeping).await;
    clock.advance(10);
    send(CANCELLED, "u1", json!({ "order": 5 })).await;
    // The matcher takes events oldest first: once order 5 is cancelled, it has passed
    // the cancellations of orders 4 and 2 as well.
    wait_for(&mut updates, &last, RunStatus::Cancelled).await;
    for id in [&late, &other] {
        assert_eq!(run_row(&t.db, id).await.status, RunStatus::Sleeping, "{id}");
    }
    workers.shutdown().await;
}

#[tokio::test]
async fn a_cancel_rule_is_checked_when_the_engine_is_built() {
    let t = test_db().await;
    let build = |rule: WaitFor| {
        Engine::builder(t.db.clone())
            .function(
                Function::new("f", |_ctx| async move { Ok(()) })
                    .trigger("test/f")
                    .cancel_on(rule),
            )
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let hour = Duration::from_secs(3600);
    assert!(
        build(WaitFor::event(CANCELLED, hour).when("async.data.x >")).contains("not valid CEL")
    );
    assert!(build(WaitFor::event(CANCELLED, hour).lookback(hour)).contains("cannot look back"));
    assert!(build(WaitFor::event(CANCELLED, Duration::ZERO)).contains("timeout"));
    assert!(build(WaitFor::event("not a name", hour)).contains("not a valid event name"));
    assert_eq!(build(WaitFor::event(CANCELLED, hour)), "");
}

#[tokio::test]
async fn runs_are_held_to_their_limits_on_steps_and_output_with_clear_errors() {
    let t = test_db().await;
    let big = "x".repeat(300);
    let engine = Engine::builder(t.db.clone())
        .function(
            Function::new("many-steps", |ctx| async move {
                for i in 0..10 {
                    ctx.step
                        .run(&format!("step {i}"), || async { Ok(i) })
                        .await?;
                }
                Ok(())
            })
            .trigger("test/limits"),
        )
        .function(
            Function::new("big-step", move |ctx| {
                let big = big.clone();
                async move {
                    let caught = ctx.step.run("too big", || async { Ok(big) }).await;
                    Ok(caught.err().map(|e| e.message().to_string()))
                }
            })
            .trigger("test/limits"),
        )
        .function(
            Function::new("big-output", |_ctx| async move { Ok("y".repeat(300)) })
                .trigger("test/limits"),
        )
        .config(nodebase::engine::EngineConfig {
            max_steps: 5,
            max_output_bytes: 200,
            ..fast()
        })
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/limits", json!({})))
        .await
        .unwrap();
    let mut by_function = std::collections::HashMap::new();
    for id in &receipt.run_ids {
        by_function.insert(run_row(&t.db, id).await.function_id, id.clone());
    }
    let many = &by_function["many-steps"];
    wait_for(&mut updates, many, RunStatus::Failed).await;
    let error = run_row(&t.db, many).await.error.unwrap();
    assert!(
        error.contains("\"step 5\"") && error.contains("at most 5 steps"),
        "{error}"
    );
    assert_eq!(common::steps_of(&t.db, many).await.len(), 5);

    let step = &by_function["big-step"];
    wait_for(&mut updates, step, RunStatus::Completed).await;
    let output = run_row(&t.db, step).await.output.unwrap();
    assert!(
        output.contains("the output is 302 bytes of JSON; the limit is 200"),
        "{output}"
    );

    let run = &by_function["big-output"];
    wait_for(&mut updates, run, RunStatus::Failed).await;
    let error = run_row(&t.db, run).await.error.unwrap();
    assert!(error.contains("the output is 302 bytes"), "{error}");
    workers.shutdown().await;
}

#[tokio::test]
async fn an_event_may_carry_3_mib_by_default() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone()).build().unwrap();
    let payload = |bytes: usize| json!({ "blob": "z".repeat(bytes - 11) }); // {"blob":"…"}
    let limit = 3 * 1024 * 1024;
    engine
        .send(&t.db, NewEvent::new("test/big", payload(limit)))
        .await
        .unwrap();
    let err = engine
        .send(&t.db, NewEvent::new("test/big", payload(limit + 1)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the limit is 3145728"), "{err}");
}

#[tokio::test]
async fn a_re_run_can_be_cancelled_by_event_like_its_first_run() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(order_flow())
        .config(fast())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let first = engine
        .send(
            &t.db,
            NewEvent::new("test/order", json!({ "order": 7 })).for_user("u1"),
        )
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &first, RunStatus::Sleeping).await;
    engine.cancel(&first).await.unwrap();
    let again = engine.rerun(&first).await.unwrap().unwrap();
    wait_for(&mut updates, &again, RunStatus::Sleeping).await;
    engine
        .send(
            &t.db,
            NewEvent::new(CANCELLED, json!({ "order": 7 })).for_user("u1"),
        )
        .await
        .unwrap();
    wait_for(&mut updates, &again, RunStatus::Cancelled).await;
    workers.shutdown().await;
}
