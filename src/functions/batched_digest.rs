//! `batched-digest` (trigger `demo/note`): a user's notes are gathered three to a run —
//! a full batch starts at once, a partial one 5 s after its first note — and the run
//! outputs their `data.text`, in the order they were sent.
use std::time::Duration;

use serde_json::{json, Value};

use crate::engine::{Batch, Function};

pub fn function() -> Function {
    Function::new("batched-digest", |ctx| async move {
        let notes: Vec<Value> = ctx.events.iter().map(|e| e.data["text"].clone()).collect();
        Ok(json!({ "notes": notes }))
    })
    .describe(
        "Gathers a user's notes three to a run (or what came within 5 s); outputs their texts.",
    )
    .trigger("demo/note")
    .batch(Batch::new(3, Duration::from_secs(5)))
}
