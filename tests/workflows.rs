//! The app's background functions act for the user the server recorded on the event,
//! never for an id found in its payload.
#![cfg(feature = "ssr")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::sign_up;
use common::{refuse_steps_named, test_db, wait_for, Updates};
use nodebase::domain::SignedInUser;
use nodebase::engine::{Backoff, Engine, EngineConfig, ManualClock, NewEvent, RunStatus};
use nodebase::workflows::HelloWorldRequested;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// An engine with the app's functions on an injected clock.
fn app_engine(db: &DatabaseConnection, clock: Arc<ManualClock>, backoff: Backoff) -> Engine {
    let mut builder = Engine::builder(db.clone())
        .clock(clock)
        .config(EngineConfig {
            backoff,
            poll: Duration::from_millis(50),
            ..EngineConfig::default()
        })
        .state(db.clone());
    for function in nodebase::functions::all() {
        builder = builder.function(function);
    }
    builder.build().unwrap()
}

/// Moves the clock a second every 20 ms, so that hello-world's sleeps pass quickly.
fn tick(clock: Arc<ManualClock>, engine: &Engine) -> tokio::task::JoinHandle<()> {
    let engine = engine.clone();
    tokio::spawn(async move {
        loop {
            clock.advance(1_000);
            engine.wake();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[tokio::test]
async fn hello_world_creates_the_workflow_for_the_events_owner_not_the_payloads_user() {
    let t = test_db().await;
    let mallory = sign_up(&t.db, "mallory@example.com", PASSWORD)
        .await
        .unwrap();
    let victim = sign_up(&t.db, "victim@example.com", PASSWORD)
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let engine = app_engine(&t.db, clock.clone(), Backoff::fast());
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();

    // What the Events page lets any signed-in user send: the victim's id in the payload.
    let forged = NewEvent::new(
        "test/hello.world",
        json!({ "email": victim.email, "userId": victim.id }),
    )
    .for_user(&mallory.id);
    let receipt = engine.send(&t.db, forged).await.unwrap();
    let ticker = tick(clock, &engine);
    wait_for(&mut updates, &receipt.run_ids[0], RunStatus::Completed).await;
    ticker.abort();
    workers.shutdown().await;

    let victims = nodebase::workflows::list_for_user(&t.db, &victim.id, 1000)
        .await
        .unwrap();
    assert!(
        victims.is_empty(),
        "nothing written into the victim's account: {victims:?}"
    );
    let senders = nodebase::workflows::list_for_user(&t.db, &mallory.id, 1000)
        .await
        .unwrap();
    let names: Vec<&str> = senders.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["workflow-from-inngest"],
        "the sender's own workflow"
    );
}

#[tokio::test]
async fn hello_world_creates_one_workflow_even_if_its_step_runs_twice() {
    let t = test_db().await;
    let ada = sign_up(&t.db, "ada@example.com", PASSWORD).await.unwrap();
    // The step's record is refused once its insert is done, as if the process died
    // between the two: the step runs again.
    refuse_steps_named(&t.db, "create-workflow").await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let slow = Backoff {
        base: Duration::from_millis(300),
        max: Duration::from_millis(300),
        jitter: 0.0,
    };
    let engine = app_engine(&t.db, clock.clone(), slow);
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let user = SignedInUser {
        id: ada.id.clone(),
        email: ada.email.clone(),
    };
    let receipt = engine
        .send(&t.db, HelloWorldRequested::event(&user))
        .await
        .unwrap();
    let run_id = &receipt.run_ids[0];
    let ticker = tick(clock, &engine);
    // Handed back after its record was refused: the insert had happened.
    wait_for(&mut updates, run_id, RunStatus::Queued).await;
    let drop = match t.db.get_database_backend() {
        DbBackend::Sqlite => "DROP TRIGGER refuse_step",
        _ => "DROP TRIGGER refuse_step ON step",
    };
    t.db.execute_unprepared(drop).await.unwrap();
    wait_for(&mut updates, run_id, RunStatus::Completed).await;
    ticker.abort();
    workers.shutdown().await;

    let made: Vec<String> = nodebase::workflows::list_for_user(&t.db, &ada.id, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(made, vec!["workflow-from-inngest"], "one workflow, not two");
}
