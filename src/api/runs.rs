//! The runs dashboard's server functions: the signed-in user's runs, one run with its
//! step timeline, cancel and re-run. Every function checks the session and scopes by
//! user; another user's ids answer "not found".
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::events::EventView;
use crate::domain::{RunStatus, StepKind, StepStatus};
use crate::error::AppError;

/// A run as the list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    pub function_id: String,
    pub event_id: String,
    pub event_name: String,
    pub status: RunStatus,
    pub attempts: i32,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// When a queued run may start or a sleeping one wakes.
    pub due_at: i64,
    pub rerun_of: Option<String>,
    /// The run whose `step.invoke` started this one.
    pub invoked_by: Option<String>,
    /// For a queued run that has not started: what holds it back, if anything does.
    pub held_back: Option<HeldBackView>,
}

/// Why a queued run has not started: `by` is `concurrency` ("1 at once per
/// event.user_id"), `throttle` ("2 starts per 10s per event.user_id", with the earliest
/// start in `until`), `debounce` ("3s per user") or `batch` ("3 of up to 10 events or
/// 5s per user", with its timeout in `until`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBackView {
    pub by: String,
    pub detail: String,
    pub until: Option<i64>,
}

/// One page of runs, and the counts of all the user's runs by status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPage {
    pub runs: Vec<RunRow>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next: Option<String>,
    pub counts: Vec<(RunStatus, i64)>,
    /// The user's functions, for the filter.
    pub functions: Vec<String>,
    /// Runs sent (of the filter's function, if any) in each of the last
    /// [`SENT_MINUTES`] minutes, oldest first; the last is the current minute.
    pub sent_per_minute: Vec<u32>,
}

/// How many minutes the runs page's sparkline shows.
pub const SENT_MINUTES: usize = 60;

/// A step on the run page's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepView {
    pub step_id: String,
    pub name: String,
    pub kind: StepKind,
    pub status: StepStatus,
    pub attempts: i32,
    /// Every failed attempt's error, oldest first, then why the step ended if no
    /// attempt did (a cancel).
    pub errors: Vec<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub wake_at: Option<i64>,
    /// Pretty JSON.
    pub output: Option<String>,
    /// What a wait step waits for, and how it ended.
    pub wait: Option<WaitView>,
}

/// A wait step's rule and its end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitView {
    pub event_name: String,
    /// `data.request_id = "r1"`: the field the new event must share with the run's.
    pub matching: Option<String>,
    /// The CEL condition.
    pub condition: Option<String>,
    /// Events sent from this time on count (the start, or earlier with a lookback).
    pub window_start: i64,
    pub expires_at: i64,
    /// `open`, `matched` or `timed_out`.
    pub status: String,
    /// The event that ended it.
    pub event_id: Option<String>,
    /// For an `invoke` step: the run it started.
    pub invoked_run: Option<String>,
}

/// The most steps a run's page lists.
pub const STEPS_SHOWN: u64 = 1000;

/// Everything the run page shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: RunRow,
    pub event: EventView,
    /// Pretty JSON.
    pub output: Option<String>,
    pub error: Option<String>,
    /// Who cancelled the run, if it was cancelled by someone who said.
    pub cancelled_by: Option<String>,
    /// For a failed run: the run of its function's failure handler.
    pub failure_handled_by: Option<String>,
    /// For a failure handler's run: the failed run it handles.
    pub handles_failure_of: Option<String>,
    /// The first `STEPS_SHOWN` steps.
    pub steps: Vec<StepView>,
    /// The server's clock when this was read (Unix ms), to draw running bars.
    pub now: i64,
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
    let cancelled = state
        .engine
        .cancel_by(&id, Some(&user.email))
        .await
        .map_err(super::engine_error)?;
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
    super::count_action(&state, &user.id)?;
    ssr::run_detail(&state, &user.id, &id).await?;
    state
        .engine
        .rerun(&id)
        .await
        .map_err(super::engine_error)?
        .ok_or_else(|| AppError::InvalidInput("only a finished run can be re-run".into()))
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::*;
    use crate::api::events::ssr::event_view;
    use crate::api::{no_empty, pretty, PAGE_SIZE};
    use std::collections::HashMap;

    use crate::engine::entities::{step, wait};
    use crate::engine::inspect::{self, RunFilter, RunListing};
    use crate::state::AppState;

    fn row(listing: RunListing, held_back: &mut HashMap<String, HeldBackView>) -> RunRow {
        let RunListing {
            run,
            event_name,
            attempts,
        } = listing;
        RunRow {
            held_back: held_back.remove(&run.id),
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
            invoked_by: run.invoked_by,
        }
    }

    /// What holds back each of these runs that is queued, if anything does.
    async fn held_back(
        state: &AppState,
        listings: &[RunListing],
    ) -> Result<HashMap<String, HeldBackView>, AppError> {
        let runs: Vec<_> = listings.iter().map(|l| l.run.clone()).collect();
        let held = state
            .engine
            .held_back(&runs)
            .await
            .map_err(crate::api::ssr::engine_error)?;
        Ok(held
            .into_iter()
            .map(|(id, why)| {
                let view = HeldBackView {
                    by: why.by.to_string(),
                    detail: why.detail,
                    until: why.until,
                };
                (id, view)
            })
            .collect())
    }

    fn wait_view(w: wait::Model) -> WaitView {
        let invoked_run = (w.event_name == crate::engine::FINISHED)
            .then_some(w.match_key.as_deref())
            .flatten()
            .and_then(|k| k.split_once('='))
            .and_then(|(_, id)| serde_json::from_str::<String>(id).ok());
        WaitView {
            invoked_run,
            event_name: w.event_name,
            matching: w
                .match_key
                .as_deref()
                .and_then(|k| k.split_once('='))
                .map(|(field, value)| format!("{field} = {value}")),
            condition: w.condition,
            window_start: w.window_start,
            expires_at: w.expires_at,
            status: w.status,
            event_id: w.event_id,
        }
    }

    fn step_view(s: step::Model, waits: &mut HashMap<String, wait::Model>) -> StepView {
        let mut errors: Vec<String> = serde_json::from_str(&s.errors).unwrap_or_default();
        // A step ended by something other than an attempt (a cancel) says why too.
        if let Some(error) = s.error.as_ref().filter(|e| errors.last() != Some(*e)) {
            errors.push(error.clone());
        }
        StepView {
            errors,
            output: s.output.as_deref().map(pretty),
            name: s.name,
            kind: s.kind,
            status: s.status,
            attempts: s.attempts,
            started_at: s.started_at,
            ended_at: s.ended_at,
            wake_at: s.wake_at,
            wait: waits.remove(&s.step_id).map(wait_view),
            step_id: s.step_id,
        }
    }

    pub async fn list_runs(
        state: &AppState,
        user_id: &str,
        status: Option<String>,
        function: Option<String>,
        search: Option<String>,
        before: Option<String>,
    ) -> Result<RunPage, AppError> {
        let status = no_empty(status)
            .map(|s| s.parse::<RunStatus>())
            .transpose()
            .map_err(|e| AppError::InvalidInput(e.to_string()))?;
        let filter = RunFilter {
            status,
            function_id: no_empty(function),
            search: no_empty(search),
            before: no_empty(before),
            limit: PAGE_SIZE,
        };
        let (listings, more) = inspect::runs(&state.db, user_id, &filter).await?;
        let mut held = held_back(state, &listings).await?;
        let runs: Vec<RunRow> = listings.into_iter().map(|l| row(l, &mut held)).collect();
        let next = if more {
            runs.last().map(|r| r.id.clone())
        } else {
            None
        };
        let counts = inspect::counts(&state.db, user_id, filter.function_id.as_deref()).await?;
        let sent_per_minute = inspect::sent_per_minute(
            &state.db,
            user_id,
            filter.function_id.as_deref(),
            // The run ids' own clock.
            crate::db::now_ms(),
            SENT_MINUTES,
        )
        .await?;
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
            sent_per_minute,
        })
    }

    pub async fn run_detail(
        state: &AppState,
        user_id: &str,
        id: &str,
    ) -> Result<RunDetail, AppError> {
        let (listing, event, steps) = inspect::run_detail(&state.db, user_id, id, STEPS_SHOWN)
            .await?
            .ok_or(AppError::NotFound)?;
        let mut waits: HashMap<String, wait::Model> = inspect::waits(&state.db, id)
            .await?
            .into_iter()
            .map(|w| (w.step_id.clone(), w))
            .collect();
        let output = listing.run.output.as_deref().map(pretty);
        let error = listing.run.error.clone();
        let cancelled_by = listing.run.cancelled_by.clone();
        let failure_handled_by = if listing.run.status == RunStatus::Failed {
            inspect::failure_handler_run(&state.db, user_id, id).await?
        } else {
            None
        };
        let mut held = held_back(state, std::slice::from_ref(&listing)).await?;
        let handles_failure_of = (event.name == crate::engine::FAILED)
            .then(|| serde_json::from_str::<crate::engine::Failure>(&event.data).ok())
            .flatten()
            .map(|f| f.run_id);
        Ok(RunDetail {
            failure_handled_by,
            handles_failure_of,
            run: row(listing, &mut held),
            event: event_view(event),
            output,
            error,
            cancelled_by,
            steps: steps
                .into_iter()
                .map(|s| step_view(s, &mut waits))
                .collect(),
            now: crate::db::now_ms(),
        })
    }
}
