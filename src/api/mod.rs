//! Server functions, grouped like the routers of an RPC API. Each checks the session
//! itself; the UI hiding a button is never the only guard.
pub mod auth;
pub mod runs;
pub mod workflows;

/// The server's shared state, from the Leptos context of the current request.
#[cfg(feature = "ssr")]
pub(crate) fn app_state() -> Result<crate::state::AppState, crate::error::AppError> {
    leptos::prelude::use_context::<crate::state::AppState>()
        .ok_or_else(|| crate::error::AppError::Server("application state is missing".into()))
}
