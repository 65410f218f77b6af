//! Prometheus metrics after a known workload, scraped over HTTP from the metrics
//! listener: events by name (unknown names as `other`), runs started and ended by
//! function and outcome, step attempts and failures, the send→start histogram's count,
//! and the queue gauge. One test: the recorder is process-wide.
#![cfg(feature = "ssr")]

mod common;

use std::time::Duration;

use common::{fast, test_db, wait_for, Updates};
use nodebase::engine::{Engine, FnError, Function, NewEvent, RunStatus};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value of the sample `series` (name and labels, as rendered), if present.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test]
async fn a_scrape_after_a_known_workload_counts_it() {
    let handle = nodebase::metrics::install().unwrap();
    let t = test_db().await;
    let engine = Engine::builder(t.db.clone())
        .function(
            Function::new("counted", |ctx| async move {
                let fail = ctx.event.data["fail"] == json!(true);
                ctx.step
                    .run("work", || async move {
                        if fail {
                            return Err(FnError::non_retriable("asked to fail"));
                        }
                        Ok(1)
                    })
                    .await?;
                Ok(())
            })
            .trigger("test/m"),
        )
        .function(
            Function::new("sleeper", |ctx| async move {
                ctx.step.sleep("a day", Duration::from_secs(86_400)).await?;
                Ok(())
            })
            .trigger("test/sleep"),
        )
        .config(fast())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let mut counted = Vec::new();
    for fail in [false, false, true] {
        let receipt = engine
            .send(&t.db, NewEvent::new("test/m", json!({ "fail": fail })))
            .await
            .unwrap();
        counted.push((receipt.run_ids[0].clone(), fail));
    }
    engine
        .send(&t.db, NewEvent::new("someone/made.this.up", json!({})))
        .await
        .unwrap();
    let sleeper = engine
        .send(&t.db, NewEvent::new("test/sleep", json!({})))
        .await
        .unwrap()
        .run_ids[0]
        .clone();
    for (id, fail) in &counted {
        let status = if *fail {
            RunStatus::Failed
        } else {
            RunStatus::Completed
        };
        wait_for(&mut updates, id, status).await;
    }
    wait_for(&mut updates, &sleeper, RunStatus::Sleeping).await;
    engine.cancel(&sleeper).await.unwrap();
    wait_for(&mut updates, &sleeper, RunStatus::Cancelled).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = nodebase::metrics::router(handle, engine.clone(), t.db.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let page = scrape(addr).await;

    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&page, series), Some(value), "{series} in:\n{page}");
    };
    expect(r#"nodebase_events_received_total{name="test/m"}"#, 3.0);
    expect(r#"nodebase_events_received_total{name="test/sleep"}"#, 1.0);
    expect(r#"nodebase_events_received_total{name="other"}"#, 1.0);
    expect(r#"nodebase_runs_started_total{function="counted"}"#, 3.0);
    expect(r#"nodebase_runs_started_total{function="sleeper"}"#, 1.0);
    expect(
        r#"nodebase_runs_ended_total{function="counted",status="completed"}"#,
        2.0,
    );
    expect(
        r#"nodebase_runs_ended_total{function="counted",status="failed"}"#,
        1.0,
    );
    expect(
        r#"nodebase_runs_ended_total{function="sleeper",status="cancelled"}"#,
        1.0,
    );
    expect(
        r#"nodebase_step_attempts_total{function="counted",kind="run"}"#,
        3.0,
    );
    expect(
        r#"nodebase_step_failures_total{function="counted",kind="run"}"#,
        1.0,
    );
    expect(
        r#"nodebase_step_duration_seconds_count{function="counted",kind="run"}"#,
        3.0,
    );
    expect(
        r#"nodebase_send_to_start_seconds_count{function="counted"}"#,
        3.0,
    );
    expect(r#"nodebase_queue_depth{function="counted"}"#, 0.0);
    assert!(sample(&page, "nodebase_commit_batch_size_count").unwrap_or(0.0) >= 1.0);
    assert!(sample(&page, "nodebase_claim_batch_size_count").unwrap_or(0.0) >= 1.0);
    assert!(!page.contains(&counted[0].0), "no run id is a label");
    workers.shutdown().await;
}
