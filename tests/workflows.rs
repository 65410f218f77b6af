//! The app's background functions act for the user the server recorded on the event,
//! never for an id found in its payload.
#![cfg(feature = "ssr")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{test_db, wait_for, Updates};
use nodebase::auth::sign_up;
use nodebase::engine::{Backoff, Engine, EngineConfig, ManualClock, NewEvent, RunStatus};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

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
    let mut builder = Engine::builder(t.db.clone())
        .clock(clock.clone())
        .config(EngineConfig {
            backoff: Backoff::fast(),
            poll: Duration::from_millis(50),
            ..EngineConfig::default()
        });
    for function in nodebase::functions::all(&t.db) {
        builder = builder.function(function);
    }
    let engine = builder.build().unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();

    // What the Events page lets any signed-in user send: the victim's id in the payload.
    let forged = NewEvent::new(
        "test/hello.world",
        json!({ "email": victim.email, "userId": victim.id }),
    )
    .for_user(&mallory.id);
    let receipt = engine.send(&t.db, forged).await.unwrap();
    // The function's three one-second sleeps pass on the injected clock.
    let ticker = {
        let (clock, engine) = (clock.clone(), engine.clone());
        tokio::spawn(async move {
            loop {
                clock.advance(1_000);
                engine.wake();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    wait_for(&mut updates, &receipt.run_ids[0], RunStatus::Completed).await;
    ticker.abort();
    workers.shutdown().await;

    let victims = nodebase::workflows::list_for_user(&t.db, &victim.id)
        .await
        .unwrap();
    assert!(
        victims.is_empty(),
        "nothing written into the victim's account: {victims:?}"
    );
    let senders = nodebase::workflows::list_for_user(&t.db, &mallory.id)
        .await
        .unwrap();
    let names: Vec<&str> = senders.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["workflow-from-inngest"],
        "the sender's own workflow"
    );
}
