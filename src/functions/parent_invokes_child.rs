//! `parent-invokes-child`: invokes `child-doubles` with the event's `data.n` and returns
//! the child's output as `{"child": {"doubled": 2n}}`.
use std::time::Duration;

use serde_json::json;

use crate::engine::{FnError, Function};

/// How long the parent waits for its child.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

pub fn parent() -> Function {
    Function::new("parent-invokes-child", |ctx| async move {
        let n = ctx.event.data["n"].clone();
        let child = ctx
            .step
            .invoke(
                "ask the child",
                "child-doubles",
                json!({ "n": n }),
                CHILD_TIMEOUT,
            )
            .await?;
        Ok(json!({ "child": child }))
    })
    .describe(
        "Invokes child-doubles with data.n and returns its output; each run page links the other.",
    )
    .trigger("demo/parent")
}

pub fn child() -> Function {
    Function::new("child-doubles", |ctx| async move {
        let n = &ctx.event.data["n"];
        let doubled = match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => json!(i.saturating_mul(2)),
            (None, Some(x)) => json!(2.0 * x),
            _ => return Err(FnError::non_retriable("data.n must be a number")),
        };
        Ok(json!({ "doubled": doubled }))
    })
    .describe("Returns {\"doubled\": 2n} for data.n.")
    .trigger("demo/child")
}
