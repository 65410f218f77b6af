//! Logs on a real database: with the JSON format, a line logged inside a step is one JSON
//! object that names the step's run (function, run id, claim) and the step (id, kind,
//! attempt), the run's span enclosing the step's.
#![cfg(feature = "ssr")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{fast, test_db, wait_for, Updates};
use nodebase::engine::{Engine, FnError, Function, NewEvent, RunStatus};
use nodebase::logging::{layer, LogFormat};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// The default tokio test runtime runs every task on this thread, so the subscriber set
// for it sees the engine's tasks too.
#[tokio::test]
async fn a_line_logged_in_a_step_names_its_run_and_step_as_json() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(layer(LogFormat::Json, move || writer.clone()));
    let _logging = tracing::subscriber::set_default(subscriber);

    let t = test_db().await;
    let function = Function::new("logs", |ctx| async move {
        ctx.step
            .run("charge", || async {
                tracing::info!(amount = 42, "charging the card");
                Ok::<_, FnError>(json!("charged"))
            })
            .await
    })
    .trigger("test/logs");
    let engine = Engine::builder(t.db.clone())
        .function(function)
        .config(fast())
        .build()
        .unwrap();
    let mut updates = Updates::new(engine.subscribe());
    let workers = engine.start();
    let receipt = engine
        .send(&t.db, NewEvent::new("test/logs", json!({})))
        .await
        .unwrap();
    let run_id = receipt.run_ids[0].clone();
    wait_for(&mut updates, &run_id, RunStatus::Completed).await;
    workers.shutdown().await;

    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let charging = lines
        .iter()
        .find(|l| l["fields"]["message"] == "charging the card")
        .unwrap_or_else(|| panic!("the step's line is missing from {output}"));
    assert_eq!(charging["level"], "INFO");
    assert_eq!(charging["fields"]["amount"], 42);
    // Outermost first: the run, then the step inside it.
    let spans = charging["spans"].as_array().expect("the spans it was in");
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(spans[0]["name"], "run");
    assert_eq!(spans[0]["function"], "logs");
    assert_eq!(spans[0]["run_id"], run_id.as_str());
    assert_eq!(spans[0]["claim"], 1);
    assert_eq!(spans[1]["name"], "step");
    assert_eq!(spans[1]["step"], "charge");
    assert_eq!(spans[1]["kind"], "run");
    assert_eq!(spans[1]["attempt"], 1);
    assert_eq!(charging["span"]["name"], "step", "the innermost span");
}
