//! `step.wait_for_event` on a real database: matching by field and by CEL condition,
//! per user, timeouts, the lookback window, one event per wait, and wake-ups across
//! processes by notification alone.
#![cfg(feature = "ssr")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fast, run_row, steps_of, test_db, wait_for};
use nodebase::engine::{
    Engine, EngineConfig, Function, ManualClock, NewEvent, RunStatus, StepKind, StepStatus, WaitFor,
};
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};

const HOUR: Duration = Duration::from_secs(3600);

/// Waits for `test/decided` with the same `data.request_id` (and, if given, `when`),
/// and returns what it got.
fn approval(lookback: Duration, when: Option<&'static str>) -> Function {
    Function::new("approval", move |ctx| async move {
        let mut wait = WaitFor::event("test/decided", HOUR)
            .matching("data.request_id")
            .lookback(lookback);
        if let Some(when) = when {
            wait = wait.when(when);
        }
        let decision = ctx.step.wait_for_event("decision", wait).await?;
        Ok(match decision {
            Some(event) => json!({ "approved": event.data["approved"], "event": event.id }),
            None => json!({ "approved": null, "timed_out": true }),
        })
    })
    .trigger("test/requested")
    .waits_for("test/decided")
}

fn engine(db: &DatabaseConnection, function: Function, clock: Option<Arc<ManualClock>>) -> Engine {
    let mut builder = Engine::builder(db.clone())
        .function(function)
        .config(fast());
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder.build().unwrap()
}

fn requested(user: &str, request_id: &str) -> NewEvent {
    NewEvent::new(
        "test/requested",
        json!({ "request_id": request_id, "limit": 10 }),
    )
    .for_user(user)
}

fn decided(user: &str, request_id: &str, approved: bool) -> NewEvent {
    NewEvent::new(
        "test/decided",
        json!({ "request_id": request_id, "approved": approved, "amount": 5 }),
    )
    .for_user(user)
}

fn output(run: &nodebase::engine::entities::run::Model) -> Value {
    serde_json::from_str(run.output.as_deref().unwrap_or("null")).unwrap()
}

#[tokio::test]
async fn only_the_same_users_event_with_the_same_field_ends_a_wait() {
    let t = test_db().await;
    let engine = engine(&t.db, approval(Duration::ZERO, None), None);
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let run_id = engine
        .send(&t.db, requested("u1", "r1"))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    let steps = steps_of(&t.db, &run_id).await;
    assert_eq!(
        (steps[0].kind, steps[0].status),
        (StepKind::Wait, StepStatus::Waiting)
    );

    // Another request's decision, and another user's decision of the same request id.
    engine
        .send(&t.db, decided("u1", "r2", false))
        .await
        .unwrap();
    engine
        .send(&t.db, decided("u2", "r1", false))
        .await
        .unwrap();
    let right = engine.send(&t.db, decided("u1", "r1", true)).await.unwrap();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;

    let run = run_row(&t.db, &run_id).await;
    assert_eq!(
        output(&run),
        json!({ "approved": true, "event": right.event_id })
    );
    let step = &steps_of(&t.db, &run_id).await[0];
    assert_eq!(step.status, StepStatus::Completed);
    let saved: Value = serde_json::from_str(step.output.as_deref().unwrap()).unwrap();
    assert_eq!(saved["id"], json!(right.event_id));
}

#[tokio::test]
async fn a_cel_condition_must_hold_too() {
    let t = test_db().await;
    let function = approval(Duration::ZERO, Some("async.data.amount > event.data.limit"));
    let engine = engine(&t.db, function, None);
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let run_id = engine
        .send(&t.db, requested("u1", "r1"))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    // amount 5 is not above the limit of 10.
    engine
        .send(&t.db, decided("u1", "r1", false))
        .await
        .unwrap();
    let big = NewEvent::new(
        "test/decided",
        json!({ "request_id": "r1", "approved": true, "amount": 50 }),
    )
    .for_user("u1");
    let big = engine.send(&t.db, big).await.unwrap();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;
    let run = run_row(&t.db, &run_id).await;
    assert_eq!(
        output(&run),
        json!({ "approved": true, "event": big.event_id })
    );
}

#[tokio::test]
async fn a_wait_times_out_with_none_and_a_later_event_changes_nothing() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let engine = engine(&t.db, approval(Duration::ZERO, None), Some(clock.clone()));
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let run_id = engine
        .send(&t.db, requested("u1", "r1"))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    assert_eq!(run_row(&t.db, &run_id).await.due_at, 1_000_000 + 3_600_000);

    clock.advance(3_600_000);
    engine.wake();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    engine.send(&t.db, decided("u1", "r1", true)).await.unwrap();
    workers.shutdown().await;
    let run = run_row(&t.db, &run_id).await;
    assert_eq!(output(&run), json!({ "approved": null, "timed_out": true }));
    assert_eq!(
        steps_of(&t.db, &run_id).await[0].output.as_deref(),
        Some("null")
    );
}

/// Sends the decision 1 ms before the request whose run waits for it.
async fn decision_sent_just_before_the_wait(lookback: Duration) -> (Value, String) {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(5_000_000));
    let engine = engine(&t.db, approval(lookback, None), Some(clock.clone()));
    let mut updates = common::Updates::new(engine.subscribe());
    let early = engine.send(&t.db, decided("u1", "r1", true)).await.unwrap();
    clock.advance(1);
    let workers = engine.start();
    let run_id = engine
        .send(&t.db, requested("u1", "r1"))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    if lookback.is_zero() {
        clock.advance(3_600_000);
        engine.wake();
    }
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;
    (output(&run_row(&t.db, &run_id).await), early.event_id)
}

#[tokio::test]
async fn an_event_sent_1_ms_before_the_wait_matches_when_the_lookback_covers_it() {
    let (output, early) = decision_sent_just_before_the_wait(Duration::from_secs(1)).await;
    assert_eq!(output, json!({ "approved": true, "event": early }));
}

#[tokio::test]
async fn without_a_lookback_an_event_sent_before_the_wait_does_not_match() {
    let (output, _) = decision_sent_just_before_the_wait(Duration::ZERO).await;
    assert_eq!(output, json!({ "approved": null, "timed_out": true }));
}

#[tokio::test]
async fn two_waits_of_one_run_never_take_the_same_event() {
    let t = test_db().await;
    let function = Function::new("twice", |ctx| async move {
        let wait = || WaitFor::event("test/decided", HOUR).lookback(HOUR);
        let first = ctx.step.wait_for_event("first", wait()).await?;
        let second = ctx.step.wait_for_event("second", wait()).await?;
        Ok(json!([first.map(|e| e.id), second.map(|e| e.id)]))
    })
    .trigger("test/requested")
    .waits_for("test/decided");
    let engine = engine(&t.db, function, None);
    let mut updates = common::Updates::new(engine.subscribe());
    let workers = engine.start();
    let one = engine.send(&t.db, decided("u1", "r1", true)).await.unwrap();
    let run_id = engine
        .send(&t.db, requested("u1", "r1"))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    // The first wait takes `one` by looking back; the second must wait for another.
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    let mut steps = steps_of(&t.db, &run_id).await;
    for _ in 0..100 {
        if steps.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        steps = steps_of(&t.db, &run_id).await;
    }
    assert_eq!(steps.len(), 2, "the second wait opened");
    assert_eq!(steps[1].status, StepStatus::Waiting);
    let two = engine.send(&t.db, decided("u1", "r1", true)).await.unwrap();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;
    let run = run_row(&t.db, &run_id).await;
    assert_eq!(output(&run), json!([one.event_id, two.event_id]));
}

#[tokio::test]
async fn bad_waits_fail_the_run_with_a_clear_error() {
    let t = test_db().await;
    /// A function id, the wait it asks for, and what its run's error must say.
    type Case = (&'static str, fn() -> WaitFor, &'static str);
    let cases: [Case; 4] = [
        (
            "undeclared",
            || WaitFor::event("test/other", HOUR),
            "add .waits_for(\"test/other\")",
        ),
        (
            "bad-cel",
            || WaitFor::event("test/decided", HOUR).when("async.data.amount <"),
            "is not valid CEL",
        ),
        (
            "no-field",
            || WaitFor::event("test/decided", HOUR).matching("data.missing"),
            "has no string, number or bool there",
        ),
        (
            "too-long",
            || WaitFor::event("test/decided", Duration::from_secs(366 * 24 * 3600)),
            "between 1 ms and 365 days",
        ),
    ];
    for (id, wait, expected) in cases {
        let function = Function::new(id, move |ctx| async move {
            ctx.step.wait_for_event("w", wait()).await?;
            Ok(json!(null))
        })
        .trigger("test/requested")
        .waits_for("test/decided");
        let engine = engine(&t.db, function, None);
        let mut updates = common::Updates::new(engine.subscribe());
        let workers = engine.start();
        let run_id = engine
            .send(&t.db, requested("u1", "r1"))
            .await
            .unwrap()
            .run_ids[0]
            .clone();
        wait_for(&mut updates, &run_id, RunStatus::Failed).await;
        workers.shutdown().await;
        let error = run_row(&t.db, &run_id).await.error.unwrap_or_default();
        assert!(error.contains(expected), "{id}: {error}");
    }
}

/// The waiting run is in one engine (on PostgreSQL, its own connection pool, as another
/// process would be) and the decision is sent through another. Both poll only once a
/// minute, so only the notification can wake the run in time.
#[tokio::test]
async fn a_decision_sent_elsewhere_wakes_the_run_without_polling() {
    let t = test_db().await;
    let slow_poll = EngineConfig {
        poll: Duration::from_secs(60),
        ..fast()
    };
    let waiter = Engine::builder(t.db.clone())
        .function(approval(Duration::ZERO, None))
        .config(slow_poll.clone())
        .build()
        .unwrap();
    let sender_db = t.elsewhere().await;
    let sender = if t.postgres() {
        Engine::builder(sender_db.clone())
            .function(approval(Duration::ZERO, None))
            .config(slow_poll)
            .build()
            .unwrap()
    } else {
        waiter.clone()
    };
    let mut updates = common::Updates::new(waiter.subscribe());
    let workers = waiter.start();
    let run_id = waiter
        .send(&t.db, requested("u1", "r1"))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    let sent = Instant::now();
    sender
        .send(&sender_db, decided("u1", "r1", true))
        .await
        .unwrap();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    let took = sent.elapsed();
    workers.shutdown().await;
    assert!(
        took < Duration::from_secs(30),
        "woken by the poll, not by the send: {took:?}"
    );
    eprintln!("decision sent -> run completed: {took:?}");
}

#[tokio::test]
async fn a_decision_sent_while_no_worker_runs_is_matched_after_a_restart() {
    let t = test_db().await;
    let first = engine(&t.db, approval(Duration::ZERO, None), None);
    let mut updates = common::Updates::new(first.subscribe());
    let workers = first.start();
    let run_id = first
        .send(&t.db, requested("u1", "r1"))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &run_id, RunStatus::Sleeping).await;
    workers.shutdown().await;
    drop(first);

    // The decision arrives while nothing runs: it is kept, pending.
    let db = nodebase::db::connect(&t.url).await.unwrap();
    let second = engine(&db, approval(Duration::ZERO, None), None);
    let decision = second.send(&db, decided("u1", "r1", true)).await.unwrap();
    assert_eq!(run_row(&db, &run_id).await.status, RunStatus::Sleeping);

    let mut updates = common::Updates::new(second.subscribe());
    let workers = second.start();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;
    let run = run_row(&db, &run_id).await;
    assert_eq!(
        output(&run),
        json!({ "approved": true, "event": decision.event_id })
    );
}
