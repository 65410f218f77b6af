//! SeaORM entities, one module per table.
pub mod session;
pub mod user;
pub mod workflow;
