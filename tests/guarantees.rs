//! The engine's guarantees where faults meet them: a claim fences its own writes, one
//! refused write costs only its own run, and step keys follow call order.
#![cfg(feature = "ssr")]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fast, refuse_steps_named, run_row, steps_of, test_db, wait_for, wait_for_all};
use nodebase::engine::{
    Engine, EngineConfig, EngineError, FnError, Function, ManualClock, NewEvent, RunStatus,
    StepStatus, Timeouts,
};
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Waits (polling the database) until `ready` holds for the run.
async fn until_run(
    db: &DatabaseConnection,
    run_id: &str,
    what: &str,
    ready: impl Fn(&nodebase::engine::entities::run::Model) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !ready(&run_row(db, run_id).await) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {run_id} never got to: {what}"));
}

fn output(run: &nodebase::engine::entities::run::Model) -> Value {
    serde_json::from_str(run.output.as_deref().expect("an output")).unwrap()
}

#[tokio::test]
async fn a_run_rescued_from_its_own_live_process_is_never_run_by_two_tasks() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let work_calls = Arc::new(AtomicUsize::new(0));
    let gate_calls = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let at_gate = Arc::new(Notify::new());
    let open_gate = Arc::new(Notify::new());
    let function = {
        let (work_calls, gate_calls) = (work_calls.clone(), gate_calls.clone());
        let (entered, release) = (entered.clone(), release.clone());
        let (at_gate, open_gate) = (at_gate.clone(), open_gate.clone());
        Function::new("blocked", move |ctx| {
            let (work_calls, gate_calls) = (work_calls.clone(), gate_calls.clone());
            let (entered, release) = (entered.clone(), release.clone());
            let (at_gate, open_gate) = (at_gate.clone(), open_gate.clone());
            async move {
                let work: String = ctx
                    .step
                    .run("work", || async move {
                        if work_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                            // The first call hangs past its lease (a blocked runtime, say).
                            entered.notify_one();
                            release.notified().await;
                            Ok("first".to_string())
                        } else {
                            Ok("second".to_string())
                        }
                    })
                    .await?;
                let gate = ctx
                    .step
                    .run("gate", || async move {
                        let n = gate_calls.fetch_add(1, Ordering::SeqCst) + 1;
                        if n == 1 {
                            // The first to get here waits until the test opens the gate.
                            at_gate.notify_one();
                            open_gate.notified().await;
                        }
                        Ok(n)
                    })
                    .await?;
                Ok(json!({ "work": work, "gate": gate }))
            }
        })
        .trigger("test/blocked")
    };
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .clock(clock.clone())
        .config(EngineConfig {
            // The rescuer looks every 500 ms, the first heartbeat comes at 900 ms: the
            // clock's jump below lapses the lease before any renewal.
            lease: Duration::from_secs(1),
            heartbeat: Duration::from_millis(900),
            ..fast()
        })
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/blocked", json!({})))
        .await
        .unwrap();
    let run_id = &receipt.run_ids[0];
    entered.notified().await;

    // The lease lapses while the process lives; its own rescuer re-queues the run and
    // its own dispatcher claims it again.
    // A heartbeat that comes between the jump and the rescuer's next look renews the
    // lease from the new time (a loaded machine reaches the jump after the first
    // heartbeat): jump again until the rescuer has seen it lapsed.
    let mut jumps = 0;
    loop {
        clock.advance(2_000);
        jumps += 1;
        let queued = wait_for(&mut updates, run_id, RunStatus::Queued);
        if tokio::time::timeout(Duration::from_millis(1_500), queued)
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            jumps < 10,
            "the lapsed lease was not rescued after {jumps} jumps"
        );
    }
    engine.wake();
    until_run(&t.db, run_id, "claimed a second time", |r| r.claims == 2).await;
    // A second task of the run, were one let loose, would now run "work" and stop at
    // the gate; then the first task, set free, would run on beside it.
    let _ = tokio::time::timeout(Duration::from_millis(300), at_gate.notified()).await;
    release.notify_one();
    open_gate.notify_one();
    wait_for(&mut updates, run_id, RunStatus::Completed).await;
    workers.shutdown().await;

    let run = run_row(&t.db, run_id).await;
    let steps = steps_of(&t.db, run_id).await;
    let work = steps.iter().find(|s| s.step_id == "work").unwrap();
    assert_eq!(
        output(&run)["work"],
        serde_json::from_str::<Value>(work.output.as_deref().unwrap()).unwrap(),
        "the run's output used the recorded result of \"work\""
    );
    assert_eq!(output(&run)["gate"], json!(1), "{run:?}");
    assert_eq!(gate_calls.load(Ordering::SeqCst), 1, "gate ran once");
}

#[tokio::test]
async fn parallel_steps_are_keyed_by_call_order_and_replay_their_own_outputs() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let function = Function::new("parallel", |ctx| async move {
        ctx.step.run("first", || async { Ok(0) }).await?;
        let slow = ctx.step.run("p", || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(1)
        });
        let fast = ctx.step.run("p", || async { Ok(2) });
        let (slow, fast) = futures::join!(slow, fast);
        let (slow, fast): (i32, i32) = (slow?, fast?);
        ctx.step.sleep("nap", Duration::from_secs(60)).await?;
        Ok(json!([slow, fast]))
    })
    .trigger("test/parallel");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .clock(clock.clone())
        .config(fast())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/parallel", json!({})))
        .await
        .unwrap();
    let run_id = &receipt.run_ids[0];
    wait_for(&mut updates, run_id, RunStatus::Sleeping).await;
    clock.advance(60_000);
    engine.wake();
    wait_for(&mut updates, run_id, RunStatus::Completed).await;
    workers.shutdown().await;

    assert_eq!(output(&run_row(&t.db, run_id).await), json!([1, 2]));
    let keyed: Vec<(String, Option<String>)> = steps_of(&t.db, run_id)
        .await
        .into_iter()
        .map(|s| (s.step_id, s.output))
        .collect();
    assert!(keyed.contains(&("p".into(), Some("1".into()))), "{keyed:?}");
    assert!(
        keyed.contains(&("p:1".into(), Some("2".into()))),
        "{keyed:?}"
    );
}

#[tokio::test]
async fn generated_step_keys_never_collide_with_chosen_ids() {
    let t = test_db().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let function = Function::new("colliding", move |ctx| {
        let c = c.clone();
        async move {
            let mut seen = Vec::new();
            for (id, value) in [("a:1", "x"), ("a", "y"), ("a", "z")] {
                let c = c.clone();
                let got: String = ctx
                    .step
                    .run(id, || async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        Ok(value.to_string())
                    })
                    .await?;
                seen.push(got);
            }
            Ok(json!(seen))
        }
    })
    .trigger("test/colliding");
    let run_id = run_to(&t.db, function, "test/colliding", RunStatus::Completed).await;
    assert_eq!(
        output(&run_row(&t.db, &run_id).await),
        json!(["x", "y", "z"])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let mut keys: Vec<String> = steps_of(&t.db, &run_id)
        .await
        .into_iter()
        .map(|s| s.step_id)
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 3, "{keys:?}");
}

#[tokio::test]
async fn a_write_the_database_refuses_costs_only_its_own_run() {
    let t = test_db().await;
    refuse_steps_named(&t.db, "poison").await;
    // How often each run's step closure ran.
    let effects: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let e = effects.clone();
    let function = Function::new("mixed", move |ctx| {
        let e = e.clone();
        async move {
            let poisoned = ctx.event.data["poison"].as_bool().unwrap_or(false);
            let name = if poisoned { "poison" } else { "work" };
            let run_id = ctx.run_id.clone();
            ctx.step
                .run(name, || async move {
                    // Long enough that the runs' records pile up in one group commit.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    *e.lock().unwrap().entry(run_id).or_default() += 1;
                    Ok(())
                })
                .await?;
            Ok(json!("done"))
        }
    })
    .trigger("test/mixed");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(EngineConfig {
            workers: 32,
            ..fast()
        })
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let events: Vec<NewEvent> = (0..20)
        .map(|i| NewEvent::new("test/mixed", json!({ "poison": i == 7 })))
        .collect();
    let receipts = engine.send_many(&t.db, events).await.unwrap();
    let good: Vec<String> = receipts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, r)| r.run_ids[0].clone())
        .collect();
    wait_for_all(&mut updates, &good, RunStatus::Completed).await;
    let bad = &receipts[7].run_ids[0];
    // The refused run is handed back at once, with the database's reason, and fails
    // once it has been claimed too often without recording anything.
    wait_for(&mut updates, bad, RunStatus::Failed).await;
    workers.shutdown().await;

    let effects = effects.lock().unwrap().clone();
    for run_id in &good {
        let steps = steps_of(&t.db, run_id).await;
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].status, StepStatus::Completed);
        assert_eq!(effects.get(run_id), Some(&1), "no good run lost its result");
    }
    let bad = run_row(&t.db, bad).await;
    let error = bad.error.unwrap_or_default();
    assert!(
        error.contains("without recording any progress") && error.contains("refused"),
        "{error}"
    );
    assert!(steps_of(&t.db, &bad.id).await.is_empty());
}

#[tokio::test]
async fn text_a_database_cannot_store_is_refused_or_escaped_where_it_enters() {
    let t = test_db().await;
    let function = Function::new("nul", |ctx| async move {
        if ctx.event.data["in_id"].as_bool().unwrap_or(false) {
            ctx.step.run("bad\0id", || async { Ok(1) }).await?;
        } else {
            ctx.step
                .run("fails", || async {
                    Err::<i32, _>(FnError::non_retriable("bo\0om"))
                })
                .await?;
        }
        Ok(json!("unreachable"))
    })
    .trigger("test/nul");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(fast())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let in_id = engine
        .send(&t.db, NewEvent::new("test/nul", json!({ "in_id": true })))
        .await
        .unwrap();
    let in_error = engine
        .send(&t.db, NewEvent::new("test/nul", json!({ "in_id": false })))
        .await
        .unwrap();
    let ids = vec![in_id.run_ids[0].clone(), in_error.run_ids[0].clone()];
    wait_for_all(&mut updates, &ids, RunStatus::Failed).await;
    workers.shutdown().await;

    let refused = run_row(&t.db, &ids[0]).await;
    assert!(
        refused.error.as_deref().unwrap().contains("step id"),
        "{refused:?}"
    );
    let escaped = run_row(&t.db, &ids[1]).await;
    let error = escaped.error.unwrap();
    assert!(error.contains("bo") && error.contains("om") && !error.contains('\0'));
    let steps = steps_of(&t.db, &ids[1]).await;
    assert!(!steps[0].error.as_deref().unwrap().contains('\0'));
}

#[tokio::test]
async fn a_step_that_outlives_its_timeout_is_retried_then_fails_with_the_reason() {
    let t = test_db().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let function = Function::new("hangs", move |ctx| {
        let c = c.clone();
        async move {
            ctx.step
                .run_with_timeout("hang", Duration::from_millis(100), || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    Ok(())
                })
                .await?;
            Ok(json!("unreachable"))
        }
    })
    .trigger("test/hangs")
    .retries(1);
    let run_id = run_to(&t.db, function, "test/hangs", RunStatus::Failed).await;
    let run = run_row(&t.db, &run_id).await;
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("timed out after 100ms"),
        "{run:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one try and one retry");
}

#[tokio::test]
async fn a_run_past_its_finish_timeout_fails_and_frees_its_worker() {
    let t = test_db().await;
    let function = Function::new("slow", |ctx| async move {
        ctx.step.run("first", || async { Ok(1) }).await?;
        std::future::pending::<()>().await;
        Ok(json!("unreachable"))
    })
    .trigger("test/slow")
    .timeouts(Timeouts {
        finish: Some(Duration::from_millis(200)),
        ..Timeouts::default()
    });
    let run_id = run_to(&t.db, function, "test/slow", RunStatus::Failed).await;
    let error = run_row(&t.db, &run_id).await.error.unwrap();
    assert!(error.contains("did not finish within 0.2 s"), "{error}");
}

#[tokio::test]
async fn a_run_that_waited_too_long_to_start_fails_without_running() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let function = Function::new("late", move |_| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(json!(1))
        }
    })
    .trigger("test/late")
    .timeouts(Timeouts {
        start: Some(Duration::from_secs(60)),
        ..Timeouts::default()
    });
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .clock(clock.clone())
        .config(fast())
        .build()
        .unwrap();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/late", json!({})))
        .await
        .unwrap();
    // No worker ran for two minutes.
    clock.advance(120_000);
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    wait_for(&mut updates, &receipt.run_ids[0], RunStatus::Failed).await;
    workers.shutdown().await;
    let error = run_row(&t.db, &receipt.run_ids[0]).await.error.unwrap();
    assert!(error.contains("did not start within 60 s"), "{error}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn cancel_interrupts_a_running_step_frees_its_slot_and_says_who() {
    let t = test_db().await;
    let started = Arc::new(Notify::new());
    let s = started.clone();
    let blocker = Function::new("blocker", move |ctx| {
        let s = s.clone();
        async move {
            ctx.step
                .run("forever", || async move {
                    s.notify_one();
                    std::future::pending::<()>().await;
                    Ok(())
                })
                .await?;
            Ok(json!("unreachable"))
        }
    })
    .trigger("test/blocker");
    let quick = Function::new("quick", |_| async { Ok(json!("quick")) }).trigger("test/quick");
    let engine = Engine::builder(t.db.clone())
        .function(blocker)
        .function(quick)
        .config(EngineConfig {
            workers: 1,
            ..fast()
        })
        .build()
        .unwrap();
    // On PostgreSQL the cancel comes from another engine, as from a web process.
    let canceller = if t.url.starts_with("postgres") {
        let db = nodebase::db::connect(&t.url).await.unwrap();
        Engine::builder(db).config(fast()).build().unwrap()
    } else {
        engine.clone()
    };
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let blocked = engine
        .send(&t.db, NewEvent::new("test/blocker", json!({})))
        .await
        .unwrap();
    started.notified().await;
    assert!(canceller
        .cancel_by(&blocked.run_ids[0], Some("ada@example.com"))
        .await
        .unwrap());
    // The only worker slot is free again: another run gets through.
    let next = engine
        .send(&t.db, NewEvent::new("test/quick", json!({})))
        .await
        .unwrap();
    wait_for(&mut updates, &next.run_ids[0], RunStatus::Completed).await;
    workers.shutdown().await;

    let run = run_row(&t.db, &blocked.run_ids[0]).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.cancelled_by.as_deref(), Some("ada@example.com"));
    assert!(run.ended_at.is_some());
}

#[tokio::test]
async fn cancelling_a_sleeping_run_ends_its_sleeping_step() {
    let t = test_db().await;
    let function = Function::new("sleeper", |ctx| async move {
        ctx.step.sleep("nap", Duration::from_secs(3600)).await?;
        Ok(json!(1))
    })
    .trigger("test/sleeper");
    let run_id = run_to(&t.db, function, "test/sleeper", RunStatus::Sleeping).await;
    let engine = Engine::builder(t.db.clone())
        .config(fast())
        .build()
        .unwrap();
    assert!(engine.cancel(&run_id).await.unwrap());
    let steps = steps_of(&t.db, &run_id).await;
    assert_eq!(steps[0].status, StepStatus::Failed);
    assert_eq!(steps[0].error.as_deref(), Some("the run was cancelled"));
}

/// Runs `function` alone for one event named `name` until its run is `status`.
async fn run_to(
    db: &DatabaseConnection,
    function: Function,
    name: &str,
    status: RunStatus,
) -> String {
    let engine = Engine::builder(db.clone())
        .function(function)
        .config(fast())
        .build()
        .unwrap();
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine
        .send(db, NewEvent::new(name, json!({})))
        .await
        .unwrap();
    wait_for(&mut updates, &receipt.run_ids[0], status).await;
    workers.shutdown().await;
    receipt.run_ids[0].clone()
}

#[tokio::test]
async fn a_run_whose_event_cannot_be_read_fails_alone() {
    let t = test_db().await;
    let function =
        Function::new("reader", |ctx| async move { Ok(ctx.event.data) }).trigger("test/reader");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(fast())
        .build()
        .unwrap();
    // Stored fine, but deeper than the JSON reader accepts.
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let events = vec![
        NewEvent::new("test/reader", deep),
        NewEvent::new("test/reader", json!({ "ok": true })),
    ];
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipts = engine.send_many(&t.db, events).await.unwrap();
    wait_for(&mut updates, &receipts[1].run_ids[0], RunStatus::Completed).await;
    wait_for(&mut updates, &receipts[0].run_ids[0], RunStatus::Failed).await;
    workers.shutdown().await;
    let error = run_row(&t.db, &receipts[0].run_ids[0]).await.error.unwrap();
    assert!(error.contains("its event cannot be read"), "{error}");
}

#[tokio::test]
async fn a_run_of_a_function_this_process_lacks_waits_for_one_that_has_it() {
    let t = test_db().await;
    let known =
        || Function::new("new-function", |_| async { Ok(json!("ran")) }).trigger("test/new");
    let other = Function::new("old-function", |_| async { Ok(json!(0)) }).trigger("test/old");
    // A process of the previous release, without the new function, claims its run.
    let old = Engine::builder(t.db.clone())
        .function(other)
        .config(fast())
        .build()
        .unwrap();
    let new = Engine::builder(t.db.clone())
        .function(known())
        .config(fast())
        .build()
        .unwrap();
    let receipt = new
        .invoke(&t.db, "new-function", NewEvent::new("test/new", json!({})))
        .await
        .unwrap();
    let run_id = &receipt.run_ids[0];
    let mut old_updates = common::Updates::new(old.subscribe());
    let old_workers = old.start();
    wait_for(&mut old_updates, run_id, RunStatus::Queued).await;
    old_workers.shutdown().await;
    let waiting = run_row(&t.db, run_id).await;
    assert_eq!(waiting.status, RunStatus::Queued);
    assert!(waiting.error.unwrap().contains("waiting for a process"));
    assert_eq!(waiting.stalled_claims, 0, "handing back is not a stall");

    // A process that has it runs it.
    let mut updates = common::Updates::new(new.subscribe());
    let workers = new.start();
    new.wake();
    wait_for(&mut updates, run_id, RunStatus::Completed).await;
    workers.shutdown().await;
    let done = run_row(&t.db, run_id).await;
    assert_eq!(done.error, None, "a completed run keeps no earlier error");

    // Past the grace period, a process without it fails the run with the reason.
    let late = Engine::builder(t.db.clone())
        .function(Function::new("old-function", |_| async { Ok(json!(0)) }).trigger("test/old"))
        .config(EngineConfig {
            unknown_function_grace: Duration::ZERO,
            ..fast()
        })
        .build()
        .unwrap();
    let orphan = new
        .invoke(&t.db, "new-function", NewEvent::new("test/new", json!({})))
        .await
        .unwrap();
    let mut late_updates = common::Updates::new(late.subscribe());
    let late_workers = late.start();
    wait_for(&mut late_updates, &orphan.run_ids[0], RunStatus::Failed).await;
    late_workers.shutdown().await;
    let error = run_row(&t.db, &orphan.run_ids[0]).await.error.unwrap();
    assert!(error.contains("has a function \"new-function\""), "{error}");
}

#[tokio::test]
async fn smaller_guards_overflow_heartbeat_triggers_and_keys() {
    let t = test_db().await;
    // A retry "after forever" parks the run far ahead instead of overflowing.
    let forever = Function::new("forever", |ctx| async move {
        ctx.step
            .run("later", || async {
                Err::<(), _>(FnError::retry_after(Duration::MAX, "not now"))
            })
            .await?;
        Ok(json!(1))
    })
    .trigger("test/forever");
    let run_id = run_to(&t.db, forever, "test/forever", RunStatus::Queued).await;
    assert_eq!(run_row(&t.db, &run_id).await.due_at, i64::MAX);

    // A heartbeat no shorter than the lease is refused.
    let refused = Engine::builder(t.db.clone())
        .config(EngineConfig {
            heartbeat: Duration::from_secs(30),
            lease: Duration::from_secs(30),
            ..fast()
        })
        .build();
    assert!(matches!(refused, Err(EngineError::InvalidConfig(_))));

    // The same trigger given twice starts one run per event.
    let twice = Function::new("twice", |_| async { Ok(json!(1)) })
        .trigger("test/twice")
        .trigger("test/twice");
    let engine = Engine::builder(t.db.clone())
        .function(twice)
        .config(fast())
        .build()
        .unwrap();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/twice", json!({})))
        .await
        .unwrap();
    assert_eq!(receipt.run_ids.len(), 1);

    // Idempotency keys are per user: B's send with A's key is B's own event.
    let a = engine
        .send(
            &t.db,
            NewEvent::new("test/twice", json!({}))
                .for_user("a")
                .idempotency_key("k"),
        )
        .await
        .unwrap();
    let b = engine
        .send(
            &t.db,
            NewEvent::new("test/twice", json!({}))
                .for_user("b")
                .idempotency_key("k"),
        )
        .await
        .unwrap();
    assert!(!b.duplicate);
    assert_ne!(a.event_id, b.event_id);
    let again = engine
        .send(
            &t.db,
            NewEvent::new("test/twice", json!({}))
                .for_user("b")
                .idempotency_key("k"),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.event_id, b.event_id);
    assert_eq!(again.run_ids, b.run_ids);
}
