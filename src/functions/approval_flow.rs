//! `approval-flow`: waits up to an hour for a person's decision on a request — the
//! `demo/approval.decided` event of the same user with the same `data.request_id` —
//! and returns it, or says that nobody decided in time.
use std::time::Duration;

use serde_json::json;

use crate::engine::{Function, WaitFor};

pub const REQUESTED: &str = "demo/approval.requested";
pub const DECIDED: &str = "demo/approval.decided";
/// Withdrawing the request cancels its run, whatever it is doing.
pub const WITHDRAWN: &str = "demo/approval.withdrawn";

/// How long a request waits for its decision.
pub const DECISION_WINDOW: Duration = Duration::from_secs(3600);

pub fn function() -> Function {
    Function::new("approval-flow", |ctx| async move {
        let decision = ctx
            .step
            .wait_for_event(
                "wait for the decision",
                WaitFor::event(DECIDED, DECISION_WINDOW).matching("data.request_id"),
            )
            .await?;
        Ok(match decision {
            Some(decision) => json!({ "approved": decision.data["approved"] }),
            None => json!({ "approved": null, "timed_out": true }),
        })
    })
    .describe("Waits up to 1 hour for demo/approval.decided with the same data.request_id; returns its data.approved. demo/approval.withdrawn cancels it.")
    .cancel_on(WaitFor::event(WITHDRAWN, DECISION_WINDOW).matching("data.request_id"))
    .trigger(REQUESTED)
    .waits_for(DECIDED)
}
