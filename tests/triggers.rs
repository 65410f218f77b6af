//! Triggers on a real database: cron schedules (one run per tick whatever the number of
//! engines sharing the database, a missed tick made up once, older ones skipped), name
//! prefixes (`app/*`), CEL filters, and several triggers on one function.
#![cfg(feature = "ssr")]

mod common;

use std::sync::Arc;

use common::{fast, run_row, test_db, wait_for, Updates};
use nodebase::engine::entities::{event, run};
use nodebase::engine::{Engine, Function, ManualClock, NewEvent, RunStatus, SCHEDULED};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000;
/// 2026-12-01 10:00:00 UTC.
const TEN: i64 = 1_796_119_200_000;

fn reporter() -> Function {
    Function::new("report", |ctx| async move {
        Ok(json!({ "tick_at": ctx.event.data["tick_at"] }))
    })
    .cron("* * * * *")
}

async fn ticks(db: &DatabaseConnection) -> Vec<i64> {
    event::Entity::find()
        .filter(event::Column::Name.eq(SCHEDULED))
        .order_by_asc(event::Column::Ts)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["tick"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

async fn report_runs(db: &DatabaseConnection) -> Vec<run::Model> {
    run::Entity::find()
        .filter(run::Column::FunctionId.eq("report"))
        .all(db)
        .await
        .unwrap()
}

/// Waits until the run of the tick at `tick` has completed, as some engine announces.
async fn tick_completed(db: &DatabaseConnection, updates: &mut [Updates], tick: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let run_id = loop {
        let found = event::Entity::find()
            .filter(event::Column::Name.eq(SCHEDULED))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .find(|e| serde_json::from_str::<Value>(&e.data).unwrap()["tick"] == json!(tick));
        if let Some(e) = found {
            let run = run::Entity::find()
                .filter(run::Column::EventId.eq(e.id))
                .one(db)
                .await
                .unwrap()
                .expect("a tick's event has its run");
            break run.id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event for tick {tick}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Whichever engine ran it announces it; run_row settles the rest.
    loop {
        if run_row(db, &run_id).await.status == RunStatus::Completed {
            return;
        }
        for u in updates.iter_mut() {
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(20),
                wait_for(u, &run_id, RunStatus::Completed),
            )
            .await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tick {tick} did not complete"
        );
    }
}

#[tokio::test]
async fn three_engines_on_one_database_make_one_run_per_cron_tick() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(TEN + 30_000));
    let engines: Vec<Engine> = (0..3)
        .map(|_| {
            Engine::builder(t.db.clone())
                .function(reporter())
                .clock(clock.clone())
                .config(fast())
                .build()
                .unwrap()
        })
        .collect();
    let mut updates: Vec<Updates> = engines
        .iter()
        .map(|e| Updates::new(e.subscribe()))
        .collect();
    let workers: Vec<_> = engines.iter().map(Engine::start).collect();

    // Started 30 s after the 10:00 tick, within the catch-up minute: it runs, late.
    tick_completed(&t.db, &mut updates, TEN).await;
    clock.advance(30_000);
    tick_completed(&t.db, &mut updates, TEN + MINUTE).await;
    clock.advance(MINUTE);
    tick_completed(&t.db, &mut updates, TEN + 2 * MINUTE).await;
    for w in workers {
        w.shutdown().await;
    }
    assert_eq!(
        ticks(&t.db).await,
        vec![TEN, TEN + MINUTE, TEN + 2 * MINUTE]
    );
    let runs = report_runs(&t.db).await;
    assert_eq!(runs.len(), 3, "one run per tick: {runs:?}");
    assert!(
        runs.iter().all(|r| r.user_id.is_none()),
        "a tick belongs to no user"
    );
    let outputs: Vec<String> = runs.iter().filter_map(|r| r.output.clone()).collect();
    assert!(
        outputs.contains(&json!({ "tick_at": "2026-12-01T10:01:00+00:00" }).to_string()),
        "{outputs:?}"
    );

    // Ten minutes with no process: on restart the latest tick (30 s ago) runs once; the
    // nine before it are skipped.
    clock.advance(10 * MINUTE);
    let engine = Engine::builder(t.db.clone())
        .function(reporter())
        .clock(clock.clone())
        .config(fast())
        .build()
        .unwrap();
    let mut updates = vec![Updates::new(engine.subscribe())];
    let workers = engine.start();
    tick_completed(&t.db, &mut updates, TEN + 12 * MINUTE).await;
    workers.shutdown().await;
    assert_eq!(
        ticks(&t.db).await,
        vec![TEN, TEN + MINUTE, TEN + 2 * MINUTE, TEN + 12 * MINUTE]
    );
}

#[tokio::test]
async fn a_bad_schedule_or_trigger_is_refused_when_the_engine_is_built() {
    let t = test_db().await;
    let build = |f: Function| {
        Engine::builder(t.db.clone())
            .function(f)
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let f = || Function::new("f", |_ctx| async move { Ok(()) });
    assert!(build(f().cron("61 * * * *")).contains("not a cron schedule"));
    assert!(build(f().cron_in("* * * * *", "Mars/Olympus")).contains("not a time zone"));
    assert!(build(f().trigger("*")).contains("not a valid trigger"));
    assert!(build(f().trigger("app/*/x*")).contains("not a valid trigger"));
    assert!(build(f().trigger_if("app/x", "event.data.n >")).contains("not valid CEL"));
    assert_eq!(build(f().cron_in("0 9 * * MON-FRI", "Asia/Seoul")), "");
}

#[tokio::test]
async fn prefixes_filters_and_several_triggers_pick_the_functions_an_event_starts() {
    let t = test_db().await;
    let noop = |id: &str| Function::new(id, |_ctx| async move { Ok(()) });
    let engine = Engine::builder(t.db.clone())
        .function(noop("every-app-event").trigger("app/*"))
        // Both of its triggers match app/order events: one run each.
        .function(noop("orders-too").trigger("app/*").trigger("app/order"))
        .function(
            noop("big-orders-and-refunds")
                .trigger_if("app/order", "event.data.amount > 100")
                .trigger("app/refund"),
        )
        .function(noop("seoul-only").trigger_if("app/*", "event.data.city == 'Seoul'"))
        .config(fast())
        .build()
        .unwrap();
    let started = |name: &'static str, data: Value| {
        let engine = engine.clone();
        let db = t.db.clone();
        async move {
            let receipt = engine.send(&db, NewEvent::new(name, data)).await.unwrap();
            let mut functions = Vec::new();
            for id in receipt.run_ids {
                functions.push(run_row(&db, &id).await.function_id);
            }
            functions.sort();
            functions
        }
    };
    assert_eq!(
        started("app/order", json!({ "amount": 50 })).await,
        ["every-app-event", "orders-too"]
    );
    assert_eq!(
        started("app/order", json!({ "amount": 500, "city": "Seoul" })).await,
        [
            "big-orders-and-refunds",
            "every-app-event",
            "orders-too",
            "seoul-only"
        ]
    );
    assert_eq!(
        started("app/refund", json!({})).await,
        ["big-orders-and-refunds", "every-app-event", "orders-too"]
    );
    // A filter that cannot be evaluated (no amount) starts nothing; others still run.
    assert_eq!(
        started("app/order", json!({ "note": "no amount" })).await,
        ["every-app-event", "orders-too"]
    );
    assert!(started("other/order", json!({ "amount": 500 }))
        .await
        .is_empty());
    assert!(started("application/x", json!({})).await.is_empty());
}
