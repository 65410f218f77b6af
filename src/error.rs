//! The one error type server functions return and pages show.
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// What went wrong, in words a user can be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AppError {
    /// No valid session: sign in first.
    #[error("please sign in")]
    Unauthorized,
    /// The thing asked for does not exist, or is not the caller's.
    #[error("not found")]
    NotFound,
    /// The input was rejected; the message says why.
    #[error("{0}")]
    InvalidInput(String),
    /// Too many failed sign-ins; the number is how many seconds to wait.
    #[error("too many failed sign-ins; try again in {0} s")]
    TooManyAttempts(u64),
    /// Something failed on the server; details are in the server log, not here.
    #[error("server error: {0}")]
    Server(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Server(value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        tracing::error!(error = %err, "database error");
        AppError::Server("database error".into())
    }
}

#[cfg(feature = "ssr")]
impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(err: sea_orm::TransactionError<AppError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(app) => app,
        }
    }
}
