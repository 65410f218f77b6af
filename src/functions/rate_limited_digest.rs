//! `rate-limited-digest` (trigger `demo/digest`): at most one run per minute for each
//! user. A second send within the minute is recorded with a skipped run that says so,
//! and does nothing.
use std::time::Duration;

use serde_json::json;

use crate::engine::{Function, RateLimit};

pub fn function() -> Function {
    Function::new("rate-limited-digest", |ctx| async move {
        let data = ctx.event.data.clone();
        let sent = ctx
            .step
            .run(
                "send-digest",
                || async move { Ok(json!({ "digest_of": data })) },
            )
            .await?;
        Ok(sent)
    })
    .describe("Sends a digest at most once per minute per user; extra sends are skipped.")
    .trigger("demo/digest")
    .rate_limit(RateLimit::new(1, Duration::from_secs(60)).key("event.user_id"))
}
