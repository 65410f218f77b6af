//! `per-user-serial` (trigger `demo/serial`): one run per user at a time. Its one step
//! works for two seconds; a second send by the same user waits, queued, until the first
//! run is done, while other users' runs go side by side. A send with `"urgent": true` in
//! its data goes ahead of the user's sends waiting before it (a minute's head start).
use std::time::Duration;

use serde_json::json;

use crate::engine::{Function, Priority};

pub fn function() -> Function {
    Function::new("per-user-serial", |ctx| async move {
        let worked = ctx
            .step
            .run("work-for-two-seconds", || async {
                let started = crate::db::now_ms();
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(json!({ "started_at": started, "finished_at": crate::db::now_ms() }))
            })
            .await?;
        Ok(worked)
    })
    .describe(
        "Works for 2 s in one step; one run per user at a time, urgent ones (data.urgent) first.",
    )
    .trigger("demo/serial")
    .concurrency_key(1, "event.user_id")
    .priority(Priority::head_start(
        "has(event.data.urgent) && event.data.urgent == true ? 60 : 0",
    ))
}
