//! CEL expressions, the language Inngest uses for `if` and `match`: wait conditions,
//! cancel rules and trigger filters all go through here (the `cel` crate evaluates).
use serde_json::Value;

/// Checks that `expression` is CEL the evaluator accepts.
pub(crate) fn check(expression: &str) -> Result<(), String> {
    cel::Program::compile(expression)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Evaluates `expression` with `variables` (JSON values by name); an error if it does
/// not parse, fails, or gives something other than a bool.
pub(crate) fn holds(expression: &str, variables: Vec<(&str, Value)>) -> Result<bool, String> {
    let program = cel::Program::compile(expression).map_err(|e| e.to_string())?;
    let mut context = cel::Context::default();
    for (name, value) in variables {
        context
            .add_variable(name, value)
            .map_err(|e| e.to_string())?;
    }
    match program.execute(&context).map_err(|e| e.to_string())? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("the expression gave {other:?}, not a bool")),
    }
}
