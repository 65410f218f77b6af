//! The two gates: a middleware for pages and `require_user()` for server functions.
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::{Method, StatusCode};
use leptos::prelude::use_context;

use super::session::{token_from_headers, user_for_token};
use crate::domain::SignedInUser;
use crate::error::AppError;
use crate::state::AppState;

/// Pages an anonymous visitor may open.
const PUBLIC_PAGES: [&str; 2] = ["/signin", "/signup"];

/// The signed-in user of the current server-function call, or `Unauthorized` (HTTP 401).
pub async fn require_user() -> Result<SignedInUser, AppError> {
    let state = use_context::<AppState>()
        .ok_or_else(|| AppError::internal("application state is missing"))?;
    let parts = use_context::<http::request::Parts>()
        .ok_or_else(|| AppError::internal("request is missing"))?;
    let user = match token_from_headers(&parts.headers, state.config.secure_cookies) {
        Some(token) => user_for_token(&state.db, &token).await?,
        None => None,
    };
    match user {
        Some(user) => Ok(user.into()),
        None => Err(AppError::Unauthorized.answered()),
    }
}

/// Page requests (not assets, not server functions) need a session: anonymous visitors
/// go to sign-in, and signed-in users who open sign-in or sign-up go home.
pub async fn guard_pages(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() != Method::GET || !is_page(path) {
        return next.run(req).await;
    }
    let public = PUBLIC_PAGES.contains(&path);
    let signed_in = match token_from_headers(req.headers(), state.config.secure_cookies) {
        Some(token) => match user_for_token(&state.db, &token).await {
            Ok(user) => user.is_some(),
            Err(_) => {
                return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
            }
        },
        None => false,
    };
    match (public, signed_in) {
        (true, true) => Redirect::to("/").into_response(),
        (false, false) => Redirect::to("/signin").into_response(),
        _ => next.run(req).await,
    }
}

/// Whether `path` names a page rather than a static file, a server function or a stream.
fn is_page(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or_default();
    !path.starts_with("/pkg/") && !path.starts_with("/api/") && !last.contains('.')
}

#[cfg(test)]
mod tests {
    use super::is_page;

    #[test]
    fn pages_are_told_from_assets_and_server_functions() {
        assert!(is_page("/"));
        assert!(is_page("/runs/abc"));
        assert!(!is_page("/pkg/nodebase.wasm"));
        assert!(!is_page("/favicon.ico"));
        assert!(!is_page("/api/get_workflows"));
    }
}
