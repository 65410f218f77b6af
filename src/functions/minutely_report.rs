//! `minutely-report`: runs at the start of every minute (UTC) and records the tick's
//! time as its output. Its runs belong to no user; the Functions page shows its
//! schedule and its latest tick.
use serde_json::json;

use crate::engine::Function;

pub fn function() -> Function {
    Function::new("minutely-report", |ctx| async move {
        Ok(json!({ "tick_at": ctx.event.data["tick_at"] }))
    })
    .describe("Runs every minute on a cron schedule and records the tick's time.")
    .cron("* * * * *")
}
