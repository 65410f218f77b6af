//! Server functions, one file per page family. Each checks the session itself; the UI
//! hiding a button is never the only guard.
pub mod auth;
pub mod events;
pub mod functions;
pub mod runs;
pub mod workflows;

/// Runs or events per page of a list.
pub const PAGE_SIZE: u64 = 25;

#[cfg(feature = "ssr")]
pub(crate) use ssr::*;

/// What the server functions share.
#[cfg(feature = "ssr")]
mod ssr {
    use crate::engine::EngineError;
    use crate::error::AppError;
    use crate::state::AppState;

    /// The server's shared state, from the Leptos context of the current request.
    pub(crate) fn app_state() -> Result<AppState, AppError> {
        leptos::prelude::use_context::<AppState>()
            .ok_or_else(|| AppError::internal("application state is missing"))
    }

    /// An engine error as the browser may see it: bad input says why; anything else is
    /// logged and shown only as a reference to the log line.
    pub(crate) fn engine_error(err: EngineError) -> AppError {
        match err {
            EngineError::InvalidEvent(m) | EngineError::InvalidFunction(m) => {
                AppError::InvalidInput(m)
            }
            EngineError::InvalidConfig(m) | EngineError::Database(m) => {
                AppError::internal(format_args!("engine: {m}"))
            }
        }
    }

    /// The current request's parts (headers, client address).
    pub(crate) fn request_parts() -> Result<http::request::Parts, AppError> {
        leptos::prelude::use_context::<http::request::Parts>()
            .ok_or_else(|| AppError::internal("request is missing"))
    }

    /// The address the current request comes from (see `auth::client_address`).
    pub(crate) fn client_address(state: &AppState) -> Result<String, AppError> {
        let parts = request_parts()?;
        Ok(crate::auth::client_address(
            &parts,
            state.config.client_ip_header.as_ref(),
        ))
    }

    /// Counts one action (a send, an invoke, a re-run) against the user's limit.
    pub(crate) fn count_action(state: &AppState, user_id: &str) -> Result<(), AppError> {
        state.limits.action(user_id).map_err(AppError::answered)
    }

    /// Parses user-typed JSON; an empty box means `{}`.
    pub(crate) fn parse_json(text: &str) -> Result<serde_json::Value, AppError> {
        if text.trim().is_empty() {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_str(text)
            .map_err(|e| AppError::InvalidInput(format!("data is not valid JSON: {e}")))
    }

    /// Stored JSON text, pretty-printed for a page.
    pub(crate) fn pretty(json_text: &str) -> String {
        serde_json::from_str::<serde_json::Value>(json_text)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| json_text.to_string())
    }

    /// A form field, trimmed; `None` when empty.
    pub(crate) fn no_empty(v: Option<String>) -> Option<String> {
        v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }
}
