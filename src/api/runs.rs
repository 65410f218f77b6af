//! The runs dashboard: runs, their steps, events and functions of the signed-in user.
//! Every function checks the session and scopes by user; another user's ids answer
//! "not found".
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// The run states, in the order of a run's life (as stored by the engine).
pub const RUN_STATES: [&str; 6] = [
    "queued",
    "running",
    "sleeping",
    "completed",
    "failed",
    "cancelled",
];

/// Runs per page of the list.
pub const PAGE_SIZE: u64 = 25;
/// Payload characters shown in lists before "show all".
pub const PREVIEW_CHARS: usize = 160;

/// A run as the list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    pub function_id: String,
    pub event_id: String,
    pub event_name: String,
    pub status: String,
    pub attempts: i32,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// When a queued run may start or a sleeping one wakes.
    pub due_at: i64,
    pub rerun_of: Option<String>,
}

/// One page of runs, and the counts of all the user's runs by status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPage {
    pub runs: Vec<RunRow>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next: Option<String>,
    pub counts: Vec<(String, i64)>,
    /// The user's functions, for the filter.
    pub functions: Vec<String>,
}

/// A step on the run page's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    pub step_id: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    /// Every failed attempt's error, oldest first.
    pub errors: Vec<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub wake_at: Option<i64>,
    /// Pretty JSON.
    pub output: Option<String>,
}

/// An event, with its payload as pretty JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    pub id: String,
    pub name: String,
    pub ts: i64,
    pub data: String,
}

/// Everything the run page shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: RunRow,
    pub event: EventView,
    /// Pretty JSON.
    pub output: Option<String>,
    pub error: Option<String>,
    pub steps: Vec<StepView>,
    /// The server's clock when this was read (Unix ms), to draw running bars.
    pub now: i64,
}

/// A run an event triggered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggeredRun {
    pub id: String,
    pub function_id: String,
    pub status: String,
}

/// An event in the events list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub event: EventView,
    /// Whether `event.data` was cut to `PREVIEW_CHARS`.
    pub truncated: bool,
    pub runs: Vec<TriggeredRun>,
}

/// One page of events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventRow>,
    pub next: Option<String>,
}

/// A registered function with the user's run counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionView {
    pub id: String,
    pub triggers: Vec<String>,
    pub retries: u32,
    pub counts: Vec<(String, i64)>,
}

/// A page of the user's runs, newest first.
#[server(endpoint = "list_runs")]
pub async fn list_runs(
    status: Option<String>,
    function: Option<String>,
    search: Option<String>,
    before: Option<String>,
) -> Result<RunPage, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    ssr::list_runs(&state, &user.id, status, function, search, before).await
}

/// One of the user's runs with its event and step timeline.
#[server(endpoint = "get_run")]
pub async fn get_run(id: String) -> Result<RunDetail, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    ssr::run_detail(&state, &user.id, &id).await
}

/// Cancels one of the user's runs that has not finished.
#[server(endpoint = "cancel_run")]
pub async fn cancel_run(id: String) -> Result<(), AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    ssr::run_detail(&state, &user.id, &id).await?;
    let cancelled = state.engine.cancel(&id).await.map_err(ssr::engine_error)?;
    if !cancelled {
        return Err(AppError::InvalidInput(
            "the run has already finished".into(),
        ));
    }
    Ok(())
}

/// Starts the function of one of the user's finished runs again for the same event;
/// returns the new run's id.
#[server(endpoint = "rerun_run")]
pub async fn rerun_run(id: String) -> Result<String, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    ssr::run_detail(&state, &user.id, &id).await?;
    state
        .engine
        .rerun(&id)
        .await
        .map_err(ssr::engine_error)?
        .ok_or_else(|| AppError::InvalidInput("only a finished run can be re-run".into()))
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

/// Sends an event as the user: `data` must be JSON.
#[server(endpoint = "send_event")]
pub async fn send_event(name: String, data: String) -> Result<String, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    let data = ssr::parse_json(&data)?;
    let event = crate::engine::NewEvent::new(name.trim(), data).for_user(&user.id);
    let receipt = state
        .engine
        .send(&state.db, event)
        .await
        .map_err(ssr::engine_error)?;
    Ok(receipt.event_id)
}

/// The registered functions, with the user's run counts.
#[server(endpoint = "list_functions")]
pub async fn list_functions() -> Result<Vec<FunctionView>, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    ssr::list_functions(&state, &user.id).await
}

/// Runs one function with `data` (JSON) as its event's payload; returns the run id.
#[server(endpoint = "invoke_function")]
pub async fn invoke_function(function: String, data: String) -> Result<String, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    let data = ssr::parse_json(&data)?;
    let event = crate::engine::NewEvent::new("nodebase/function.invoked", data).for_user(&user.id);
    let receipt = state
        .engine
        .invoke(&state.db, &function, event)
        .await
        .map_err(ssr::engine_error)?;
    receipt
        .run_ids
        .into_iter()
        .next()
        .ok_or_else(|| AppError::Server("no run was created".into()))
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::*;
    use crate::engine::entities::{event, run, step};
    use crate::engine::inspect::{self, RunFilter, RunListing};
    use crate::engine::EngineError;
    use crate::state::AppState;

    pub fn engine_error(err: EngineError) -> AppError {
        match err {
            EngineError::InvalidEvent(m) | EngineError::InvalidFunction(m) => {
                AppError::InvalidInput(m)
            }
            EngineError::Database(m) => {
                tracing::error!(error = %m, "engine database error");
                AppError::Server("database error".into())
            }
        }
    }

    /// Parses user-typed JSON; an empty box means `{}`.
    pub fn parse_json(text: &str) -> Result<serde_json::Value, AppError> {
        if text.trim().is_empty() {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_str(text)
            .map_err(|e| AppError::InvalidInput(format!("data is not valid JSON: {e}")))
    }

    fn pretty(json_text: &str) -> String {
        serde_json::from_str::<serde_json::Value>(json_text)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| json_text.to_string())
    }

    fn row(listing: RunListing) -> RunRow {
        let RunListing {
            run,
            event_name,
            attempts,
        } = listing;
        RunRow {
            id: run.id,
            function_id: run.function_id,
            event_id: run.event_id,
            event_name,
            status: run.status,
            attempts,
            created_at: run.created_at,
            started_at: run.started_at,
            ended_at: run.ended_at,
            due_at: run.due_at,
            rerun_of: run.rerun_of,
        }
    }

    fn event_view(e: event::Model) -> EventView {
        EventView {
            id: e.id,
            name: e.name,
            ts: e.ts,
            data: pretty(&e.data),
        }
    }

    fn step_view(s: step::Model) -> StepView {
        StepView {
            errors: serde_json::from_str(&s.errors).unwrap_or_default(),
            output: s.output.as_deref().map(pretty),
            step_id: s.step_id,
            name: s.name,
            kind: s.kind,
            status: s.status,
            attempts: s.attempts,
            started_at: s.started_at,
            ended_at: s.ended_at,
            wake_at: s.wake_at,
        }
    }

    fn no_empty(v: Option<String>) -> Option<String> {
        v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }

    pub async fn list_runs(
        state: &AppState,
        user_id: &str,
        status: Option<String>,
        function: Option<String>,
        search: Option<String>,
        before: Option<String>,
    ) -> Result<RunPage, AppError> {
        let filter = RunFilter {
            status: no_empty(status),
            function_id: no_empty(function),
            search: no_empty(search),
            before: no_empty(before),
            limit: PAGE_SIZE,
        };
        let (listings, more) = inspect::runs(&state.db, user_id, &filter).await?;
        let runs: Vec<RunRow> = listings.into_iter().map(row).collect();
        let next = if more {
            runs.last().map(|r| r.id.clone())
        } else {
            None
        };
        let counts = inspect::counts(&state.db, user_id, filter.function_id.as_deref()).await?;
        let functions = state
            .engine
            .functions()
            .iter()
            .map(|f| f.id().to_string())
            .collect();
        Ok(RunPage {
            runs,
            next,
            counts,
            functions,
        })
    }

    pub async fn run_detail(
        state: &AppState,
        user_id: &str,
        id: &str,
    ) -> Result<RunDetail, AppError> {
        let (listing, event, steps) = inspect::run_detail(&state.db, user_id, id)
            .await?
            .ok_or(AppError::NotFound)?;
        let output = listing.run.output.as_deref().map(pretty);
        let error = listing.run.error.clone();
        Ok(RunDetail {
            run: row(listing),
            event: event_view(event),
            output,
            error,
            steps: steps.into_iter().map(step_view).collect(),
            now: crate::db::now_ms(),
        })
    }

    pub async fn list_events(
        state: &AppState,
        user_id: &str,
        before: Option<String>,
    ) -> Result<EventPage, AppError> {
        let before = no_empty(before);
        let (rows, more) =
            inspect::events(&state.db, user_id, before.as_deref(), PAGE_SIZE).await?;
        let events: Vec<EventRow> = rows
            .into_iter()
            .map(|(e, runs): (event::Model, Vec<run::Model>)| {
                let mut view = event_view(e);
                let truncated = view.data.chars().count() > PREVIEW_CHARS;
                if truncated {
                    view.data = view.data.chars().take(PREVIEW_CHARS).collect::<String>() + "…";
                }
                EventRow {
                    event: view,
                    truncated,
                    runs: runs
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

    pub async fn list_functions(
        state: &AppState,
        user_id: &str,
    ) -> Result<Vec<FunctionView>, AppError> {
        let counts = inspect::counts_by_function(&state.db, user_id).await?;
        Ok(state
            .engine
            .functions()
            .into_iter()
            .map(|f| FunctionView {
                id: f.id().to_string(),
                triggers: f.triggers().to_vec(),
                retries: f.retry_limit(),
                counts: counts
                    .iter()
                    .filter(|(function, ..)| function == f.id())
                    .map(|(_, status, n)| (status.clone(), *n))
                    .collect(),
            })
            .collect())
    }
}
