//! `flaky-with-fallback`: calls a service that is always down, in a step retried twice;
//! once the step has failed for good the handler catches its error and returns it as
//! `{"recovered": "<error>"}` instead of failing the run.
use serde_json::json;

use crate::engine::{FnError, Function};

pub fn function() -> Function {
    Function::new("flaky-with-fallback", |ctx| async move {
        let called = ctx
            .step
            .run("call the flaky service", || async {
                Err::<(), _>(FnError::failed("the service answered 503"))
            })
            .await;
        Ok(match called {
            Ok(()) => json!({ "recovered": null }),
            Err(err) => json!({ "recovered": err.message() }),
        })
    })
    .describe("A step that always fails, retried twice; the handler catches its final error and returns it.")
    .trigger("demo/flaky")
    .retries(2)
}
