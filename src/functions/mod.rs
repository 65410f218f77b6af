//! The app's own background functions, built only from the engine's public API.
pub mod approval_flow;
pub mod fan_out;
pub mod flaky_with_fallback;
pub mod hello_world;
pub mod parent_invokes_child;

use sea_orm::DatabaseConnection;

use crate::engine::Function;

/// Every function the server registers.
pub fn all(db: &DatabaseConnection) -> Vec<Function> {
    vec![
        hello_world::function(db.clone()),
        approval_flow::function(),
        flaky_with_fallback::function(),
        fan_out::function(),
        fan_out::item(),
        parent_invokes_child::parent(),
        parent_invokes_child::child(),
    ]
}
