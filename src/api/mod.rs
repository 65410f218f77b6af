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
            .ok_or_else(|| AppError::Server("application state is missing".into()))
    }

    /// An engine error as the browser may see it: bad input says why; a database
    /// failure is logged here and shown only as "database error".
    pub(crate) fn engine_error(err: EngineError) -> AppError {
        match err {
            EngineError::InvalidEvent(m) | EngineError::InvalidFunction(m) => {
                AppError::InvalidInput(m)
            }
            EngineError::InvalidConfig(m) | EngineError::Database(m) => {
                tracing::error!(error = %m, "engine database error");
                AppError::Server("database error".into())
            }
        }
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
