//! Sign-up, sign-in, sign-out and "who am I".
use leptos::prelude::*;

use crate::domain::SignedInUser;
use crate::error::AppError;

/// Creates an account, signs it in and sends the browser home.
#[server(endpoint = "sign_up")]
pub async fn sign_up(email: String, password: String) -> Result<(), AppError> {
    let state = super::app_state()?;
    let client = super::client_address(&state)?;
    let limits = &state.config.auth_limits;
    let user = crate::auth::sign_up(&state.db, limits, &client, &email, &password)
        .await
        .map_err(AppError::answered)?;
    ssr::start_session(&state, &user.id).await?;
    leptos_axum::redirect("/");
    Ok(())
}

/// Checks the credentials, signs in and sends the browser home.
#[server(endpoint = "sign_in")]
pub async fn sign_in(email: String, password: String) -> Result<(), AppError> {
    let state = super::app_state()?;
    let client = super::client_address(&state)?;
    let limits = &state.config.auth_limits;
    let user = crate::auth::sign_in(&state.db, limits, &client, &email, &password)
        .await
        .map_err(AppError::answered)?;
    ssr::start_session(&state, &user.id).await?;
    leptos_axum::redirect("/");
    Ok(())
}

/// Ends the current session and sends the browser to sign-in.
#[server(endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    let state = super::app_state()?;
    let parts = super::request_parts()?;
    if let Some(token) =
        crate::auth::token_from_headers(&parts.headers, state.config.secure_cookies)
    {
        crate::auth::delete_session(&state.db, &token).await?;
    }
    ssr::set_cookie(&crate::auth::clear_cookie(state.config.secure_cookies))?;
    leptos_axum::redirect("/signin");
    Ok(())
}

/// The signed-in user, or `Unauthorized`.
#[server(endpoint = "current_user")]
pub async fn current_user() -> Result<SignedInUser, AppError> {
    crate::auth::require_user().await
}

#[cfg(feature = "ssr")]
mod ssr {
    use http::header::SET_COOKIE;
    use http::HeaderValue;

    use crate::error::AppError;
    use crate::state::AppState;

    pub async fn start_session(state: &AppState, user_id: &str) -> Result<(), AppError> {
        let ttl = state.config.session_ttl;
        let token = crate::auth::create_session(&state.db, user_id, ttl).await?;
        set_cookie(&crate::auth::session_cookie(
            &token,
            ttl,
            state.config.secure_cookies,
        ))
    }

    pub fn set_cookie(cookie: &str) -> Result<(), AppError> {
        let response = leptos::prelude::use_context::<leptos_axum::ResponseOptions>()
            .ok_or_else(|| AppError::internal("response is missing"))?;
        let value = HeaderValue::from_str(cookie)
            .map_err(|e| AppError::internal(format!("bad cookie header: {e}")))?;
        response.append_header(SET_COOKIE, value);
        Ok(())
    }
}
