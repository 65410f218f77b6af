//! Priority on a real database: a run given a head start is claimed before the runs sent
//! in that window, by the plain claim and by the gated one (a concurrency limit); the
//! head start is capped and never a delay; bad settings are refused.
#![cfg(feature = "ssr")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fast, run_row, test_db, wait_for_all, Updates};
use nodebase::engine::{
    Debounce, Engine, EngineConfig, Function, ManualClock, NewEvent, Priority, RunStatus,
};
use serde_json::json;

const T: i64 = 1_000_000;

/// A function whose runs note their event's `data.name` when they start, in order.
fn noting(started: &Arc<Mutex<Vec<String>>>) -> Function {
    let started = started.clone();
    Function::new("noted", move |ctx| {
        let started = started.clone();
        async move {
            let name = ctx.event.data["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            started.lock().unwrap().push(name.clone());
            Ok(json!(name))
        }
    })
    .trigger("test/noted")
    .priority(Priority::head_start("event.data.boost"))
}

fn note(name: &str, boost: i64) -> NewEvent {
    NewEvent::new("test/noted", json!({ "name": name, "boost": boost })).for_user("ann")
}

/// Sends five runs a second apart — the fourth with a 10 s head start, the fifth with
/// 2 s — before any worker runs, then lets one worker take them one at a time.
async fn started_in_order(function: Function, started: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(EngineConfig {
            workers: 1,
            batch: 1,
            ..fast()
        })
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut run_ids = Vec::new();
    for (name, boost) in [("a", 0), ("b", 0), ("c", 0), ("pro", 10), ("soon", 2)] {
        let receipt = engine.send(&t.db, note(name, boost)).await.unwrap();
        run_ids.extend(receipt.run_ids);
        clock.advance(1_000);
    }
    // Queued as if sent earlier; the event and the run's creation keep the real time.
    let pro = run_row(&t.db, &run_ids[3]).await;
    assert_eq!(pro.due_at, T + 3_000 - 10_000);
    assert_eq!(pro.created_at, T + 3_000);
    assert_eq!(run_row(&t.db, &run_ids[4]).await.due_at, T + 4_000 - 2_000);

    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    wait_for_all(&mut updates, &run_ids, RunStatus::Completed).await;
    workers.shutdown().await;
    let order = started.lock().unwrap().clone();
    order
}

#[tokio::test]
async fn a_head_start_puts_a_run_ahead_of_those_sent_in_its_window() {
    let started = Arc::new(Mutex::new(Vec::new()));
    let order = started_in_order(noting(&started), &started).await;
    // pro is due at T-7s, before everything; soon at T+2s, with c.
    assert_eq!(order[0], "pro");
    assert_eq!(order[1..3], ["a", "b"]);
    assert_eq!(order.len(), 5);
}

#[tokio::test]
async fn the_gated_claim_takes_runs_in_the_same_order() {
    let started = Arc::new(Mutex::new(Vec::new()));
    let order = started_in_order(noting(&started).concurrency(1), &started).await;
    assert_eq!(order[0], "pro");
    assert_eq!(order[1..3], ["a", "b"]);
    assert_eq!(order.len(), 5);
}

#[tokio::test]
async fn a_head_start_is_capped_and_never_a_delay() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let started = Arc::new(Mutex::new(Vec::new()));
    let engine = Engine::builder(t.db.clone())
        .function(noting(&started))
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let due = |boost: serde_json::Value| {
        let (engine, db) = (&engine, &t.db);
        async move {
            let event = NewEvent::new("test/noted", json!({ "name": "x", "boost": boost }));
            let receipt = engine.send(db, event).await.unwrap();
            run_row(db, &receipt.run_ids[0]).await.due_at
        }
    };
    assert_eq!(due(json!(3_600)).await, T - 600_000, "at most 600 s");
    assert_eq!(due(json!(-60)).await, T, "a negative priority is none");
    assert_eq!(due(json!("high")).await, T, "not a number: none");
    assert_eq!(due(json!(null)).await, T);
}

#[tokio::test]
async fn bad_priorities_are_refused_when_the_engine_is_built() {
    let t = test_db().await;
    let started = Arc::new(Mutex::new(Vec::new()));
    let refused = [
        (
            noting(&started).priority(Priority::head_start("event.")),
            "priority: \"event.\" is not valid CEL",
        ),
        (
            noting(&started).debounce(Debounce::new(Duration::from_secs(3))),
            "a debounced function cannot also have a priority",
        ),
    ];
    common::assert_refused(&t.db, refused.into());
}
