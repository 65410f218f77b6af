//! `throttled-api` (trigger `demo/api-call`): stands for a call to a rate-limited API.
//! At most two runs start per ten seconds for each user; a third send in the window
//! waits, queued, and starts when the window has room.
use std::time::Duration;

use serde_json::json;

use crate::engine::{Function, Throttle};

pub fn function() -> Function {
    Function::new("throttled-api", |ctx| async move {
        let called = ctx
            .step
            .run("call-the-api", || async {
                Ok(json!({ "called_at": crate::db::now_ms() }))
            })
            .await?;
        Ok(called)
    })
    .describe("Calls an API at most twice per 10 s per user; the rest wait their turn.")
    .trigger("demo/api-call")
    .throttle(Throttle::new(2, Duration::from_secs(10)).key("event.user_id"))
}
