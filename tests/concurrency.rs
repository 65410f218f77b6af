//! Concurrency limits on a real database: one run per key at a time with different keys
//! side by side, a limit on the whole function, two limits at once, sleeping runs
//! holding no slot, re-runs keeping their keys, and limits checked when the engine is
//! built. (Three processes sharing limits: `tests/processes.rs`.)
#![cfg(feature = "ssr")]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fast, run_row, test_db, wait_for, wait_for_all, Updates};
use nodebase::engine::entities::run;
use nodebase::engine::{Engine, Function, ManualClock, NewEvent, RunStatus};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

/// What the handlers saw: how many runs were inside at once, in all and per key.
#[derive(Default)]
struct Gauge {
    inside: HashMap<String, u32>,
    max: HashMap<String, u32>,
    total: u32,
    max_total: u32,
}

/// A handler's view of the test: it reports entering, then waits for a permit.
#[derive(Clone)]
struct Probe {
    gauge: Arc<Mutex<Gauge>>,
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<String>,
}

impl Probe {
    fn new() -> (Probe, mpsc::UnboundedReceiver<String>) {
        let (entered, rx) = mpsc::unbounded_channel();
        let probe = Probe {
            gauge: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            entered,
        };
        (probe, rx)
    }

    /// Enters as `key`, waits for the test to let one run through, and leaves.
    async fn pass(&self, key: String) {
        {
            let mut g = self.gauge.lock().unwrap();
            let inside = g.inside.entry(key.clone()).or_default();
            *inside += 1;
            let now = *inside;
            let max = g.max.entry(key.clone()).or_default();
            *max = (*max).max(now);
            g.total += 1;
            g.max_total = g.max_total.max(g.total);
        }
        let _ = self.entered.send(key.clone());
        self.gate.acquire().await.unwrap().forget();
        let mut g = self.gauge.lock().unwrap();
        *g.inside.get_mut(&key).unwrap() -= 1;
        g.total -= 1;
    }

    fn max(&self, key: &str) -> u32 {
        self.gauge
            .lock()
            .unwrap()
            .max
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn max_total(&self) -> u32 {
        self.gauge.lock().unwrap().max_total
    }
}

/// A function `id` on `test/<id>` whose runs pass the probe as their event's `data.user`.
fn probed(id: &str, probe: &Probe) -> Function {
    let probe = probe.clone();
    Function::new(id, move |ctx| {
        let probe = probe.clone();
        async move {
            let user = ctx.event.data["user"].as_str().unwrap_or("").to_string();
            probe.pass(user.clone()).await;
            Ok(json!(user))
        }
    })
    .trigger(format!("test/{id}"))
}

async fn send_for(
    engine: &Engine,
    db: &DatabaseConnection,
    name: &str,
    users: &[&str],
) -> Vec<String> {
    let events = users
        .iter()
        .map(|u| NewEvent::new(name, json!({ "user": u })))
        .collect();
    engine
        .send_many(db, events)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|r| r.run_ids)
        .collect()
}

async fn statuses(db: &DatabaseConnection, function_id: &str) -> HashMap<RunStatus, usize> {
    let mut counts = HashMap::new();
    for r in run::Entity::find()
        .filter(run::Column::FunctionId.eq(function_id))
        .all(db)
        .await
        .unwrap()
    {
        *counts.entry(r.status).or_default() += 1;
    }
    counts
}

/// Receives `n` entries, or fails after a while.
async fn entries(rx: &mut mpsc::UnboundedReceiver<String>, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let key = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a run entered in time")
            .unwrap();
        seen.push(key);
    }
    seen
}

/// Long enough for an engine with free workers to claim every due run it may.
const SETTLE: Duration = Duration::from_millis(300);

#[tokio::test]
async fn one_run_per_key_at_a_time_and_different_keys_side_by_side() {
    let t = test_db().await;
    let (probe, mut rx) = Probe::new();
    let engine = Engine::builder(t.db.clone())
        .function(probed("serial", &probe).concurrency_key(1, "event.data.user"))
        .config(fast())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();
    let runs = send_for(
        &engine,
        &t.db,
        "test/serial",
        &["ann", "ann", "ann", "bob", "bob"],
    )
    .await;

    let mut first = entries(&mut rx, 2).await;
    first.sort();
    assert_eq!(first, ["ann", "bob"], "one run of each user starts at once");
    tokio::time::sleep(SETTLE).await;
    assert!(
        rx.try_recv().is_err(),
        "no second run of a user while the first runs"
    );
    let counts = statuses(&t.db, "serial").await;
    assert_eq!(counts.get(&RunStatus::Running), Some(&2));
    assert_eq!(
        counts.get(&RunStatus::Queued),
        Some(&3),
        "the rest stay queued"
    );

    // Each run let through frees its key for that user's next run, and only that.
    for _ in 0..3 {
        probe.gate.add_permits(1);
        entries(&mut rx, 1).await;
    }
    probe.gate.add_permits(2);
    wait_for_all(&mut updates, &runs, RunStatus::Completed).await;
    assert_eq!(probe.max("ann"), 1);
    assert_eq!(probe.max("bob"), 1);
    assert_eq!(probe.max_total(), 2, "the two users' runs ran side by side");
}

#[tokio::test]
async fn a_limit_on_the_whole_function_and_two_limits_at_once() {
    let t = test_db().await;
    let (whole, mut whole_rx) = Probe::new();
    let (both, mut both_rx) = Probe::new();
    let engine = Engine::builder(t.db.clone())
        .function(probed("two-at-a-time", &whole).concurrency(2))
        .function(
            probed("two-and-one-each", &both)
                .concurrency(2)
                .concurrency_key(1, "event.data.user"),
        )
        .config(fast())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();
    let whole_runs = send_for(
        &engine,
        &t.db,
        "test/two-at-a-time",
        &["a", "b", "c", "d", "e", "f"],
    )
    .await;
    let both_runs = send_for(
        &engine,
        &t.db,
        "test/two-and-one-each",
        &["ann", "ann", "bob", "bob", "cy", "cy"],
    )
    .await;

    entries(&mut whole_rx, 2).await;
    let mut started = entries(&mut both_rx, 2).await;
    started.sort();
    started.dedup();
    assert_eq!(started.len(), 2, "two different users, not one user twice");
    tokio::time::sleep(SETTLE).await;
    assert!(whole_rx.try_recv().is_err(), "no third run of the function");
    assert!(
        both_rx.try_recv().is_err(),
        "no third run, and no user twice"
    );

    whole.gate.add_permits(6);
    both.gate.add_permits(6);
    wait_for_all(&mut updates, &whole_runs, RunStatus::Completed).await;
    wait_for_all(&mut updates, &both_runs, RunStatus::Completed).await;
    assert_eq!(whole.max_total(), 2);
    assert_eq!(both.max_total(), 2);
    for user in ["ann", "bob", "cy"] {
        assert_eq!(both.max(user), 1, "{user} ran one at a time");
    }
}

#[tokio::test]
async fn a_sleeping_run_holds_no_slot_and_a_rerun_keeps_its_key() {
    let t = test_db().await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let napper = Function::new("napper", |ctx| async move {
        if ctx.event.data["nap"] == json!(true) {
            ctx.step.sleep("nap", Duration::from_secs(60)).await?;
        }
        Ok(json!("done"))
    })
    .trigger("test/napper")
    .concurrency_key(1, "event.user_id");
    let engine = Engine::builder(t.db.clone())
        .function(napper)
        .config(fast())
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let _workers = engine.start();

    let sleeper = engine
        .send(
            &t.db,
            NewEvent::new("test/napper", json!({ "nap": true })).for_user("ann"),
        )
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &sleeper, RunStatus::Sleeping).await;
    // Ann's next run starts while her first sleeps.
    let quick = engine
        .send(
            &t.db,
            NewEvent::new("test/napper", json!({})).for_user("ann"),
        )
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    wait_for(&mut updates, &quick, RunStatus::Completed).await;
    assert_eq!(run_row(&t.db, &sleeper).await.status, RunStatus::Sleeping);
    clock.advance(60_000);
    engine.wake();
    wait_for(&mut updates, &sleeper, RunStatus::Completed).await;

    let again = engine
        .rerun(&quick)
        .await
        .unwrap()
        .expect("a finished run re-runs");
    assert_eq!(
        run_row(&t.db, &again).await.concurrency_key,
        Some("ann".to_string()),
        "a re-run is keyed as its event says"
    );
    wait_for(&mut updates, &again, RunStatus::Completed).await;
}

#[tokio::test]
async fn limits_are_checked_when_the_engine_is_built() {
    let t = test_db().await;
    let build = |f: Function| Engine::builder(t.db.clone()).function(f).build().err();
    let plain = || Function::new("f", |_| async { Ok(json!(null)) }).trigger("test/f");
    let refused = [
        (plain().concurrency(0), "at least 1"),
        (plain().concurrency_key(1, "event.data.("), "not valid CEL"),
        (
            plain()
                .concurrency(3)
                .concurrency(2)
                .concurrency_key(1, "event.user_id"),
            "at most 2",
        ),
    ];
    common::assert_refused(&t.db, refused.into());
    assert!(build(plain().concurrency(1).concurrency_key(1, "event.user_id")).is_none());
}
