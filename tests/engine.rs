//! The engine's behaviour on a real database: memoized steps, retries, durable sleeps,
//! transactional sends, cancellation, leases and concurrent workers.
#![cfg(feature = "ssr")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fast, refuse_steps_named, run_row, steps_of, test_db, wait_for, wait_for_all};
use nodebase::engine::entities::{event, run, step};
use nodebase::engine::{
    Clock, Engine, EngineConfig, EngineError, FnError, Function, ManualClock, NewEvent, RunStatus,
    RunUpdate, SystemClock,
};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, TransactionTrait,
};
use serde_json::json;
use tokio::sync::Notify;

/// Starts an engine with `function` alone, sends `event`, waits until its run is
/// `status`, stops the engine, and returns the run's id.
async fn run_until(
    db: &DatabaseConnection,
    function: Function,
    clock: Option<Arc<ManualClock>>,
    event: NewEvent,
    status: RunStatus,
) -> String {
    let mut builder = Engine::builder(db.clone())
        .function(function)
        .config(fast());
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    let engine = builder.build().unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine.send(db, event).await.unwrap();
    let run_id = receipt.run_ids[0].clone();
    wait_for(&mut updates, &run_id, status).await;
    workers.shutdown().await;
    run_id
}

#[tokio::test]
async fn a_steps_closure_runs_once_across_replays() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let before = Arc::new(AtomicUsize::new(0));
    let after = Arc::new(AtomicUsize::new(0));
    let (b, a) = (before.clone(), after.clone());
    let function = Function::new("memo", move |ctx| {
        let (b, a) = (b.clone(), a.clone());
        async move {
            let n: usize = ctx
                .step
                .run("before", || async move {
                    Ok(b.fetch_add(1, Ordering::SeqCst) + 1)
                })
                .await?;
            ctx.step.sleep("nap", Duration::from_secs(3600)).await?;
            let m: usize = ctx
                .step
                .run("after", || async move {
                    Ok(a.fetch_add(1, Ordering::SeqCst) + 1)
                })
                .await?;
            Ok(json!({ "before": n, "after": m }))
        }
    })
    .trigger("test/memo");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();

    let receipt = engine
        .send(&t.db, NewEvent::new("test/memo", json!({})))
        .await
        .unwrap();
    let run_id = &receipt.run_ids[0];
    wait_for(&mut updates, run_id, RunStatus::Sleeping).await;
    assert_eq!(before.load(Ordering::SeqCst), 1);
    assert_eq!(after.load(Ordering::SeqCst), 0);

    clock.advance(3_600_000);
    engine.wake();
    wait_for(&mut updates, run_id, RunStatus::Completed).await;
    workers.shutdown().await;

    assert_eq!(before.load(Ordering::SeqCst), 1, "memoized, not run again");
    assert_eq!(after.load(Ordering::SeqCst), 1);
    let run = run_row(&t.db, run_id).await;
    assert_eq!(run.status.as_str(), "completed");
    assert_eq!(run.claims, 2, "one claim to sleep, one to finish");
    let output: serde_json::Value = serde_json::from_str(run.output.as_deref().unwrap()).unwrap();
    assert_eq!(output, json!({ "before": 1, "after": 1 }));
    let steps = steps_of(&t.db, run_id).await;
    let names: Vec<(&str, &str, &str)> = steps
        .iter()
        .map(|s| (s.step_id.as_str(), s.kind.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("before", "run", "completed"),
            ("nap", "sleep", "completed"),
            ("after", "run", "completed")
        ]
    );
    assert_eq!(steps[1].wake_at, Some(1_000_000 + 3_600_000));
    assert_eq!(
        steps[1].ended_at.unwrap() - steps[1].started_at,
        3_600_000,
        "a sleep lasts exactly its duration"
    );
}

#[tokio::test]
async fn consecutive_steps_run_in_one_invocation_and_repeated_ids_get_a_suffix() {
    let t = test_db().await;
    let function = Function::new("three", |ctx| async move {
        let mut total = 0;
        for i in 1..=3 {
            total += ctx.step.run("add", || async move { Ok(i) }).await?;
        }
        Ok(json!(total))
    })
    .trigger("test/three");
    let run_id = run_until(
        &t.db,
        function,
        None,
        NewEvent::new("test/three", json!(null)),
        RunStatus::Completed,
    )
    .await;

    let run = run_row(&t.db, &run_id).await;
    assert_eq!(run.claims, 1, "no re-queue between consecutive steps");
    assert_eq!(run.output.as_deref(), Some("6"));
    let ids: Vec<String> = steps_of(&t.db, &run.id)
        .await
        .into_iter()
        .map(|s| s.step_id)
        .collect();
    assert_eq!(ids, vec!["add", "add:1", "add:2"]);
}

#[tokio::test]
async fn a_step_failing_twice_then_succeeding_completes_with_three_attempts() {
    let t = test_db().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let function = Function::new("flaky", move |ctx| {
        let c = c.clone();
        async move {
            let v: String = ctx
                .step
                .run("flaky", || async move {
                    match c.fetch_add(1, Ordering::SeqCst) {
                        0 => Err(FnError::failed("first failure")),
                        1 => Err(FnError::failed("second failure")),
                        _ => Ok("ok".to_string()),
                    }
                })
                .await?;
            Ok(json!(v))
        }
    })
    .trigger("test/flaky")
    .retries(5);
    let run_id = run_until(
        &t.db,
        function,
        None,
        NewEvent::new("test/flaky", json!({})),
        RunStatus::Completed,
    )
    .await;

    let steps = steps_of(&t.db, &run_id).await;
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].status.as_str(), "completed");
    assert_eq!(steps[0].attempts, 3);
    let errors: Vec<String> = serde_json::from_str(&steps[0].errors).unwrap();
    assert_eq!(errors, vec!["first failure", "second failure"]);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_non_retriable_error_fails_the_run_at_once() {
    let t = test_db().await;
    let function = Function::new("fatal", |ctx| async move {
        ctx.step
            .run("fatal", || async {
                Err::<(), _>(FnError::non_retriable("bad input"))
            })
            .await?;
        Ok(json!(null))
    })
    .trigger("test/fatal")
    .retries(10);
    let run_id = run_until(
        &t.db,
        function,
        None,
        NewEvent::new("test/fatal", json!({})),
        RunStatus::Failed,
    )
    .await;

    let run = run_row(&t.db, &run_id).await;
    assert!(
        run.error.as_deref().unwrap().contains("bad input"),
        "{run:?}"
    );
    let steps = steps_of(&t.db, &run.id).await;
    assert_eq!((steps[0].status.as_str(), steps[0].attempts), ("failed", 1));
}

#[tokio::test]
async fn spent_retries_fail_the_run_with_the_last_error() {
    let t = test_db().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let function = Function::new("doomed", move |ctx| {
        let c = c.clone();
        async move {
            ctx.step
                .run("doomed", || async move {
                    let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                    Err::<(), _>(FnError::failed(format!("boom {n}")))
                })
                .await?;
            Ok(json!(null))
        }
    })
    .trigger("test/doomed")
    .retries(2);
    let run_id = run_until(
        &t.db,
        function,
        None,
        NewEvent::new("test/doomed", json!({})),
        RunStatus::Failed,
    )
    .await;

    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "one attempt plus two retries"
    );
    let run = run_row(&t.db, &run_id).await;
    let error = run.error.unwrap();
    assert!(
        error.contains("after 3 attempts") && error.contains("boom 3"),
        "{error}"
    );
    let step = &steps_of(&t.db, &run.id).await[0];
    assert_eq!(step.attempts, 3);
    let errors: Vec<String> = serde_json::from_str(&step.errors).unwrap();
    assert_eq!(errors, vec!["boom 1", "boom 2", "boom 3"]);
}

#[tokio::test]
async fn a_handler_can_catch_a_steps_final_failure_and_replays_see_the_same_failure() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let function = Function::new("fallback", move |ctx| {
        let c = c.clone();
        async move {
            let tried = ctx
                .step
                .run("flaky", || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(FnError::failed("the API is down"))
                })
                .await;
            let recovered = match tried {
                Ok(()) => None,
                Err(err) => Some(err.message().to_string()),
            };
            // A later sleep makes the handler replay from the top: the failure must
            // come back the same, without calling the closure again.
            ctx.step.sleep("cool down", Duration::from_secs(60)).await?;
            Ok(json!({ "recovered": recovered }))
        }
    })
    .trigger("test/fallback")
    .retries(2);
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let run_id = engine
        .send(&t.db, NewEvent::new("test/fallback", json!({})))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    // Two retries, each after a backoff on the manual clock.
    for _ in 0..2 {
        wait_for(&mut updates, &run_id, RunStatus::Queued).await;
        updates = common::Updates::new(engine.subscribe());
        clock.advance(3_600_000);
        engine.wake();
    }
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    clock.advance(60_000);
    engine.wake();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;

    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "one attempt and two retries, then never again"
    );
    let run = run_row(&t.db, &run_id).await;
    let output: serde_json::Value = serde_json::from_str(run.output.as_deref().unwrap()).unwrap();
    assert_eq!(
        output,
        json!({ "recovered": "step \"flaky\" failed after 3 attempts: the API is down" })
    );
    let steps = steps_of(&t.db, &run_id).await;
    assert_eq!((steps[0].status.as_str(), steps[0].attempts), ("failed", 3));
    assert_eq!(steps[1].status.as_str(), "completed");
}

#[tokio::test]
async fn retry_after_sets_the_next_attempt_time() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(5_000_000));
    let function = Function::new("later", |ctx| async move {
        ctx.step
            .run("later", || async {
                Err::<(), _>(FnError::retry_after(
                    Duration::from_secs(90),
                    "rate limited",
                ))
            })
            .await?;
        Ok(json!(null))
    })
    .trigger("test/later");
    let run_id = run_until(
        &t.db,
        function,
        Some(clock.clone()),
        NewEvent::new("test/later", json!({})),
        RunStatus::Queued,
    )
    .await;

    let run = run_row(&t.db, &run_id).await;
    assert_eq!(run.status.as_str(), "queued");
    assert_eq!(run.due_at, 5_000_000 + 90_000);
    let step = &steps_of(&t.db, &run.id).await[0];
    assert_eq!((step.status.as_str(), step.attempts), ("retrying", 1));
    assert_eq!(step.error.as_deref(), Some("rate limited"));
}

#[tokio::test]
async fn a_failing_handler_outside_steps_is_retried_then_failed() {
    let t = test_db().await;
    let function = Function::new("broken", |_ctx| async move {
        Err::<serde_json::Value, _>(FnError::failed("no luck"))
    })
    .trigger("test/broken")
    .retries(1);
    let run_id = run_until(
        &t.db,
        function,
        None,
        NewEvent::new("test/broken", json!({})),
        RunStatus::Failed,
    )
    .await;
    let run = run_row(&t.db, &run_id).await;
    assert_eq!(run.attempts, 2);
    assert_eq!(run.claims, 2);
    assert!(run.error.unwrap().contains("no luck"));
}

#[tokio::test]
async fn a_sleeping_run_wakes_and_completes_after_a_restart() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(10_000_000));
    let effects = Arc::new(AtomicUsize::new(0));
    let make = |effects: Arc<AtomicUsize>| {
        Function::new("sleeper", move |ctx| {
            let effects = effects.clone();
            async move {
                ctx.step
                    .run("first", || async move {
                        effects.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await?;
                ctx.step
                    .sleep("wait a day", Duration::from_secs(86_400))
                    .await?;
                Ok(json!("awake"))
            }
        })
        .trigger("test/sleep")
    };

    // First server: starts the run, which goes to sleep; then the server stops.
    let first = Engine::builder(t.db.clone())
        .function(make(effects.clone()))
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(first.subscribe());
    let workers = first.start();
    let receipt = first
        .send(&t.db, NewEvent::new("test/sleep", json!({})))
        .await
        .unwrap();
    let run_id = receipt.run_ids[0].clone();
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    workers.shutdown().await;
    drop(first);
    assert_eq!(run_row(&t.db, &run_id).await.status.as_str(), "sleeping");

    // A day later, a new server on a new connection picks it up.
    clock.advance(86_400_000);
    let db = nodebase::db::connect(&t.url).await.unwrap();
    let second = Engine::builder(db.clone())
        .function(make(effects.clone()))
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(second.subscribe());
    let workers = second.start();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;

    assert_eq!(effects.load(Ordering::SeqCst), 1);
    let run = run_row(&db, &run_id).await;
    assert_eq!(run.output.as_deref(), Some("\"awake\""));
}

#[tokio::test]
async fn a_rolled_back_send_leaves_no_event_and_no_run() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(Function::new("noop", |_| async { Ok(json!(null)) }).trigger("test/tx"))
        .config(fast())
        .build()
        .unwrap();

    let txn = t.db.begin().await.unwrap();
    let receipt = engine
        .send(&txn, NewEvent::new("test/tx", json!({ "n": 1 })))
        .await
        .unwrap();
    assert_eq!(receipt.run_ids.len(), 1);
    txn.rollback().await.unwrap();
    assert_eq!(event::Entity::find().count(&t.db).await.unwrap(), 0);
    assert_eq!(run::Entity::find().count(&t.db).await.unwrap(), 0);

    let txn = t.db.begin().await.unwrap();
    engine
        .send(&txn, NewEvent::new("test/tx", json!({ "n": 2 })))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(event::Entity::find().count(&t.db).await.unwrap(), 1);
    assert_eq!(run::Entity::find().count(&t.db).await.unwrap(), 1);
}

#[tokio::test]
async fn an_idempotency_key_makes_a_repeated_send_a_no_op() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(Function::new("a", |_| async { Ok(json!(null)) }).trigger("test/idem"))
        .function(Function::new("b", |_| async { Ok(json!(null)) }).trigger("test/idem"))
        .config(fast())
        .build()
        .unwrap();
    let send = || {
        engine.send(
            &t.db,
            NewEvent::new("test/idem", json!({})).idempotency_key("order-42"),
        )
    };
    let first = send().await.unwrap();
    let second = send().await.unwrap();
    assert!(!first.duplicate && second.duplicate);
    assert_eq!(first.event_id, second.event_id);
    assert_eq!(first.run_ids.len(), 2, "one run per triggered function");
    let mut a = first.run_ids.clone();
    let mut b = second.run_ids.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(event::Entity::find().count(&t.db).await.unwrap(), 1);
    assert_eq!(run::Entity::find().count(&t.db).await.unwrap(), 2);
}

#[tokio::test]
async fn bad_events_are_refused_and_nothing_is_stored() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(Function::new("a", |_| async { Ok(json!(null)) }).trigger("test/ok"))
        .config(EngineConfig {
            max_event_bytes: 64,
            ..fast()
        })
        .build()
        .unwrap();
    let bad_name = engine
        .send(&t.db, NewEvent::new("not a name", json!({})))
        .await;
    assert!(
        matches!(bad_name, Err(EngineError::InvalidEvent(_))),
        "{bad_name:?}"
    );
    let too_big = engine
        .send(
            &t.db,
            NewEvent::new("test/ok", json!({ "blob": "x".repeat(100) })),
        )
        .await;
    let Err(EngineError::InvalidEvent(message)) = too_big else {
        panic!("{too_big:?}")
    };
    assert!(message.contains("limit is 64"), "{message}");
    // One bad event in a batch stores none of the batch.
    let batch = engine
        .send_many(
            &t.db,
            vec![
                NewEvent::new("test/ok", json!({})),
                NewEvent::new("", json!({})),
            ],
        )
        .await;
    assert!(batch.is_err());
    assert_eq!(event::Entity::find().count(&t.db).await.unwrap(), 0);
    assert_eq!(run::Entity::find().count(&t.db).await.unwrap(), 0);
}

#[tokio::test]
async fn cancelling_a_sleeping_run_stops_it_for_good() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(1_000));
    let woke = Arc::new(AtomicUsize::new(0));
    let w = woke.clone();
    let function = Function::new("cancel-me", move |ctx| {
        let w = w.clone();
        async move {
            ctx.step.sleep("nap", Duration::from_secs(60)).await?;
            ctx.step
                .run("after", || async move {
                    w.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await?;
            Ok(json!(null))
        }
    })
    .trigger("test/cancel");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/cancel", json!({})))
        .await
        .unwrap();
    let run_id = &receipt.run_ids[0];
    wait_for(&mut updates, run_id, RunStatus::Sleeping).await;
    assert!(engine.cancel(run_id).await.unwrap());
    assert!(!engine.cancel(run_id).await.unwrap(), "already cancelled");

    // Another run, sleeping as long, proves the workers went round after the wake-up.
    let other = engine
        .send(&t.db, NewEvent::new("test/cancel", json!({})))
        .await
        .unwrap();
    wait_for(&mut updates, &other.run_ids[0], RunStatus::Sleeping).await;
    clock.advance(120_000);
    engine.wake();
    wait_for(&mut updates, &other.run_ids[0], RunStatus::Completed).await;
    workers.shutdown().await;
    assert_eq!(run_row(&t.db, run_id).await.status.as_str(), "cancelled");
    assert_eq!(woke.load(Ordering::SeqCst), 1, "only the other run went on");
}

#[tokio::test]
async fn cancelling_a_running_run_stops_it_at_the_next_step() {
    let t = test_db().await;
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let later = Arc::new(AtomicUsize::new(0));
    let (e, r, l) = (entered.clone(), release.clone(), later.clone());
    let function = Function::new("long", move |ctx| {
        let (e, r, l) = (e.clone(), r.clone(), l.clone());
        async move {
            ctx.step
                .run("slow", || async move {
                    e.notify_one();
                    r.notified().await;
                    Ok(())
                })
                .await?;
            ctx.step
                .run("never", || async move {
                    l.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await?;
            Ok(json!(null))
        }
    })
    .trigger("test/long");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(fast())
        .build()
        .unwrap();
    let workers = engine.start();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/long", json!({})))
        .await
        .unwrap();
    entered.notified().await;
    assert!(engine.cancel(&receipt.run_ids[0]).await.unwrap());
    release.notify_one();
    workers.shutdown().await;

    assert_eq!(later.load(Ordering::SeqCst), 0);
    assert_eq!(
        run_row(&t.db, &receipt.run_ids[0]).await.status.as_str(),
        "cancelled"
    );
    assert!(steps_of(&t.db, &receipt.run_ids[0]).await.is_empty());
}

#[tokio::test]
async fn a_run_whose_lease_lapsed_is_finished_by_another_worker() {
    let t = test_db().await;
    let stuck = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let make = |label: &'static str, hang: bool| {
        let (stuck, entered) = (stuck.clone(), entered.clone());
        Function::new("hang-once", move |ctx| {
            let (stuck, entered) = (stuck.clone(), entered.clone());
            async move {
                let who: String = ctx
                    .step
                    .run("work", || async move {
                        if hang {
                            entered.notify_one();
                            stuck.notified().await; // a worker that stopped answering
                        }
                        Ok(label.to_string())
                    })
                    .await?;
                Ok(json!(who))
            }
        })
        .trigger("test/hang")
    };
    // The first worker stopped answering: its clock stands still, so its heartbeats
    // never move its lease past the first 300 ms, and the lease lapses for the others.
    let frozen = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let hung = Engine::builder(t.db.clone())
        .function(make("hung", true))
        .clock(frozen)
        .config(EngineConfig {
            lease: Duration::from_millis(300),
            heartbeat: Duration::from_millis(100),
            ..fast()
        })
        .build()
        .unwrap();
    let hung_workers = hung.start();
    let receipt = hung
        .send(&t.db, NewEvent::new("test/hang", json!({})))
        .await
        .unwrap();
    entered.notified().await;

    let healthy = Engine::builder(t.db.clone())
        .function(make("healthy", false))
        .config(EngineConfig {
            lease: Duration::from_millis(300),
            heartbeat: Duration::from_millis(100),
            ..fast()
        })
        .build()
        .unwrap();
    let mut updates = common::Updates::new(healthy.subscribe());
    let healthy_workers = healthy.start();
    wait_for(&mut updates, &receipt.run_ids[0], RunStatus::Completed).await;

    // The hung worker wakes up late: its result must not be recorded.
    stuck.notify_one();
    hung_workers.shutdown().await;
    healthy_workers.shutdown().await;
    let run = run_row(&t.db, &receipt.run_ids[0]).await;
    assert_eq!(run.status.as_str(), "completed");
    assert_eq!(run.output.as_deref(), Some("\"healthy\""));
    let steps = steps_of(&t.db, &run.id).await;
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].output.as_deref(), Some("\"healthy\""));
}

#[tokio::test]
async fn several_workers_never_execute_one_run_at_the_same_time() {
    let t = test_db().await;
    // (run id, worker, start, end) of every handler invocation.
    type Log = Arc<Mutex<Vec<(String, usize, Instant, Instant)>>>;
    let log: Log = Arc::default();
    let make = |worker: usize| {
        let log = log.clone();
        Function::new("shared", move |ctx| {
            let log = log.clone();
            async move {
                let start = Instant::now();
                for i in 0..3 {
                    ctx.step
                        .run("step", || async move {
                            tokio::task::yield_now().await;
                            Ok(i)
                        })
                        .await?;
                }
                log.lock()
                    .unwrap()
                    .push((ctx.run_id.clone(), worker, start, Instant::now()));
                Ok(json!(worker))
            }
        })
        .trigger("test/shared")
    };
    let mut engines = Vec::new();
    for worker in 0..3 {
        let db = nodebase::db::connect(&t.url).await.unwrap();
        let engine = Engine::builder(db)
            .function(make(worker))
            .config(EngineConfig {
                workers: 4,
                batch: 4,
                ..fast()
            })
            .build()
            .unwrap();
        engines.push(engine);
    }
    let mut updates = engines[0].subscribe();
    let all: Vec<_> = engines.iter().map(|e| e.start()).collect();
    let events: Vec<NewEvent> = (0..150)
        .map(|i| NewEvent::new("test/shared", json!({ "i": i })))
        .collect();
    let receipts = engines[0].send_many(&t.db, events).await.unwrap();
    let last = receipts.last().unwrap().run_ids[0].clone();
    // Wait for the database to show every run completed, checking after each update.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let done = run::Entity::find()
                .filter(run::Column::Status.eq("completed"))
                .count(&t.db)
                .await
                .unwrap();
            if done == 150 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), updates.recv()).await;
        }
    })
    .await
    .expect("all runs complete");
    for workers in all {
        workers.shutdown().await;
    }
    let _ = last;

    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 150, "each run's handler finished exactly once");
    let mut by_run = std::collections::HashMap::<&str, usize>::new();
    for (run, ..) in log.iter() {
        *by_run.entry(run).or_default() += 1;
    }
    assert!(by_run.values().all(|&n| n == 1));
    let workers_used: std::collections::HashSet<usize> = log.iter().map(|e| e.1).collect();
    assert!(
        workers_used.len() > 1,
        "the work was shared: {workers_used:?}"
    );
    assert_eq!(step::Entity::find().count(&t.db).await.unwrap(), 450);
}

#[tokio::test]
async fn one_event_triggers_one_run_per_function() {
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(Function::new("first", |_| async { Ok(json!(1)) }).trigger("test/fanout"))
        .function(Function::new("second", |_| async { Ok(json!(2)) }).trigger("test/fanout"))
        .function(Function::new("other", |_| async { Ok(json!(3)) }).trigger("test/other"))
        .config(fast())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/fanout", json!({})))
        .await
        .unwrap();
    assert_eq!(receipt.run_ids.len(), 2);
    wait_for_all(&mut updates, &receipt.run_ids, RunStatus::Completed).await;
    workers.shutdown().await;
    let mut functions: Vec<String> = run::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.function_id)
        .collect();
    functions.sort();
    assert_eq!(functions, vec!["first", "second"]);
}

#[tokio::test]
async fn duplicate_function_ids_and_bad_triggers_are_refused() {
    let t = test_db().await;
    let twice = Engine::builder(t.db.clone())
        .function(Function::new("same", |_| async { Ok(json!(1)) }).trigger("a"))
        .function(Function::new("same", |_| async { Ok(json!(2)) }).trigger("b"))
        .build();
    assert!(matches!(twice, Err(EngineError::InvalidFunction(_))));
    let untriggered = Engine::builder(t.db.clone())
        .function(Function::new("lonely", |_| async { Ok(json!(1)) }))
        .build();
    assert!(matches!(untriggered, Err(EngineError::InvalidFunction(_))));
}

#[tokio::test]
async fn pruning_deletes_old_finished_runs_and_keeps_the_rest() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(100_000_000));
    let function = Function::new("prune", |ctx| async move {
        if ctx.event.data["sleep"].as_bool() == Some(true) {
            ctx.step
                .sleep("long", Duration::from_secs(86_400 * 365))
                .await?;
        }
        ctx.step.run("work", || async { Ok(1) }).await?;
        Ok(json!(null))
    })
    .trigger("test/prune");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(EngineConfig {
            retention: None,
            ..fast()
        })
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let old = engine
        .send_many(
            &t.db,
            (0..3)
                .map(|_| NewEvent::new("test/prune", json!({})))
                .collect(),
        )
        .await
        .unwrap();
    let asleep = engine
        .send(&t.db, NewEvent::new("test/prune", json!({ "sleep": true })))
        .await
        .unwrap();
    let old_ids: Vec<String> = old.iter().map(|r| r.run_ids[0].clone()).collect();
    wait_for_all(&mut updates, &old_ids, RunStatus::Completed).await;
    wait_for(&mut updates, &asleep.run_ids[0], RunStatus::Sleeping).await;
    clock.advance(10 * 86_400_000);
    let fresh = engine
        .send(&t.db, NewEvent::new("test/prune", json!({})))
        .await
        .unwrap();
    wait_for(&mut updates, &fresh.run_ids[0], RunStatus::Completed).await;
    workers.shutdown().await;

    let (runs, events) = engine.prune(Duration::from_secs(7 * 86_400)).await.unwrap();
    assert_eq!((runs, events), (3, 3));
    let left: Vec<String> = run::Entity::find()
        .all(&t.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&asleep.run_ids[0]) && left.contains(&fresh.run_ids[0]));
    assert_eq!(event::Entity::find().count(&t.db).await.unwrap(), 2);
    // Their steps went with them.
    assert_eq!(step::Entity::find().count(&t.db).await.unwrap(), 2);
}

#[tokio::test]
async fn a_run_never_completes_without_the_record_of_a_step_the_database_refused() {
    let t = test_db().await;
    refuse_steps_named(&t.db, "fragile").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let function = Function::new("refused", move |ctx| {
        let c = c.clone();
        async move {
            ctx.step
                .run(
                    "fragile",
                    || async move { Ok(c.fetch_add(1, Ordering::SeqCst)) },
                )
                .await?;
            // Some work after the last step, so that the run's end is committed apart
            // from the step's record.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(json!("done"))
        }
    })
    .trigger("test/refused");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(EngineConfig {
            lease: Duration::from_millis(500),
            heartbeat: Duration::from_millis(150),
            ..fast()
        })
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/refused", json!({})))
        .await
        .unwrap();
    let run_id = &receipt.run_ids[0];
    wait_for(&mut updates, run_id, RunStatus::Running).await;

    // The step ran, its record was refused until the engine gave up on it, and the
    // run was handed back with the reason — it did not complete without it.
    wait_for(&mut updates, run_id, RunStatus::Queued).await;
    assert!(calls.load(Ordering::SeqCst) >= 1);
    let run = run_row(&t.db, run_id).await;
    assert_ne!(run.status.as_str(), "completed", "{run:?}");
    let error = run.error.unwrap_or_default();
    assert!(error.contains("refused"), "{error}");
    assert!(steps_of(&t.db, run_id).await.is_empty());

    // Once the database accepts it again, the run completes with its step.
    let drop = match t.db.get_database_backend() {
        DbBackend::Sqlite => "DROP TRIGGER refuse_step",
        _ => "DROP TRIGGER refuse_step ON step",
    };
    t.db.execute_unprepared(drop).await.unwrap();
    wait_for(&mut updates, run_id, RunStatus::Completed).await;
    workers.shutdown().await;
    let steps = steps_of(&t.db, run_id).await;
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].status.as_str(), "completed");
    assert_eq!(
        run_row(&t.db, run_id).await.output.as_deref(),
        Some("\"done\"")
    );
}

#[tokio::test]
async fn a_large_batch_is_stored_whole_in_the_callers_transaction_or_not_at_all() {
    let t = test_db().await;
    let noop = |id: &str| Function::new(id, |_ctx| async { Ok(json!(null)) }).trigger("test/batch");
    let engine = Engine::builder(t.db.clone())
        .function(noop("batch-a"))
        .function(noop("batch-b"))
        .config(fast())
        .build()
        .unwrap();
    let payload = |i: usize| json!({ "i": i, "text": "it's \"quoted\" \\ and ✓ 한글" });
    let batch = || {
        (0..1_200)
            .map(|i| NewEvent::new("test/batch", payload(i)).for_user("ada"))
            .collect::<Vec<_>>()
    };

    let txn = t.db.begin().await.unwrap();
    engine.send_many(&txn, batch()).await.unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(event::Entity::find().count(&t.db).await.unwrap(), 0);
    assert_eq!(run::Entity::find().count(&t.db).await.unwrap(), 0);

    let txn = t.db.begin().await.unwrap();
    let receipts = engine.send_many(&txn, batch()).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(receipts.len(), 1_200);
    assert_eq!(event::Entity::find().count(&t.db).await.unwrap(), 1_200);
    assert_eq!(run::Entity::find().count(&t.db).await.unwrap(), 2_400);
    for i in [0, 599, 1_199] {
        let receipt = &receipts[i];
        let stored = event::Entity::find_by_id(receipt.event_id.clone())
            .one(&t.db)
            .await
            .unwrap()
            .expect("event stored");
        assert_eq!(stored.user_id.as_deref(), Some("ada"));
        let data: serde_json::Value = serde_json::from_str(&stored.data).unwrap();
        assert_eq!(data, payload(i));
        assert_eq!(receipt.run_ids.len(), 2);
        for run_id in &receipt.run_ids {
            let r = run_row(&t.db, run_id).await;
            assert_eq!(r.event_id, receipt.event_id);
            assert_eq!(r.user_id.as_deref(), Some("ada"));
            assert_eq!(r.status, RunStatus::Queued);
            assert_eq!((r.claims, r.stalled_claims, r.attempts), (0, 0, 0));
            assert_eq!(r.created_at, r.due_at);
        }
    }
    // And the engine runs them all.
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let ids: Vec<String> = receipts.iter().flat_map(|r| r.run_ids.clone()).collect();
    wait_for_all(&mut updates, &ids, RunStatus::Completed).await;
    workers.shutdown().await;
}

#[tokio::test]
async fn a_sent_run_is_announced_queued_once_its_send_has_committed_in_every_process() {
    let t = test_db().await;
    let function =
        || Function::new("announced", |_ctx| async { Ok(json!(null)) }).trigger("test/announced");
    // The sender runs no workers, so that nothing but the send announces its runs.
    let sender = Engine::builder(t.db.clone())
        .function(function())
        .config(fast())
        .build()
        .unwrap();
    let mut here = sender.subscribe();
    let queued = |receipt: &nodebase::engine::SendReceipt| RunUpdate {
        run_id: receipt.run_ids[0].clone(),
        function_id: "announced".into(),
        user_id: Some("ada".into()),
        status: RunStatus::Queued,
    };
    let event = || NewEvent::new("test/announced", json!({})).for_user("ada");

    // Through the pool: committed, and announced before the send returns.
    let sent = sender.send(&t.db, event()).await.unwrap();
    assert_eq!(sent.functions, ["announced"]);
    assert_eq!(here.try_recv().unwrap(), queued(&sent));

    // In the caller's transaction: nothing until the caller has committed and says so.
    let txn = t.db.begin().await.unwrap();
    let in_txn = sender.send(&txn, event()).await.unwrap();
    assert!(here.try_recv().is_err());
    txn.commit().await.unwrap();
    assert!(here.try_recv().is_err());
    sender.announce(std::slice::from_ref(&in_txn)).await;
    assert_eq!(here.try_recv().unwrap(), queued(&in_txn));

    // A re-run and an invocation are announced as sends are.
    let invoked = sender.invoke(&t.db, "announced", event()).await.unwrap();
    assert_eq!(here.try_recv().unwrap(), queued(&invoked));
    if t.db.get_database_backend() == DbBackend::Postgres {
        // Another process hears of a send too (SQLite has one process).
        let other = Engine::builder(t.db.clone())
            .function(function())
            .config(fast())
            .build()
            .unwrap();
        let mut there = other.subscribe();
        let workers = other.start();
        // Its listener connects in the background: send until it hears a send.
        let heard = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let later = sender.send(&t.db, event()).await.unwrap();
                let deadline = tokio::time::sleep(Duration::from_millis(500));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        update = there.recv() => {
                            if update.unwrap() == queued(&later) {
                                return;
                            }
                        }
                        _ = &mut deadline => break,
                    }
                }
            }
        })
        .await;
        assert!(
            heard.is_ok(),
            "the other process never heard of a queued run"
        );
        workers.shutdown().await;
    }
}

/// On PostgreSQL a process tells the others of its runs' progress, and wakes them for
/// the events it sends, only while another process listens: alone it sends no notice;
/// one that starts listening hears the runs that follow; once that one stops, the first
/// counts it gone and is quiet again.
#[tokio::test]
async fn a_process_tells_its_runs_and_sends_only_while_another_listens() {
    let t = test_db().await;
    let engine = |db: &DatabaseConnection| {
        Engine::builder(db.clone())
            .function(Function::new("told", |_| async { Ok(json!(null)) }).trigger("test/told"))
            .config(fast())
            .build()
            .unwrap()
    };
    let worker = engine(&t.db);
    if !t.postgres() {
        assert!(!worker.tells_other_processes(), "SQLite has one process");
        return;
    }
    // Every notice on the channel, whoever sends it; this connection is no process's
    // listener, so it is not counted.
    let mut spy = PgListener::connect(&t.url).await.unwrap();
    spy.listen_all(["nodebase_runs", "nodebase_wake"])
        .await
        .unwrap();
    let mut updates = common::Updates::new(worker.subscribe());
    let workers = worker.start();
    let mut run = async || {
        let sent = worker
            .send(&t.db, NewEvent::new("test/told", json!({})))
            .await
            .unwrap();
        wait_for(&mut updates, &sent.run_ids[0], RunStatus::Completed).await;
        sent.run_ids[0].clone()
    };

    until(|| !worker.tells_other_processes()).await;
    let untold = run().await;

    let other_db = t.elsewhere().await;
    let other = engine(&other_db);
    let mut there = common::Updates::new(other.subscribe());
    let listening = other.listen();
    until(|| worker.tells_other_processes()).await;
    let told = run().await;
    wait_for(&mut there, &told, RunStatus::Completed).await;
    // The worker's notices in the order it sent them, up to the told run's end, and
    // the wake-up signals its sends gave.
    let mut wakes = 0;
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        let mut runs = Vec::new();
        loop {
            let notice = spy.recv().await.unwrap();
            if notice.channel() == "nodebase_wake" {
                wakes += usize::from(notice.payload() == worker.worker_id());
                continue;
            }
            let wire: serde_json::Value = serde_json::from_str(notice.payload()).unwrap();
            if wire["from"] != worker.worker_id() {
                continue;
            }
            for r in wire["runs"].as_array().unwrap() {
                runs.push(r["run"].as_str().unwrap().to_string());
                if r["run"] == told.as_str() && r["status"] == "completed" {
                    return runs;
                }
            }
        }
    })
    .await
    .expect("the worker's notice of the told run");
    assert!(
        !sent.contains(&untold),
        "told of a run while no other process listened"
    );
    assert_eq!(wakes, 1, "woke the others for the told run's send alone");

    listening.stop().await;
    until(|| !worker.tells_other_processes()).await;
    workers.shutdown().await;
}

/// On PostgreSQL one event sent through the pool to idle workers is recorded with its run
/// claimed by them already, and starts without a claim: here every claim is refused,
/// and the run still completes.
#[tokio::test]
async fn a_run_sent_to_idle_workers_starts_without_being_claimed() {
    let t = test_db().await;
    if !t.postgres() {
        return; // SQLite: its one writer claims as fast as a send could
    }
    let engine = polls_once_a_minute(&t.db);
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let send = || engine.send(&t.db, NewEvent::new("test/woken", json!({})));
    // The workers claim this one, and then have nothing more to do.
    let claimed = send().await.unwrap();
    wait_for(&mut updates, &claimed.run_ids[0], RunStatus::Completed).await;
    t.db.execute_unprepared(
        "CREATE FUNCTION refuse_claim() RETURNS trigger AS $$ BEGIN \
         RAISE EXCEPTION 'claims refused'; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_claim BEFORE UPDATE ON run FOR EACH ROW \
         WHEN (OLD.status = 'queued' AND NEW.status = 'running') \
         EXECUTE FUNCTION refuse_claim()",
    )
    .await
    .unwrap();
    let started = send().await.unwrap();
    wait_for(&mut updates, &started.run_ids[0], RunStatus::Completed).await;
    let run = run_row(&t.db, &started.run_ids[0]).await;
    assert_eq!((run.claims, run.started_at), (1, Some(run.created_at)));
    workers.shutdown().await;
}

/// Waits until `condition` holds (20 s at most).
async fn until(condition: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the condition never held");
}

/// A column added to `run` while the engine is up (a newer version's migration during a
/// rolling deploy) must not stop its claims: a claim that reads `*` was prepared with
/// the old columns, and its next run failed — on SQLite the driver's worker panicked on
/// the extra column and the claim never answered.
#[tokio::test]
async fn runs_are_still_claimed_after_another_connection_adds_a_column_to_run() {
    let t = test_db().await;
    let db = if t.url.starts_with("sqlite") {
        // One connection, so that every claim runs on the one that prepared the first.
        let mut opts = sea_orm::ConnectOptions::new(t.url.clone());
        opts.max_connections(1).min_connections(1);
        sea_orm::Database::connect(opts).await.unwrap()
    } else {
        // Claims go through the engine's lease pool: enough runs before and after the
        // change pass through each of its connections.
        t.db.clone()
    };
    let engine = Engine::builder(db.clone())
        .function(Function::new("plain", |_| async { Ok(json!("done")) }).trigger("test/plain"))
        .config(fast())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    one_by_one(&engine, &db, &mut updates, 8).await;

    // Another connection, as another process's migration would.
    let other = nodebase::db::connect(&t.url).await.unwrap();
    other
        .execute_unprepared("ALTER TABLE run ADD COLUMN added_later TEXT")
        .await
        .unwrap();
    drop(other);

    one_by_one(&engine, &db, &mut updates, 8).await;
    workers.shutdown().await;
}

/// Sends `n` events to `test/plain`, each once the run of the one before has completed.
async fn one_by_one(
    engine: &Engine,
    db: &DatabaseConnection,
    updates: &mut common::Updates,
    n: usize,
) {
    for _ in 0..n {
        let sent = engine
            .send(db, NewEvent::new("test/plain", json!({})))
            .await
            .unwrap();
        wait_for(updates, &sent.run_ids[0], RunStatus::Completed).await;
    }
}

/// An engine whose workers poll only once a minute: a run that starts in time was
/// started by a wake-up signal.
fn polls_once_a_minute(db: &DatabaseConnection) -> Engine {
    Engine::builder(db.clone())
        .function(Function::new("woken", |_| async { Ok(json!("ran")) }).trigger("test/woken"))
        .config(EngineConfig {
            poll: Duration::from_secs(60),
            ..fast()
        })
        .build()
        .unwrap()
}

/// Sends through `send` twice, each time waiting for the run to complete in `worker`'s
/// process, and fails if that took as long as a poll would. The first send also finds
/// the workers started (their listener connects, and wakes them, in its own time); the
/// second meets them idle.
async fn completes_without_polling<F, Fut>(worker: &Engine, send: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut updates = common::Updates::new(worker.subscribe());
    let workers = worker.start();
    for _ in 0..2 {
        let sent = Instant::now();
        let run_id = send().await;
        wait_for(&mut updates, &run_id, RunStatus::Completed).await;
        let took = sent.elapsed();
        assert!(
            took < Duration::from_secs(30),
            "started by the poll, not by the send: {took:?}"
        );
    }
    workers.shutdown().await;
}

#[tokio::test]
async fn a_run_sent_in_the_callers_transaction_starts_once_it_commits_without_polling() {
    let t = test_db().await;
    let engine = polls_once_a_minute(&t.db);
    completes_without_polling(&engine, || async {
        let txn = t.db.begin().await.unwrap();
        let receipt = engine
            .send(&txn, NewEvent::new("test/woken", json!({})))
            .await
            .unwrap();
        // The dispatcher may look before the commit and find nothing yet.
        tokio::time::sleep(Duration::from_millis(200)).await;
        txn.commit().await.unwrap();
        engine.announce(std::slice::from_ref(&receipt)).await;
        receipt.run_ids[0].clone()
    })
    .await;
}

/// On PostgreSQL the sender is another engine on its own pool, as another process would
/// be: its send tells every other process's workers, though its own skip the signal.
#[tokio::test]
async fn a_run_sent_by_another_process_starts_without_polling() {
    let t = test_db().await;
    let worker = polls_once_a_minute(&t.db);
    let sender_db = t.elsewhere().await;
    let sender = if t.postgres() {
        polls_once_a_minute(&sender_db)
    } else {
        worker.clone()
    };
    completes_without_polling(&worker, || async {
        let receipt = sender
            .send(&sender_db, NewEvent::new("test/woken", json!({})))
            .await
            .unwrap();
        receipt.run_ids[0].clone()
    })
    .await;
}
