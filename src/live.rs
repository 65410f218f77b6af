//! `GET /api/live`: a server-sent-events stream of the signed-in user's run updates.
//! The browser's `EventSource` reconnects by itself when the connection drops.
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use http::{HeaderMap, StatusCode};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{token_from_headers, user_for_token};
use crate::domain::RunNotice;
use crate::state::AppState;

/// How often an open stream checks that its session is still live.
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The path of the stream.
pub const PATH: &str = crate::domain::LIVE_PATH;

/// Streams run updates of the session's user; 401 without a session, 429 past the
/// per-user cap on open streams.
pub async fn stream(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = token_from_headers(&headers, state.config.secure_cookies) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let user_id = match user_for_token(&state.db, &token).await {
        Ok(Some(user)) => user.id,
        Ok(None) => return StatusCode::UNAUTHORIZED.into_response(),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    // A cap on open streams per user: each holds a connection and a subscription.
    let Some(slot) = state.limits.open_stream(&user_id) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(http::header::RETRY_AFTER, "5")],
            "too many live streams open; close a tab",
        )
            .into_response();
    };
    let mut stopping = state.stopping.clone();
    let db = state.db.clone();
    let client = crate::metrics::SseClient::open();
    let updates = notices(state.engine.subscribe(), user_id.clone()).take_until(async move {
        // The stream ends when the server stops, or once the session that opened it
        // has ended (signed out, expired, or the user gone): the browser's reconnect
        // then gets a 401 and stops.
        let session_ended = async {
            loop {
                tokio::time::sleep(SESSION_CHECK).await;
                let still = user_for_token(&db, &token).await;
                if !matches!(still, Ok(Some(ref user)) if user.id == user_id) {
                    return;
                }
            }
        };
        tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => {}
            _ = session_ended => {}
        }
        drop(slot);
        drop(client);
    });
    Sse::new(updates)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn notices(
    updates: tokio::sync::broadcast::Receiver<crate::engine::RunUpdate>,
    user_id: String,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(updates, move |mut updates| {
        let user_id = user_id.clone();
        async move {
            loop {
                match updates.recv().await {
                    Ok(update) if update.user_id.as_deref() == Some(user_id.as_str()) => {
                        let notice = RunNotice {
                            run_id: update.run_id,
                            function_id: update.function_id,
                            status: update.status,
                        };
                        let event = Event::default()
                            .event("run")
                            .json_data(notice)
                            .unwrap_or_else(|_| Event::default().event("resync"));
                        return Some((Ok(event), updates));
                    }
                    Ok(_) => {}
                    // Missed some: tell the page to refetch everything.
                    Err(RecvError::Lagged(_)) => {
                        return Some((Ok(Event::default().event("resync").data("")), updates))
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}
