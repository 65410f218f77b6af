//! Debounce on a real database: a burst of events makes one run with the last event,
//! once the burst has gone quiet; users and keys are debounced apart; the max wait caps
//! the delay; an event after the run started queues the next; concurrent sends from
//! several engines agree on one run; bad settings are refused when the engine is built.
#![cfg(feature = "ssr")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast, run_row, test_db, wait_for, Updates};
use nodebase::engine::entities::run;
use nodebase::engine::{Debounce, Engine, Function, ManualClock, NewEvent, RunStatus, WaitFor};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{json, Value};

const T: i64 = 1_000_000;

fn summary(debounce: Debounce) -> Function {
    Function::new("summary", |ctx| async move {
        Ok(json!({ "text": ctx.event.data["text"] }))
    })
    .trigger("test/typing")
    .debounce(debounce)
}

fn typing(user: &str, text: &str) -> NewEvent {
    NewEvent::new("test/typing", json!({ "text": text, "doc": "d1" })).for_user(user)
}

async fn runs(db: &DatabaseConnection) -> Vec<run::Model> {
    run::Entity::find()
        .filter(run::Column::FunctionId.eq("summary"))
        .all(db)
        .await
        .unwrap()
}

fn engine(db: &DatabaseConnection, clock: &Arc<ManualClock>, debounce: Debounce) -> Engine {
    Engine::builder(db.clone())
        .function(summary(debounce))
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_burst_of_events_makes_one_run_with_the_last_event_once_it_goes_quiet() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let engine = engine(&t.db, &clock, Debounce::new(Duration::from_secs(3)));
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();

    let mut run_ids = Vec::new();
    for text in ["h", "he", "hel", "hell", "hello"] {
        let receipt = engine.send(&t.db, typing("ann", text)).await.unwrap();
        run_ids.extend(receipt.run_ids);
        clock.advance(500);
    }
    run_ids.dedup();
    assert_eq!(
        run_ids.len(),
        1,
        "every event of the burst names the same run"
    );
    let pending = runs(&t.db).await;
    assert_eq!(pending.len(), 1, "one run for the burst");
    // Due a period after the last event (sent at T + 2,000 ms).
    assert_eq!(pending[0].due_at, T + 2_000 + 3_000);
    assert_eq!(pending[0].status, RunStatus::Queued);

    clock.advance(3_000);
    engine.wake();
    wait_for(&mut updates, &run_ids[0], RunStatus::Completed).await;
    let done = run_row(&t.db, &run_ids[0]).await;
    let output: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
    assert_eq!(output, json!({ "text": "hello" }), "the last event wins");

    // A new burst after the run started is a new run.
    let next = engine.send(&t.db, typing("ann", "again")).await.unwrap();
    assert_ne!(next.run_ids, run_ids);
    assert_eq!(runs(&t.db).await.len(), 2);
}

#[tokio::test]
async fn users_and_keys_are_debounced_apart_and_the_max_wait_caps_the_delay() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let by_doc = Debounce::new(Duration::from_secs(3))
        .key("event.data.doc")
        .max_wait(Duration::from_secs(5));
    let engine = engine(&t.db, &clock, by_doc);

    let ann_d1 = engine.send(&t.db, typing("ann", "a")).await.unwrap();
    let bob_d1 = engine.send(&t.db, typing("bob", "b")).await.unwrap();
    let ann_d2 = engine
        .send(
            &t.db,
            NewEvent::new("test/typing", json!({ "text": "x", "doc": "d2" })).for_user("ann"),
        )
        .await
        .unwrap();
    assert_ne!(
        ann_d1.run_ids, bob_d1.run_ids,
        "another user's events never join"
    );
    assert_ne!(
        ann_d1.run_ids, ann_d2.run_ids,
        "another key's events never join"
    );
    assert_eq!(runs(&t.db).await.len(), 3);
    for (receipt, user) in [(&ann_d1, "ann"), (&bob_d1, "bob"), (&ann_d2, "ann")] {
        let row = run_row(&t.db, &receipt.run_ids[0]).await;
        assert_eq!(row.user_id.as_deref(), Some(user));
    }

    // Ann keeps typing in d1 every 2 s: the run starts 5 s after her first event.
    for _ in 0..3 {
        clock.advance(2_000);
        let again = engine.send(&t.db, typing("ann", "more")).await.unwrap();
        assert_eq!(again.run_ids, ann_d1.run_ids);
    }
    assert_eq!(run_row(&t.db, &ann_d1.run_ids[0]).await.due_at, T + 5_000);
}

#[tokio::test]
async fn concurrent_sends_from_three_engines_agree_on_one_run() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let engines: Vec<Engine> = (0..3)
        .map(|_| engine(&t.db, &clock, Debounce::new(Duration::from_secs(60))))
        .collect();
    let mut sends = tokio::task::JoinSet::new();
    for engine in engines {
        let db = t.db.clone();
        sends.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..10 {
                let receipt = engine
                    .send(&db, typing("ann", &i.to_string()))
                    .await
                    .unwrap();
                ids.extend(receipt.run_ids);
            }
            ids
        });
    }
    let mut ids = Vec::new();
    while let Some(sent) = sends.join_next().await {
        ids.extend(sent.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "30 concurrent sends, one run: {ids:?}");
    assert_eq!(runs(&t.db).await.len(), 1);
}

#[tokio::test]
async fn bad_debounce_settings_are_refused_when_the_engine_is_built() {
    let t = test_db().await;
    let refused = [
        (
            summary(Debounce::new(Duration::ZERO)),
            "between 1 ms and 7 days",
        ),
        (
            summary(Debounce::new(Duration::from_secs(3)).max_wait(Duration::from_secs(1))),
            "max wait",
        ),
        (
            summary(Debounce::new(Duration::from_secs(3)).key("event.data.(")),
            "not valid CEL",
        ),
        (
            summary(Debounce::new(Duration::from_secs(3)))
                .cancel_on(WaitFor::event("test/stop", Duration::from_secs(60))),
            "cannot also have cancel_on",
        ),
    ];
    common::assert_refused(&t.db, refused.into());
}
