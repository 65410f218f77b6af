//! SeaORM entities, one module per table.
pub mod auth_throttle;
pub mod session;
pub mod user;
pub mod workflow;
