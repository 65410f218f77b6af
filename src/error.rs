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
    /// Too many attempts (sign-ins, sign-ups, sends…); the number is how many seconds
    /// to wait. HTTP 429 with `Retry-After`.
    #[error("too many attempts; try again in {0} s")]
    TooManyAttempts(u64),
    /// The server is at capacity for this kind of work; HTTP 503.
    #[error("the server is busy; try again in a moment")]
    Busy,
    /// Something failed on the server; details are in the server log, not here.
    #[error("server error: {0}")]
    Server(String),
}

#[cfg(feature = "ssr")]
impl AppError {
    /// A failure inside the server: the details go to the log under a short reference,
    /// and the client is shown only that reference (to quote when reporting it).
    pub fn internal(detail: impl std::fmt::Display) -> AppError {
        let reference = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        tracing::error!(reference, error = %detail, "internal error");
        AppError::Server(format!("internal error (reference {reference})"))
    }

    /// Gives the response of the current server-function call the status this error is
    /// answered with (and its `Retry-After`), then hands the error on.
    pub fn answered(self) -> AppError {
        if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            let (status, retry_after) = self.status();
            response.set_status(status);
            if let Some(secs) = retry_after {
                response.insert_header(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
            }
        }
        self
    }

    /// The HTTP status this error is answered with, and its `Retry-After` in seconds.
    pub fn status(&self) -> (http::StatusCode, Option<u64>) {
        use http::StatusCode;
        match self {
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            AppError::NotFound => (StatusCode::NOT_FOUND, None),
            AppError::InvalidInput(_) => (StatusCode::BAD_REQUEST, None),
            AppError::TooManyAttempts(secs) => (StatusCode::TOO_MANY_REQUESTS, Some(*secs)),
            AppError::Busy => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
            AppError::Server(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    }
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
        AppError::internal(format_args!("database: {err}"))
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

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_in_the_log_and_the_client_gets_a_reference() {
        let err: AppError = sea_orm::DbErr::Custom("password=hunter2 at db.internal".into()).into();
        let AppError::Server(shown) = &err else {
            panic!("{err:?}")
        };
        assert!(shown.starts_with("internal error (reference "), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("db.internal"));
        assert_eq!(err.status().0, http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            AppError::TooManyAttempts(7).status(),
            (http::StatusCode::TOO_MANY_REQUESTS, Some(7))
        );
    }
}
