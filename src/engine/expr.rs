//! CEL expressions, the language Inngest uses for `if` and `match`: wait conditions,
//! cancel rules, trigger filters and the keys of flow control all go through here (the `cel`
//! crate evaluates).
use serde_json::Value;

/// Checks that `expression` is CEL the evaluator accepts.
pub(crate) fn check(expression: &str) -> Result<(), String> {
    cel::Program::compile(expression)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks a key expression (concurrency, throttle, debounce), saying which one failed.
pub(crate) fn check_key(expression: &str) -> Result<(), String> {
    check(expression).map_err(|e| format!("{expression:?} is not valid CEL: {e}"))
}

/// Evaluates `expression` with `variables` (JSON values by name); an error if it does
/// not parse, fails, or gives something other than a bool.
pub(crate) fn holds(expression: &str, variables: Vec<(&str, Value)>) -> Result<bool, String> {
    match evaluate(expression, variables)? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("the expression gave {other:?}, not a bool")),
    }
}

/// Evaluates `expression` with `variables` to a JSON value; an error if it does not
/// parse, fails, or gives something JSON cannot hold.
pub(crate) fn value(expression: &str, variables: Vec<(&str, Value)>) -> Result<Value, String> {
    let value = evaluate(expression, variables)?;
    value.json().map_err(|e| e.to_string())
}

fn evaluate(expression: &str, variables: Vec<(&str, Value)>) -> Result<cel::Value, String> {
    let program = cel::Program::compile(expression).map_err(|e| e.to_string())?;
    let mut context = cel::Context::default();
    for (name, value) in variables {
        context
            .add_variable(name, value)
            .map_err(|e| e.to_string())?;
    }
    program.execute(&context).map_err(|e| e.to_string())
}

/// The value of the key `expression` over `event` (see [`key`]), or `""` without an
/// expression: the key of a limit on the whole function.
pub(crate) fn key_or_empty(expression: Option<&str>, event: &Value) -> String {
    expression.map_or_else(String::new, |expression| key(expression, event))
}

/// The value of the key `expression` over `event` as text — a string as it is, anything
/// else as JSON — or `""` when it cannot be evaluated (such events share one key).
pub(crate) fn key(expression: &str, event: &Value) -> String {
    match value(expression, vec![("event", event.clone())]) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(err) => {
            tracing::debug!(key = %expression, error = %err, "a key could not be evaluated");
            String::new()
        }
    }
}
