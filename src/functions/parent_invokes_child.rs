//! `parent-invokes-child`: invokes `child-doubles` with the event's `data.n` and returns
//! the child's output as `{"child": {"doubled": 2n}}`.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::engine::Function;

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

/// A number as JSON has it: whole numbers stay whole.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Number {
    Whole(i64),
    Real(f64),
}

/// What `child-doubles` is given…
#[derive(Debug, Deserialize)]
pub struct Doubling {
    pub n: Number,
}

/// …and what it returns.
#[derive(Debug, Serialize)]
pub struct Doubled {
    pub doubled: Number,
}

/// A typed function: an event whose data has no number `n` fails its run at once,
/// saying so.
pub fn child() -> Function {
    Function::typed("child-doubles", |_ctx, Doubling { n }| async move {
        let doubled = match n {
            Number::Whole(i) => Number::Whole(i.saturating_mul(2)),
            Number::Real(x) => Number::Real(2.0 * x),
        };
        Ok(Doubled { doubled })
    })
    .describe("Returns {\"doubled\": 2n} for data.n (typed: other data fails the run).")
    .trigger("demo/child")
}
