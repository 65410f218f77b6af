//! `fails-on-purpose`: fails at once, every time; its failure handler
//! (`fails-on-purpose-on-failure`) records which run failed and why, as a run of its own.
use serde_json::json;

use crate::engine::{FnError, Function};

pub const TRIGGER: &str = "demo/fails";

pub fn function() -> Function {
    Function::new("fails-on-purpose", |_ctx| async move {
        Err::<(), _>(FnError::non_retriable("this function fails on purpose"))
    })
    .describe("Fails at once, every time; its on_failure handler records the failure as a run of its own.")
    .trigger(TRIGGER)
    .on_failure(|ctx| async move {
        let failure = ctx.failure()?;
        let recorded = ctx
            .step
            .run("record the failure", || async {
                Ok(json!({
                    "failed_run": failure.run_id,
                    "error": failure.error,
                    "event": failure.event.name,
                }))
            })
            .await?;
        Ok(json!({ "recorded": recorded }))
    })
}
