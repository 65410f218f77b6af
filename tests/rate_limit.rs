//! Rate limit on a real database: at most N runs queued per period per key, the events
//! over it recorded, with the skip and why, and no run (also inside one batch send);
//! the window moves on; concurrent sends from three engines count one after the other;
//! bad settings are refused.
#![cfg(feature = "ssr")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{fast, run_row, test_db, wait_for_all, Updates};
use nodebase::engine::entities::{event, run, skipped_run};
use nodebase::engine::{Debounce, Engine, Function, ManualClock, NewEvent, RateLimit, RunStatus};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

const T: i64 = 1_000_000;
const PERIOD: i64 = 10_000;

fn report(limit: RateLimit, calls: &Arc<AtomicUsize>) -> Function {
    let calls = calls.clone();
    Function::new("report", move |ctx| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(json!(ctx.event.data["i"]))
        }
    })
    .trigger("test/report")
    .rate_limit(limit)
}

fn ask(user: &str, i: u32) -> NewEvent {
    NewEvent::new("test/report", json!({ "i": i })).for_user(user)
}

fn engine(db: &DatabaseConnection, clock: &Arc<ManualClock>, function: Function) -> Engine {
    Engine::builder(db.clone())
        .function(function)
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Sends `events`; for each, its run's id, or `None` if the rate limit skipped it.
async fn send(
    engine: &Engine,
    db: &DatabaseConnection,
    events: Vec<NewEvent>,
) -> Vec<Option<String>> {
    let receipts = engine.send_many(db, events).await.unwrap();
    receipts
        .into_iter()
        .map(|r| {
            assert_eq!(r.run_ids.len() + r.skipped.len(), 1, "one function: {r:?}");
            r.run_ids.into_iter().next()
        })
        .collect()
}

fn ran(ids: &[Option<String>]) -> Vec<String> {
    ids.iter().flatten().cloned().collect()
}

async fn runs(db: &DatabaseConnection) -> u64 {
    run::Entity::find()
        .filter(run::Column::FunctionId.eq("report"))
        .count(db)
        .await
        .unwrap()
}

async fn skips(db: &DatabaseConnection) -> Vec<skipped_run::Model> {
    skipped_run::Entity::find()
        .filter(skipped_run::Column::FunctionId.eq("report"))
        .all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_runs_per_period_per_user_and_the_rest_recorded_as_skipped() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let calls = Arc::new(AtomicUsize::new(0));
    let limit = RateLimit::new(2, Duration::from_millis(PERIOD as u64)).key("event.user_id");
    let engine = engine(&t.db, &clock, report(limit, &calls));
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();

    // One batch of five for Ann, counted one by one; Bob has a window of his own.
    let ann = send(&engine, &t.db, (0..5).map(|i| ask("ann", i)).collect()).await;
    let bob = send(&engine, &t.db, vec![ask("bob", 0)]).await;
    assert!(ann[..2].iter().all(Option::is_some), "the first two run");
    assert!(ann[2..].iter().all(Option::is_none), "the rest are skipped");
    wait_for_all(&mut updates, &ran(&ann), RunStatus::Completed).await;
    wait_for_all(&mut updates, &ran(&bob), RunStatus::Completed).await;
    let skipped = skips(&t.db).await;
    assert_eq!(skipped.len(), 3);
    for skip in &skipped {
        assert_eq!(skip.user_id.as_deref(), Some("ann"));
        assert_eq!(
            skip.reason,
            "over the rate limit of 2 runs per 10s per event.user_id"
        );
        assert_eq!(skip.created_at, T);
    }
    let events = event::Entity::find()
        .filter(event::Column::Name.eq("test/report"))
        .count(&t.db)
        .await
        .unwrap();
    assert_eq!(events, 6, "every event is recorded");
    assert_eq!(runs(&t.db).await, 3);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "skipped events run nothing"
    );

    // Still inside the window: skipped. Skips do not use the window up.
    clock.advance(PERIOD - 1);
    let late = send(&engine, &t.db, vec![ask("ann", 5)]).await;
    assert_eq!(late, [None]);
    clock.advance(1);
    let next = send(&engine, &t.db, (6..9).map(|i| ask("ann", i)).collect()).await;
    assert!(
        next[..2].iter().all(Option::is_some),
        "a new window: two more"
    );
    assert_eq!(next[2], None, "and no more");
    wait_for_all(&mut updates, &ran(&next), RunStatus::Completed).await;

    // A re-run is asked for by hand: not rate limited.
    let first = ann[0].clone().unwrap();
    let rerun = engine.rerun(&first).await.unwrap().unwrap();
    engine.wake();
    wait_for_all(
        &mut updates,
        std::slice::from_ref(&rerun),
        RunStatus::Completed,
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    assert_eq!(run_row(&t.db, &rerun).await.rate_key, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn concurrent_sends_from_three_engines_count_one_after_the_other() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let calls = Arc::new(AtomicUsize::new(0));
    let limit = || RateLimit::new(1, Duration::from_secs(60)).key("event.data.k");
    let engines: Vec<Arc<Engine>> = (0..3)
        .map(|_| Arc::new(engine(&t.db, &clock, report(limit(), &calls))))
        .collect();
    // Round after round, the three engines send one event each for a new key at once.
    const ROUNDS: usize = 20;
    let barrier = Arc::new(tokio::sync::Barrier::new(engines.len()));
    let mut sends = tokio::task::JoinSet::new();
    for engine in &engines {
        let (engine, db, barrier) = (engine.clone(), t.db.clone(), barrier.clone());
        sends.spawn(async move {
            for k in 0..ROUNDS {
                barrier.wait().await;
                let event = NewEvent::new("test/report", json!({ "k": k })).for_user("ann");
                engine.send(&db, event).await.unwrap();
            }
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap();
    }
    assert_eq!(
        runs(&t.db).await,
        ROUNDS as u64,
        "one run per key, however sent"
    );
    assert_eq!(skips(&t.db).await.len(), 2 * ROUNDS);
}

#[tokio::test]
async fn bad_rate_limit_settings_are_refused_when_the_engine_is_built() {
    let t = test_db().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let refused = [
        (
            report(RateLimit::new(0, Duration::from_secs(1)), &calls),
            "at least 1",
        ),
        (
            report(
                RateLimit::new(1, Duration::from_secs(8 * 24 * 3600)),
                &calls,
            ),
            "between 1 ms and 7 days",
        ),
        (
            report(
                RateLimit::new(1, Duration::from_secs(1)).key("event.data.("),
                &calls,
            ),
            "not valid CEL",
        ),
        (
            report(RateLimit::new(1, Duration::from_secs(1)), &calls)
                .debounce(Debounce::new(Duration::from_secs(1))),
            "cannot also have a rate limit",
        ),
    ];
    common::assert_refused(&t.db, refused.into());
}
