//! The engine's errors: what callers of the API get, and what handlers return.
use std::time::Duration;

/// An error from the engine's API (sending, cancelling, building).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The event was refused; nothing was stored.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// A function definition is unusable.
    #[error("invalid function: {0}")]
    InvalidFunction(String),
    /// The engine's settings are unusable.
    #[error("invalid engine settings: {0}")]
    InvalidConfig(String),
    /// The database failed; the message says which operation.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sea_orm::DbErr> for EngineError {
    fn from(err: sea_orm::DbErr) -> Self {
        EngineError::Database(err.to_string())
    }
}

/// Why a step or a handler did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FnError {
    /// A failure worth another attempt (the default for errors).
    #[error("{0}")]
    Failed(String),
    /// A failure no retry can fix: the run fails at once. A step that has failed for good
    /// (retries spent, or this) returns one to its handler, which may handle it.
    #[error("non-retriable: {0}")]
    NonRetriable(String),
    /// A failure to retry no sooner than `after`.
    #[error("retry after {after:?}: {message}")]
    RetryAfter { after: Duration, message: String },
}

impl FnError {
    /// A retriable failure with `message`.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        FnError::Failed(message.to_string())
    }

    /// A failure that fails the run at once.
    pub fn non_retriable(message: impl std::fmt::Display) -> Self {
        FnError::NonRetriable(message.to_string())
    }

    /// What went wrong, without the kind of failure.
    pub fn message(&self) -> &str {
        match self {
            FnError::Failed(m) | FnError::NonRetriable(m) => m,
            FnError::RetryAfter { message, .. } => message,
        }
    }

    /// A failure to retry after `after`.
    pub fn retry_after(after: Duration, message: impl std::fmt::Display) -> Self {
        FnError::RetryAfter {
            after,
            message: message.to_string(),
        }
    }
}

impl From<sea_orm::DbErr> for FnError {
    fn from(err: sea_orm::DbErr) -> Self {
        FnError::Failed(format!("database error: {err}"))
    }
}

impl From<serde_json::Error> for FnError {
    fn from(err: serde_json::Error) -> Self {
        FnError::NonRetriable(format!("JSON error: {err}"))
    }
}

impl From<String> for FnError {
    fn from(message: String) -> Self {
        FnError::Failed(message)
    }
}

impl From<&str> for FnError {
    fn from(message: &str) -> Self {
        FnError::Failed(message.to_string())
    }
}

/// `text` as every database can store it: NUL, which PostgreSQL refuses in text,
/// becomes U+FFFD.
pub(crate) fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}
