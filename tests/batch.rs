//! Batching on a real database: a function's events are gathered, per user, into runs
//! of up to N events — a full batch starts at once, a partial one at its timeout — and
//! the handler gets them all in order; concurrent sends from several engines fill
//! batches without losing or repeating an event or overfilling one; the dashboard says
//! a run waits for its batch; bad settings are refused when the engine is built.
#![cfg(feature = "ssr")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast, run_row, test_db, wait_for, Updates};
use nodebase::engine::entities::run;
use nodebase::engine::{
    Batch, Debounce, Engine, Function, ManualClock, NewEvent, Priority, RunStatus,
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{json, Value};

const T: i64 = 1_000_000;

/// Outputs the `data.i` of every event of its run, in order, and its first event's.
fn gather(batch: Batch) -> Function {
    Function::new("gather", |ctx| async move {
        let seen: Vec<Value> = ctx.events.iter().map(|e| e.data["i"].clone()).collect();
        Ok(json!({ "seen": seen, "first": ctx.event.data["i"] }))
    })
    .trigger("test/item")
    .batch(batch)
}

fn item(user: &str, i: u32) -> NewEvent {
    NewEvent::new("test/item", json!({ "i": i })).for_user(user)
}

fn engine(db: &DatabaseConnection, clock: &Arc<ManualClock>) -> Engine {
    Engine::builder(db.clone())
        .function(gather(Batch::new(3, Duration::from_secs(5))))
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap()
}

async fn output(db: &DatabaseConnection, run_id: &str) -> Value {
    let row = run_row(db, run_id).await;
    serde_json::from_str(row.output.as_deref().expect("an output")).unwrap()
}

async fn runs(db: &DatabaseConnection) -> Vec<run::Model> {
    run::Entity::find()
        .filter(run::Column::FunctionId.eq("gather"))
        .all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_batch_starts_at_once_and_a_partial_one_at_its_timeout() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let engine = engine(&t.db, &clock);
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();

    let mut run_ids = Vec::new();
    for i in 0..5 {
        let receipt = engine.send(&t.db, item("ann", i)).await.unwrap();
        run_ids.extend(receipt.run_ids);
        clock.advance(100);
    }
    assert_eq!(run_ids[0], run_ids[1]);
    assert_eq!(run_ids[0], run_ids[2]);
    assert_ne!(run_ids[2], run_ids[3], "the fourth event opens a new batch");
    assert_eq!(run_ids[3], run_ids[4]);
    assert_eq!(runs(&t.db).await.len(), 2);

    // The full batch is due at once, with its three events in order.
    wait_for(&mut updates, &run_ids[0], RunStatus::Completed).await;
    assert_eq!(
        output(&t.db, &run_ids[0]).await,
        json!({ "seen": [0, 1, 2], "first": 0 })
    );
    // The second waits for more, and says so, until 5 s after its first event.
    let open = run_row(&t.db, &run_ids[3]).await;
    assert_eq!(open.status, RunStatus::Queued);
    assert_eq!(open.due_at, T + 300 + 5_000);
    let held = engine.held_back(std::slice::from_ref(&open)).await.unwrap();
    let why = held.get(&open.id).expect("held back");
    assert_eq!(why.by, "batch");
    assert_eq!(why.detail, "2 of up to 3 events or 5s per user");
    assert_eq!(why.until, Some(T + 5_300));

    clock.advance(5_000);
    engine.wake();
    wait_for(&mut updates, &run_ids[3], RunStatus::Completed).await;
    assert_eq!(
        output(&t.db, &run_ids[3]).await,
        json!({ "seen": [3, 4], "first": 3 })
    );
}

#[tokio::test]
async fn each_user_has_a_batch_of_their_own() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let engine = engine(&t.db, &clock);
    let ann = engine.send(&t.db, item("ann", 1)).await.unwrap();
    let bob = engine.send(&t.db, item("bob", 2)).await.unwrap();
    let ann_again = engine.send(&t.db, item("ann", 3)).await.unwrap();
    assert_ne!(ann.run_ids, bob.run_ids, "another user's events never join");
    assert_eq!(ann.run_ids, ann_again.run_ids);
    let bob_run = run_row(&t.db, &bob.run_ids[0]).await;
    assert_eq!(bob_run.user_id.as_deref(), Some("bob"));
    assert_eq!(bob_run.batch_size, 1);
    assert_eq!(run_row(&t.db, &ann.run_ids[0]).await.batch_size, 2);
}

#[tokio::test]
async fn concurrent_sends_from_three_engines_fill_batches_exactly() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let engines: Vec<Engine> = (0..3).map(|_| engine(&t.db, &clock)).collect();
    let mut sends = tokio::task::JoinSet::new();
    for (n, engine) in engines.into_iter().enumerate() {
        let db = t.db.clone();
        sends.spawn(async move {
            for i in 0..10 {
                engine
                    .send(&db, item("ann", n as u32 * 100 + i))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap();
    }
    // 30 events in batches of 3: ten runs, each full, every event in exactly one.
    let runs = runs(&t.db).await;
    assert_eq!(runs.len(), 10, "{runs:?}");
    assert!(runs
        .iter()
        .all(|r| r.batch_size == 3 && r.batch_key.is_none()));
    let engine = engine(&t.db, &clock);
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();
    let mut seen = Vec::new();
    for run in &runs {
        wait_for(&mut updates, &run.id, RunStatus::Completed).await;
        let out = output(&t.db, &run.id).await;
        seen.extend(
            out["seen"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap()),
        );
    }
    seen.sort_unstable();
    let sent: Vec<u64> = (0..3)
        .flat_map(|n| (0..10).map(move |i| n * 100 + i))
        .collect();
    assert_eq!(seen, sent);
}

#[tokio::test]
async fn bad_batch_settings_are_refused_when_the_engine_is_built() {
    let t = test_db().await;
    let second = Duration::from_secs(1);
    let refused = [
        (gather(Batch::new(1, second)), "between 2 and 1000 events"),
        (
            gather(Batch::new(10, Duration::ZERO)),
            "between 1 ms and 24 h",
        ),
        (
            gather(Batch::new(10, second)).debounce(Debounce::new(second)),
            "a batched function cannot also have a debounce",
        ),
        (
            gather(Batch::new(10, second)).priority(Priority::head_start("1")),
            "a batched function cannot also have a priority",
        ),
        (
            gather(Batch::new(10, second)).idempotency("event.data.i"),
            "a batched function cannot also have a rate limit or an idempotency key",
        ),
    ];
    common::assert_refused(&t.db, refused.into());
}
