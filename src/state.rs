//! What every request handler and server function can reach.
use std::sync::Arc;

use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use crate::config::Config;
use crate::engine::Engine;
use crate::limits::Limits;

/// Shared server state, given to axum routes and provided as Leptos context.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub engine: Engine,
    /// Per-user limits on actions and live streams.
    pub limits: Arc<Limits>,
    /// Turns true when the server starts shutting down, to end open streams.
    pub stopping: watch::Receiver<bool>,
}
