//! A function's idempotency key on a real database: one run per key per user per 24 h,
//! repeats recorded as skips saying why (also within one batch send), another user's
//! key never matches, an empty key is not limited, and bad settings are refused.
#![cfg(feature = "ssr")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast, test_db, wait_for_all, Updates};
use nodebase::engine::entities::skipped_run;
use nodebase::engine::{Debounce, Engine, Function, ManualClock, NewEvent, RateLimit, RunStatus};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

const T: i64 = 1_000_000;
const DAY: i64 = 24 * 3600 * 1000;

fn charge() -> Function {
    Function::new("charge", |ctx| async move {
        Ok(ctx.event.data["order_id"].clone())
    })
    .trigger("test/charge")
    .idempotency("event.data.order_id")
}

fn order(user: &str, order_id: Option<&str>) -> NewEvent {
    let data = match order_id {
        Some(id) => json!({ "order_id": id }),
        None => json!({}),
    };
    NewEvent::new("test/charge", data).for_user(user)
}

#[tokio::test]
async fn one_run_per_key_per_user_per_day_and_repeats_recorded_as_skipped() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let engine = Engine::builder(t.db.clone())
        .function(charge())
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();
    let send = |events: Vec<NewEvent>| {
        let (engine, db) = (&engine, &t.db);
        async move {
            let receipts = engine.send_many(db, events).await.unwrap();
            receipts
                .into_iter()
                .map(|r| r.run_ids.into_iter().next())
                .collect::<Vec<_>>()
        }
    };

    // One batch: Ann's o1 three times, her o2, Bob's o1, and two of Ann's with no key.
    let first = send(vec![
        order("ann", Some("o1")),
        order("ann", Some("o1")),
        order("ann", Some("o2")),
        order("bob", Some("o1")),
        order("ann", Some("o1")),
        order("ann", None),
        order("ann", None),
    ])
    .await;
    let ran: Vec<bool> = first.iter().map(Option::is_some).collect();
    assert_eq!(ran, [true, false, true, true, false, true, true]);
    let ids: Vec<String> = first.iter().flatten().cloned().collect();
    wait_for_all(&mut updates, &ids, RunStatus::Completed).await;

    let skipped = skipped_run::Entity::find()
        .filter(skipped_run::Column::FunctionId.eq("charge"))
        .all(&t.db)
        .await
        .unwrap();
    assert_eq!(skipped.len(), 2);
    for skip in &skipped {
        assert_eq!(skip.user_id.as_deref(), Some("ann"));
        assert_eq!(
            skip.reason,
            "one run per event.data.order_id per user per 24 h: a run with the same key was queued within 24 h"
        );
    }

    // Still within the day: a repeat is skipped; a day later the key is free again.
    clock.advance(DAY - 1);
    assert_eq!(send(vec![order("ann", Some("o1"))]).await, [None]);
    clock.advance(1);
    let again = send(vec![order("ann", Some("o1"))]).await;
    assert!(again[0].is_some(), "24 h after the first run");
    wait_for_all(
        &mut updates,
        &[again[0].clone().unwrap()],
        RunStatus::Completed,
    )
    .await;
}

#[tokio::test]
async fn bad_idempotency_settings_are_refused_when_the_engine_is_built() {
    let t = test_db().await;
    let refused = [
        (
            charge().idempotency("event."),
            "idempotency: \"event.\" is not valid CEL",
        ),
        (
            charge().rate_limit(RateLimit::new(1, Duration::from_secs(60))),
            "a rate limit or an idempotency key, not both",
        ),
        (
            charge().debounce(Debounce::new(Duration::from_secs(3))),
            "cannot also have a rate limit or an idempotency key",
        ),
    ];
    common::assert_refused(&t.db, refused.into());
}
