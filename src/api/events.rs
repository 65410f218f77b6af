//! The events page's server functions: the signed-in user's events with the runs they
//! triggered, one event in full, and sending one.
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::domain::RunStatus;
use crate::error::AppError;

/// Payload characters shown in lists before "show all".
pub const PREVIEW_CHARS: usize = 160;

/// Runs listed under one event (the rest are on the runs page).
pub const RUNS_PER_EVENT: u64 = 10;

/// An event, with its payload as pretty JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    pub id: String,
    pub name: String,
    pub ts: i64,
    pub data: String,
}

/// A run an event triggered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggeredRun {
    pub id: String,
    pub function_id: String,
    pub status: RunStatus,
}

/// An event in the events list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub event: EventView,
    /// Whether `event.data` was cut to `PREVIEW_CHARS`.
    pub truncated: bool,
    pub runs: Vec<TriggeredRun>,
    /// Whether the event triggered more than `RUNS_PER_EVENT` runs.
    pub more_runs: bool,
    /// (function, why) for each function whose rate limit skipped the event.
    pub skipped: Vec<(String, String)>,
}

/// One page of events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventRow>,
    pub next: Option<String>,
}

/// A page of the user's events, newest first.
#[server(endpoint = "list_events")]
pub async fn list_events(before: Option<String>) -> Result<EventPage, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    ssr::list_events(&state, &user.id, before).await
}

/// One of the user's events in full.
#[server(endpoint = "get_event")]
pub async fn get_event(id: String) -> Result<EventView, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    ssr::event(&state, &user.id, &id).await
}

/// The most events one send from the events page may hold.
pub const MAX_BATCH: usize = 100;

/// Sends events named `name` as the user: `data` is one event's JSON payload, or a JSON
/// array of payloads to send one event each (at most `MAX_BATCH`, recorded together or
/// not at all). Returns the event ids.
#[server(endpoint = "send_event")]
pub async fn send_event(name: String, data: String) -> Result<Vec<String>, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    super::count_action(&state, &user.id)?;
    let payloads = match super::parse_json(&data)? {
        serde_json::Value::Array(items) if items.is_empty() => {
            return Err(AppError::InvalidInput("the array holds no events".into()))
        }
        serde_json::Value::Array(items) if items.len() > MAX_BATCH => {
            return Err(AppError::InvalidInput(format!(
                "one send holds at most {MAX_BATCH} events, not {}",
                items.len()
            )))
        }
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    let events = payloads
        .into_iter()
        .map(|data| crate::engine::NewEvent::new(name.trim(), data).for_user(&user.id))
        .collect();
    let receipts = state
        .engine
        .send_many(&state.db, events)
        .await
        .map_err(super::engine_error)?;
    Ok(receipts.into_iter().map(|r| r.event_id).collect())
}

#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    use super::*;
    use crate::api::{no_empty, pretty, PAGE_SIZE};
    use crate::engine::entities::event;
    use crate::engine::inspect;
    use crate::state::AppState;

    pub(crate) fn event_view(e: event::Model) -> EventView {
        EventView {
            id: e.id,
            name: e.name,
            ts: e.ts,
            data: pretty(&e.data),
        }
    }

    pub async fn list_events(
        state: &AppState,
        user_id: &str,
        before: Option<String>,
    ) -> Result<EventPage, AppError> {
        let before = no_empty(before);
        let (rows, more) = inspect::events(
            &state.db,
            user_id,
            before.as_deref(),
            PAGE_SIZE,
            RUNS_PER_EVENT,
        )
        .await?;
        let events: Vec<EventRow> = rows
            .into_iter()
            .map(|listing: inspect::EventListing| {
                let mut view = event_view(listing.event);
                let truncated = view.data.chars().count() > PREVIEW_CHARS;
                if truncated {
                    view.data = view.data.chars().take(PREVIEW_CHARS).collect::<String>() + "…";
                }
                EventRow {
                    event: view,
                    truncated,
                    more_runs: listing.more_runs,
                    skipped: listing
                        .skipped
                        .into_iter()
                        .map(|s| (s.function_id, s.reason))
                        .collect(),
                    runs: listing
                        .runs
                        .into_iter()
                        .map(|r| TriggeredRun {
                            id: r.id,
                            function_id: r.function_id,
                            status: r.status,
                        })
                        .collect(),
                }
            })
            .collect();
        let next = if more {
            events.last().map(|e| e.event.id.clone())
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    pub async fn event(state: &AppState, user_id: &str, id: &str) -> Result<EventView, AppError> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        event::Entity::find_by_id(id.to_string())
            .filter(event::Column::UserId.eq(user_id))
            .one(&state.db)
            .await?
            .map(event_view)
            .ok_or(AppError::NotFound)
    }
}
