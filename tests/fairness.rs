//! Fair order among users on a real database: one user's backlog does not hold back
//! another user's run by more than about one claim, and users with runs waiting take
//! turns — with no flow-control option set.
#![cfg(feature = "ssr")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fast, test_db};
use nodebase::engine::{Engine, EngineConfig, Function, NewEvent};
use serde_json::json;
use tokio::sync::mpsc;

const BATCH: usize = 32;

/// Who started runs, in order. `told` hears the position of each start by the user
/// `first_of`, and of the `at`-th start.
struct Starts {
    users: Mutex<Vec<String>>,
    first_of: String,
    at: usize,
    told: mpsc::UnboundedSender<usize>,
}

fn noting(starts: &Arc<Starts>) -> Function {
    let starts = starts.clone();
    Function::new("noted", move |ctx| {
        let starts = starts.clone();
        async move {
            let user = ctx.event.user_id.clone().unwrap_or_default();
            let position = {
                let mut users = starts.users.lock().unwrap();
                users.push(user.clone());
                users.len() - 1
            };
            if user == starts.first_of || position + 1 == starts.at {
                let _ = starts.told.send(position);
            }
            if let Some(ms) = ctx.event.data["nap"].as_u64() {
                ctx.step.sleep("nap", Duration::from_millis(ms)).await?;
            }
            // Work that takes a little time, so that a backlog drains for a while.
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(json!(null))
        }
    })
    .trigger("test/noted")
}

fn starts_of(first_of: &str, at: usize) -> (Arc<Starts>, mpsc::UnboundedReceiver<usize>) {
    let (told, heard) = mpsc::unbounded_channel();
    let starts = Starts {
        users: Mutex::new(Vec::new()),
        first_of: first_of.to_string(),
        at,
        told,
    };
    (Arc::new(starts), heard)
}

fn engine(db: &sea_orm::DatabaseConnection, starts: &Arc<Starts>) -> Engine {
    Engine::builder(db.clone())
        .function(noting(starts))
        .config(EngineConfig {
            workers: 4,
            batch: BATCH,
            ..fast()
        })
        .build()
        .unwrap()
}

/// Sends `n` events for `user`, 500 to a batch.
async fn send(engine: &Engine, db: &sea_orm::DatabaseConnection, user: &str, n: usize) {
    for start in (0..n).step_by(500) {
        let events = (start..n.min(start + 500))
            .map(|i| NewEvent::new("test/noted", json!({ "i": i })).for_user(user))
            .collect();
        engine.send_many(db, events).await.unwrap();
    }
}

async fn heard(rx: &mut mpsc::UnboundedReceiver<usize>) -> usize {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the run started within 30 s")
        .expect("the function is registered")
}

#[tokio::test]
async fn a_single_run_goes_ahead_of_another_users_ten_thousand_queued_runs() {
    let t = test_db().await;
    let (starts, mut bob_started) = starts_of("bob", 0);
    let engine = engine(&t.db, &starts);
    send(&engine, &t.db, "ann", 10_000).await;
    send(&engine, &t.db, "bob", 1).await;

    let workers = engine.start();
    let position = heard(&mut bob_started).await;
    workers.shutdown().await;
    // First come, first served would start it 10,001st.
    assert!(
        position < BATCH,
        "bob's run started {}th, after {position} of ann's",
        position + 1
    );
}

#[tokio::test]
async fn a_run_sent_while_a_backlog_drains_starts_within_about_one_claim() {
    let t = test_db().await;
    let (starts, mut told) = starts_of("bob", 1);
    let engine = engine(&t.db, &starts);
    send(&engine, &t.db, "ann", 5_000).await;
    let workers = engine.start();
    heard(&mut told).await;

    // The backlog is draining: bob's run, sent now, waits for the runs claimed already
    // and about one claim more, not for the thousands still queued.
    let sent_at = starts.users.lock().unwrap().len();
    send(&engine, &t.db, "bob", 1).await;
    let position = heard(&mut told).await;
    workers.shutdown().await;
    let ann_meanwhile = position - sent_at;
    assert!(
        ann_meanwhile < 4 * BATCH,
        "{ann_meanwhile} of ann's runs started between bob's send and bob's start"
    );
}

#[tokio::test]
async fn a_run_woken_from_a_sleep_goes_ahead_of_a_backlog_sent_while_it_slept() {
    let t = test_db().await;
    let (starts, mut told) = starts_of("bob", 0);
    let engine = engine(&t.db, &starts);
    let workers = engine.start();
    let nap = NewEvent::new("test/noted", json!({ "nap": 500 })).for_user("bob");
    engine.send(&t.db, nap).await.unwrap();
    heard(&mut told).await;
    // While bob's run sleeps, ann queues 5,000 runs: first come, first served would
    // start all of them (due before the wake) before bob's run goes on.
    send(&engine, &t.db, "ann", 5_000).await;
    let woke = heard(&mut told).await;
    workers.shutdown().await;
    let ann_before = woke - 1;
    assert!(
        ann_before < 2_500,
        "{ann_before} of ann's runs started before bob's run went on after its sleep"
    );
}

#[tokio::test]
async fn users_with_runs_waiting_take_turns() {
    let t = test_db().await;
    let (starts, mut told) = starts_of("", 300);
    let engine = engine(&t.db, &starts);
    // Ann's 600 are all queued before Bob's and Cy's.
    send(&engine, &t.db, "ann", 600).await;
    send(&engine, &t.db, "bob", 300).await;
    send(&engine, &t.db, "cy", 300).await;

    let workers = engine.start();
    heard(&mut told).await;
    workers.shutdown().await;
    let users = starts.users.lock().unwrap();
    let first: Vec<&String> = users.iter().take(300).collect();
    for user in ["ann", "bob", "cy"] {
        let n = first.iter().filter(|u| **u == user).count();
        // A third each, give or take the runs of one claim.
        assert!(
            (100 - BATCH..=100 + BATCH).contains(&n),
            "{user} had {n} of the first 300 starts"
        );
    }
}

#[tokio::test]
async fn a_users_runs_sent_in_many_batches_keep_one_line_a_second_apart() {
    use nodebase::engine::entities::run;
    use sea_orm::{EntityTrait, QueryOrder};

    let t = test_db().await;
    let (starts, _told) = starts_of("", 0);
    let engine = engine(&t.db, &starts);
    // Six sends of 100: each send's runs go behind the user's last waiting run, not at
    // now again (which would give each second of the clock six of ann's runs).
    for _ in 0..6 {
        let events = (0..100)
            .map(|i| NewEvent::new("test/noted", json!({ "i": i })).for_user("ann"))
            .collect();
        engine.send_many(&t.db, events).await.unwrap();
    }
    let runs = run::Entity::find()
        .order_by_asc(run::Column::FairAt)
        .all(&t.db)
        .await
        .unwrap();
    assert_eq!(runs.len(), 600);
    for pair in runs.windows(2) {
        assert_eq!(
            pair[1].fair_at - pair[0].fair_at,
            1_000,
            "two of ann's waiting runs are not one share apart"
        );
    }
}
