//! `fan-out`: sends `data.count` `demo/fan-out.item` events in one `send_event` step
//! (sent once, whatever happens to the run), each handled by `fan-out-item`.
use serde_json::json;

use crate::engine::{FnError, Function, NewEvent, MAX_SENT_EVENTS};

pub const ITEM: &str = "demo/fan-out.item";

pub fn function() -> Function {
    Function::new("fan-out", |ctx| async move {
        let count = ctx.event.data["count"].as_u64().unwrap_or(3);
        if count > MAX_SENT_EVENTS as u64 {
            return Err(FnError::non_retriable(format!(
                "data.count is {count}; at most {MAX_SENT_EVENTS}"
            )));
        }
        let items = (0..count)
            .map(|i| NewEvent::new(ITEM, json!({ "index": i, "of": count })))
            .collect();
        let sent = ctx.step.send_event("send the items", items).await?;
        Ok(json!({ "sent": sent.len() }))
    })
    .describe("Sends data.count (default 3) demo/fan-out.item events in one step; fan-out-item handles each.")
    .trigger("demo/fan-out")
}

/// Handles one item: returns its place in the batch.
pub fn item() -> Function {
    Function::new("fan-out-item", |ctx| async move {
        Ok(json!({ "index": ctx.event.data["index"], "of": ctx.event.data["of"] }))
    })
    .describe("Handles one demo/fan-out.item: returns its index.")
    .trigger(ITEM)
}
