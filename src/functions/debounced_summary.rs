//! `debounced-summary` (trigger `demo/typing`): a burst of typing events from one user
//! makes one run, three seconds after the last of them, which outputs that last
//! event's `data.text`.
use std::time::Duration;

use serde_json::json;

use crate::engine::{Debounce, Function};

pub fn function() -> Function {
    Function::new("debounced-summary", |ctx| async move {
        Ok(json!({ "text": ctx.event.data["text"] }))
    })
    .describe("One run per burst of typing, 3 s after the last event; outputs its text.")
    .trigger("demo/typing")
    .debounce(Debounce::new(Duration::from_secs(3)))
}
