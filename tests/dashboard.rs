//! The dashboard's queries on a real database: filters, cursor pages and scope.
#![cfg(feature = "ssr")]

mod common;

use std::time::Duration;

use common::{test_db, wait_for_all, Updates};
use nodebase::engine::inspect::{self, RunFilter};
use nodebase::engine::{
    Backoff, Engine, EngineConfig, FnError, Function, NewEvent, RunStatus, SendReceipt,
};
use serde_json::json;

fn engine(db: &sea_orm::DatabaseConnection) -> Engine {
    Engine::builder(db.clone())
        .function(Function::new("ok", |_| async { Ok(json!("fine")) }).trigger("test/ok"))
        .function(
            Function::new("bad", |ctx| async move {
                ctx.step
                    .run("fail", || async {
                        Err::<(), _>(FnError::non_retriable("nope"))
                    })
                    .await?;
                Ok(json!(null))
            })
            .trigger("test/bad"),
        )
        .config(EngineConfig {
            backoff: Backoff::fast(),
            poll: Duration::from_millis(200),
            ..EngineConfig::default()
        })
        .build()
        .unwrap()
}

/// Ada sends `oks` events of `ok` and one of `bad`, Bob one of `ok`; returns Ada's ok
/// runs and the receipts of her bad send and of Bob's, once all runs have ended.
async fn ada_and_bob(
    db: &sea_orm::DatabaseConnection,
    engine: &Engine,
    oks: usize,
) -> (Vec<String>, SendReceipt, SendReceipt) {
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let send = |name: &str, data: serde_json::Value, user: &str| {
        let event = NewEvent::new(name, data).for_user(user);
        async move { engine.send(db, event).await.unwrap() }
    };
    let mut ok = Vec::new();
    for i in 0..oks {
        ok.push(send("test/ok", json!({ "i": i }), "ada").await.run_ids[0].clone());
    }
    let bad = send("test/bad", json!({}), "ada").await;
    let bobs = send("test/ok", json!({}), "bob").await;
    wait_for_all(&mut updates, &ok, RunStatus::Completed).await;
    wait_for_all(&mut updates, &bad.run_ids, RunStatus::Failed).await;
    wait_for_all(&mut updates, &bobs.run_ids, RunStatus::Completed).await;
    workers.shutdown().await;
    (ok, bad, bobs)
}

#[tokio::test]
async fn runs_are_filtered_paged_and_scoped_to_their_user() {
    let t = test_db().await;
    let engine = engine(&t.db);
    let (ok_runs, bad, bobs) = ada_and_bob(&t.db, &engine, 7).await;

    // Newest first, three at a time, following the cursor.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let filter = RunFilter {
            before: before.clone(),
            limit: 3,
            ..RunFilter::default()
        };
        let (page, more) = inspect::runs(&t.db, "ada", &filter).await.unwrap();
        seen.extend(page.iter().map(|l| l.run.id.clone()));
        if !more {
            break;
        }
        before = page.last().map(|l| l.run.id.clone());
    }
    let mut expected: Vec<String> = ok_runs.iter().chain(&bad.run_ids).cloned().collect();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected, "every run of ada's once, newest first");

    let failed = RunFilter {
        status: Some(RunStatus::Failed),
        limit: 10,
        ..RunFilter::default()
    };
    let (page, _) = inspect::runs(&t.db, "ada", &failed).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].run.id, bad.run_ids[0]);
    assert_eq!(page[0].event_name, "test/bad");
    assert_eq!(page[0].attempts, 1);

    let by_function = RunFilter {
        function_id: Some("ok".into()),
        limit: 10,
        ..RunFilter::default()
    };
    assert_eq!(
        inspect::runs(&t.db, "ada", &by_function)
            .await
            .unwrap()
            .0
            .len(),
        7
    );

    // Search by run id or by event id; another user's id finds nothing.
    let by_run = RunFilter {
        search: Some(ok_runs[3].clone()),
        limit: 10,
        ..RunFilter::default()
    };
    assert_eq!(
        inspect::runs(&t.db, "ada", &by_run).await.unwrap().0.len(),
        1
    );
    let by_event = RunFilter {
        search: Some(bad.event_id.clone()),
        limit: 10,
        ..RunFilter::default()
    };
    assert_eq!(
        inspect::runs(&t.db, "ada", &by_event).await.unwrap().0[0]
            .run
            .id,
        bad.run_ids[0]
    );
    let others = RunFilter {
        search: Some(bobs.run_ids[0].clone()),
        limit: 10,
        ..RunFilter::default()
    };
    assert!(inspect::runs(&t.db, "ada", &others)
        .await
        .unwrap()
        .0
        .is_empty());

    let mut counts = inspect::counts(&t.db, "ada", None).await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        vec![(RunStatus::Completed, 7), (RunStatus::Failed, 1)]
    );
    assert_eq!(
        inspect::counts(&t.db, "bob", None).await.unwrap(),
        vec![(RunStatus::Completed, 1)]
    );

    // A run's page: found for its owner only, with its steps.
    let (listing, event, steps) = inspect::run_detail(&t.db, "ada", &bad.run_ids[0], 1000)
        .await
        .unwrap()
        .expect("ada's run");
    assert_eq!(listing.run.status.as_str(), "failed");
    assert_eq!(event.name, "test/bad");
    assert_eq!(steps.len(), 1);
    assert!(inspect::run_detail(&t.db, "bob", &bad.run_ids[0], 1000)
        .await
        .unwrap()
        .is_none());

    // Events: newest first, with the runs they triggered, scoped too.
    let (events, more) = inspect::events(&t.db, "ada", None, 5, 10).await.unwrap();
    assert!(more);
    assert_eq!(events.len(), 5);
    assert_eq!(events[0].event.id, bad.event_id);
    assert_eq!(events[0].runs[0].id, bad.run_ids[0]);
    assert!(!events[0].more_runs);
    let (rest, more) = inspect::events(&t.db, "ada", Some(&events[4].event.id), 5, 10)
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(rest.len(), 3);
    let (bob_events, _) = inspect::events(&t.db, "bob", None, 50, 10).await.unwrap();
    assert_eq!(bob_events.len(), 1);
}

#[tokio::test]
async fn invoke_runs_one_function_and_rerun_links_to_the_original() {
    let t = test_db().await;
    let engine = engine(&t.db);
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let invoked = engine
        .invoke(
            &t.db,
            "ok",
            NewEvent::new("test/bad", json!({})).for_user("ada"),
        )
        .await
        .unwrap();
    assert_eq!(invoked.run_ids.len(), 1, "only the invoked function runs");
    wait_for_all(&mut updates, &invoked.run_ids, RunStatus::Completed).await;
    assert!(engine
        .invoke(&t.db, "missing", NewEvent::new("x", json!({})))
        .await
        .is_err());

    let again = engine
        .rerun(&invoked.run_ids[0])
        .await
        .unwrap()
        .expect("finished runs re-run");
    wait_for_all(
        &mut updates,
        std::slice::from_ref(&again),
        RunStatus::Completed,
    )
    .await;
    workers.shutdown().await;
    let (listing, event, _) = inspect::run_detail(&t.db, "ada", &again, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        listing.run.rerun_of.as_deref(),
        Some(invoked.run_ids[0].as_str())
    );
    assert_eq!(event.id, invoked.event_id, "same event");
    assert_eq!(listing.run.function_id, "ok");
}

/// Now on the clock run ids are made with: the system's.
fn id_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn runs_sent_per_minute_count_the_users_runs_of_the_last_hour_by_minute() {
    let t = test_db().await;
    let engine = engine(&t.db);
    ada_and_bob(&t.db, &engine, 3).await;
    let now = id_clock();
    let per_minute = |user: &'static str, function: Option<&'static str>, at: i64| {
        let db = t.db.clone();
        async move {
            inspect::sent_per_minute(&db, user, function, at, 60)
                .await
                .unwrap()
        }
    };
    let ada = per_minute("ada", None, now).await;
    assert_eq!(ada.len(), 60);
    // All in the last minute or two (the sends may straddle a minute's turn).
    assert_eq!(ada.iter().sum::<u32>(), 4);
    assert_eq!(ada[58] + ada[59], 4);
    assert_eq!(
        per_minute("ada", Some("ok"), now).await.iter().sum::<u32>(),
        3
    );
    assert_eq!(per_minute("bob", None, now).await.iter().sum::<u32>(), 1);
    assert_eq!(per_minute("eve", None, now).await.iter().sum::<u32>(), 0);
    // An hour later they are out of the window; a minute later they moved one left.
    assert_eq!(
        per_minute("ada", None, now + 3_600_000)
            .await
            .iter()
            .sum::<u32>(),
        0
    );
    let later = per_minute("ada", None, now + 60_000).await;
    assert_eq!(later[57] + later[58], 4);
    assert_eq!(later[59], 0);
}

#[tokio::test]
async fn activity_charts_each_functions_runs_of_the_window_by_outcome_and_latency() {
    let t = test_db().await;
    let engine = engine(&t.db);
    ada_and_bob(&t.db, &engine, 3).await;

    let now = id_clock();
    let span = 300_000;
    let ada = inspect::activity(&t.db, "ada", now, 12, span)
        .await
        .unwrap();
    assert_eq!(ada.len(), 2, "{ada:?}");
    let total = |function: &str, pick: fn(&inspect::Activity) -> u32| -> u32 {
        ada[function].iter().map(pick).sum()
    };
    assert_eq!(ada["ok"].len(), 12);
    assert_eq!(
        (
            total("ok", |a| a.completed),
            total("ok", |a| a.failed),
            total("ok", |a| a.other)
        ),
        (3, 0, 0)
    );
    assert_eq!(
        (total("bad", |a| a.completed), total("bad", |a| a.failed)),
        (0, 1)
    );
    // Sent just now: in the last span (or the two last, across a span's turn), each
    // with its percentiles; the spans without runs have none.
    let busy: Vec<&inspect::Activity> = ada["ok"].iter().filter(|a| a.completed > 0).collect();
    assert!(ada["ok"][..10]
        .iter()
        .all(|a| *a == inspect::Activity::default()));
    for a in &busy {
        let duration = a.duration.expect("finished runs have a duration");
        let delay = a.delay.expect("started runs have a delay");
        assert!(0 <= duration.p50 && duration.p50 <= duration.p95, "{a:?}");
        assert!(0 <= delay.p50 && delay.p50 <= delay.p95, "{a:?}");
    }
    let bobs_view = inspect::activity(&t.db, "bob", now, 12, span)
        .await
        .unwrap();
    assert_eq!(bobs_view.len(), 1);
    assert_eq!(bobs_view["ok"].iter().map(|a| a.completed).sum::<u32>(), 1);
    assert!(inspect::activity(&t.db, "eve", now, 12, span)
        .await
        .unwrap()
        .is_empty());
    // An hour later the window holds none of them.
    assert!(inspect::activity(&t.db, "ada", now + 3_600_000, 12, span)
        .await
        .unwrap()
        .is_empty());
}
