//! The app's own background functions, built only from the engine's public API.
pub mod approval_flow;
pub mod batched_digest;
pub mod debounced_summary;
pub mod fails_on_purpose;
pub mod fan_out;
pub mod flaky_with_fallback;
pub mod hello_world;
pub mod minutely_report;
pub mod parent_invokes_child;
pub mod per_user_serial;
pub mod rate_limited_digest;
pub mod throttled_api;

use crate::engine::Function;

/// Every function the server registers; they expect the app's `DatabaseConnection` as
/// engine state (`EngineBuilder::state`).
pub fn all() -> Vec<Function> {
    vec![
        hello_world::function(),
        approval_flow::function(),
        flaky_with_fallback::function(),
        fails_on_purpose::function(),
        minutely_report::function(),
        per_user_serial::function(),
        debounced_summary::function(),
        batched_digest::function(),
        throttled_api::function(),
        rate_limited_digest::function(),
        fan_out::function(),
        fan_out::item(),
        parent_invokes_child::parent(),
        parent_invokes_child::child(),
    ]
}
