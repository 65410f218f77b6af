//! Throttle on a real database: at most N starts per period per key, the rest waiting
//! in the order they were sent with their start moved to when the window frees (and
//! shown as throttled until then); a run resuming from a sleep is not throttled again;
//! engines sharing one database share the window; bad settings are refused.
#![cfg(feature = "ssr")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fast, run_row, test_db, wait_for, wait_for_all, Updates};
use nodebase::engine::entities::run;
use nodebase::engine::{
    Engine, EngineConfig, EngineError, Function, ManualClock, NewEvent, RunStatus, Throttle,
};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::json;

const T: i64 = 1_000_000;
const PERIOD: i64 = 10_000;

fn api(throttle: Throttle) -> Function {
    Function::new("api", |ctx| async move { Ok(json!(ctx.event.data["i"])) })
        .trigger("test/api")
        .throttle(throttle)
}

fn call(user: &str, i: u32) -> NewEvent {
    NewEvent::new("test/api", json!({ "i": i })).for_user(user)
}

fn engine(db: &DatabaseConnection, clock: &Arc<ManualClock>, function: Function) -> Engine {
    Engine::builder(db.clone())
        .function(function)
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap()
}

async fn send(engine: &Engine, db: &DatabaseConnection, events: Vec<NewEvent>) -> Vec<String> {
    let receipts = engine.send_many(db, events).await.unwrap();
    receipts.into_iter().flat_map(|r| r.run_ids).collect()
}

async fn rows(db: &DatabaseConnection, ids: &[String]) -> Vec<run::Model> {
    let mut rows = Vec::new();
    for id in ids {
        rows.push(run_row(db, id).await);
    }
    rows
}

async fn started(db: &DatabaseConnection) -> usize {
    run::Entity::find()
        .filter(run::Column::FunctionId.eq("api"))
        .filter(run::Column::StartedAt.is_not_null())
        .all(db)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn two_starts_per_period_per_user_and_the_rest_wait_in_order() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let throttle = Throttle::new(2, Duration::from_millis(PERIOD as u64)).key("event.user_id");
    let engine = engine(&t.db, &clock, api(throttle));
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();

    let ann = send(&engine, &t.db, (0..5).map(|i| call("ann", i)).collect()).await;
    let bob = send(&engine, &t.db, vec![call("bob", 0)]).await;
    wait_for_all(&mut updates, &ann[..2], RunStatus::Completed).await;
    wait_for(&mut updates, &bob[0], RunStatus::Completed).await;

    // Ann's other three wait for her window; Bob's run had its own.
    let waiting = rows(&t.db, &ann[2..]).await;
    for row in &waiting {
        assert_eq!(row.status, RunStatus::Queued, "over the throttle: queued");
        assert_eq!(row.started_at, None);
        assert_eq!(row.due_at, T + PERIOD, "due when the window frees");
    }
    let held = engine.held_back(&waiting).await.unwrap();
    for row in &waiting {
        let why = &held[&row.id];
        assert_eq!(why.by, "throttle");
        assert_eq!(why.detail, "2 starts per 10s per event.user_id");
        assert_eq!(why.until, Some(T + PERIOD));
    }

    // The window moves on: the next two of Ann's runs, in the order she sent them.
    clock.advance(PERIOD);
    engine.wake();
    wait_for_all(&mut updates, &ann[2..4], RunStatus::Completed).await;
    let last = run_row(&t.db, &ann[4]).await;
    assert_eq!(last.status, RunStatus::Queued);
    assert_eq!(last.due_at, T + 2 * PERIOD);

    clock.advance(PERIOD);
    engine.wake();
    wait_for(&mut updates, &ann[4], RunStatus::Completed).await;
    let starts: Vec<i64> = rows(&t.db, &ann)
        .await
        .iter()
        .map(|r| r.started_at.unwrap())
        .collect();
    assert_eq!(
        starts,
        [T, T, T + PERIOD, T + PERIOD, T + 2 * PERIOD],
        "two starts per window, first sent first started"
    );
    assert_eq!(run_row(&t.db, &bob[0]).await.started_at, Some(T));
}

#[tokio::test]
async fn a_run_resuming_from_a_sleep_is_not_throttled_again() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let napper = Function::new("api", |ctx| async move {
        ctx.step.sleep("nap", Duration::from_secs(1)).await?;
        Ok(json!("awake"))
    })
    .trigger("test/api")
    .throttle(Throttle::new(1, Duration::from_millis(PERIOD as u64)));
    let engine = engine(&t.db, &clock, napper);
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();

    let ids = send(&engine, &t.db, vec![call("ann", 0), call("ann", 1)]).await;
    wait_for(&mut updates, &ids[0], RunStatus::Sleeping).await;
    // Its own start fills the window, yet it wakes a second later, not a period later.
    clock.advance(1_000);
    engine.wake();
    wait_for(&mut updates, &ids[0], RunStatus::Completed).await;
    let second = run_row(&t.db, &ids[1]).await;
    assert_eq!(second.status, RunStatus::Queued, "the second start waits");
    assert_eq!(second.due_at, T + PERIOD);
}

/// Waits (up to 20 s) until the runs `ids` all started at `at`.
async fn started_at(db: &DatabaseConnection, ids: &[String], at: i64) {
    let all_started = async {
        while !rows(db, ids).await.iter().all(|r| r.started_at == Some(at)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all_started)
        .await
        .expect("the runs started in time");
}

#[tokio::test]
async fn engines_sharing_a_database_share_the_window_and_re_runs_wait_their_turn() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(T));
    let throttle = || Throttle::new(3, Duration::from_millis(PERIOD as u64));
    let engines: Vec<Engine> = (0..3)
        .map(|_| engine(&t.db, &clock, api(throttle())))
        .collect();
    let workers: Vec<_> = engines.iter().map(|e| e.start()).collect();
    let ids = send(
        &engines[0],
        &t.db,
        (0..20).map(|i| call("ann", i)).collect(),
    )
    .await;
    let wake_all = || engines.iter().for_each(|e| e.wake());
    wake_all();

    // The first three sent start, in whichever engines; then nothing more starts.
    started_at(&t.db, &ids[..3], T).await;
    wake_all();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        started(&t.db).await,
        3,
        "three starts per window in all engines"
    );

    // A re-run is a new start, queued behind the runs already waiting.
    let rerun = engines[1].rerun(&ids[0]).await.unwrap();
    let rerun = match rerun {
        Some(id) => id,
        None => {
            // The first run has not finished yet: wait for it, then re-run.
            let done = async {
                while run_row(&t.db, &ids[0]).await.status != RunStatus::Completed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(20), done)
                .await
                .unwrap();
            engines[1].rerun(&ids[0]).await.unwrap().unwrap()
        }
    };
    wake_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(run_row(&t.db, &rerun).await.started_at, None);
    assert_eq!(started(&t.db).await, 3);

    // Window after window, the engines race for each one as it opens: three starts
    // each, in the order sent.
    for window in 1..=5 {
        clock.advance(PERIOD);
        wake_all();
        let next = &ids[3 * window..3 * window + 3];
        started_at(&t.db, next, T + window as i64 * PERIOD).await;
        wake_all();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            started(&t.db).await,
            3 * (window + 1),
            "three more in window {window}"
        );
    }
    assert_eq!(run_row(&t.db, &rerun).await.started_at, None);
    for w in workers {
        w.shutdown().await;
    }
}

#[tokio::test]
async fn bad_throttle_settings_are_refused_when_the_engine_is_built() {
    let t = test_db().await;
    let refused = [
        (api(Throttle::new(0, Duration::from_secs(1))), "at least 1"),
        (
            api(Throttle::new(1, Duration::from_secs(8 * 24 * 3600))),
            "between 1 ms and 7 days",
        ),
        (
            api(Throttle::new(1, Duration::from_secs(1)).key("event.data.(")),
            "not valid CEL",
        ),
    ];
    common::assert_refused(&t.db, refused.into());
    // Pruned runs would drop out of the count: retention must outlast the window.
    let short_retention = Engine::builder(t.db.clone())
        .function(api(Throttle::new(1, Duration::from_secs(7 * 24 * 3600))))
        .config(EngineConfig {
            retention: Some(Duration::from_secs(24 * 3600)),
            ..fast()
        })
        .build()
        .err();
    match short_retention {
        Some(EngineError::InvalidConfig(message)) => {
            assert!(
                message.contains("longest throttle or rate-limit period"),
                "{message}"
            )
        }
        other => panic!("expected the retention to be refused, got {other:?}"),
    }
}
