//! The functions page's server functions: the registered functions with the user's run
//! counts, and invoking one.
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::domain::RunStatus;
use crate::error::AppError;

/// A registered function with the user's run counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionView {
    pub id: String,
    pub description: String,
    pub triggers: Vec<String>,
    /// The events its waits may wait for.
    pub awaits: Vec<String>,
    pub retries: u32,
    /// What cancels its runs: `event name` or `event name (matching data.x)`.
    pub cancelled_by: Vec<String>,
    /// Its concurrency limits: `1 at once per event.user_id`.
    pub concurrency: Vec<String>,
    /// Its debounce: `3s per user`.
    pub debounce: Option<String>,
    /// Its batching: `up to 10 events or 5s per user`.
    pub batch: Option<String>,
    /// Its throttle: `2 starts per 10s per event.user_id`.
    pub throttle: Option<String>,
    /// Its rate limit: `1 run per 60s per event.user_id`.
    pub rate_limit: Option<String>,
    pub priority: Option<String>,
    pub idempotency: Option<String>,
    /// Its cron schedules, as `<pattern> (<time zone>)`.
    pub schedules: Vec<String>,
    /// The next tick of its schedules (Unix ms).
    pub next_tick: Option<i64>,
    /// When its latest tick's run was queued, and its status (such runs belong to no
    /// user: only this is shown).
    pub last_tick: Option<(i64, RunStatus)>,
    /// The function that runs when one of its runs fails.
    pub failure_handler: Option<String>,
    /// For a failure handler: the function whose failures it handles.
    pub handles_failures_of: Option<String>,
    pub counts: Vec<(RunStatus, i64)>,
    /// The user's runs of it sent in each span of the charts' [`ChartRange`], oldest
    /// first.
    pub activity: Vec<SpanView>,
}

/// The time the functions page's charts cover, ending now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChartRange {
    /// The last hour, in 12 spans of 5 minutes.
    #[default]
    Hour,
    /// The last day, in 24 spans of an hour.
    Day,
}

impl ChartRange {
    pub const ALL: [ChartRange; 2] = [ChartRange::Hour, ChartRange::Day];

    pub fn spans(self) -> usize {
        match self {
            ChartRange::Hour => 12,
            ChartRange::Day => 24,
        }
    }

    pub fn span_minutes(self) -> i64 {
        match self {
            ChartRange::Hour => 5,
            ChartRange::Day => 60,
        }
    }

    /// Its name in the page's address (`?range=day`); the hour is the default.
    pub fn as_query(self) -> &'static str {
        match self {
            ChartRange::Hour => "hour",
            ChartRange::Day => "day",
        }
    }

    pub fn from_query(value: Option<&str>) -> Self {
        match value {
            Some("day") => ChartRange::Day,
            _ => ChartRange::Hour,
        }
    }

    /// "Last hour", "Last day".
    pub fn name(self) -> &'static str {
        match self {
            ChartRange::Hour => "Last hour",
            ChartRange::Day => "Last day",
        }
    }
}

/// A function's runs sent within one span, as its charts show them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanView {
    pub completed: u32,
    pub failed: u32,
    /// Queued, running, sleeping or cancelled.
    pub other: u32,
    /// Run duration (start to end) p50 and p95, ms.
    pub duration: Option<(i64, i64)>,
    /// Send→start delay p50 and p95, ms.
    pub delay: Option<(i64, i64)>,
}

/// The registered functions, with the user's run counts and their runs of `range`.
#[server(endpoint = "list_functions")]
pub async fn list_functions(range: ChartRange) -> Result<Vec<FunctionView>, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    ssr::list_functions(&state, &user.id, range).await
}

/// Runs one function with `data` (JSON) as its event's payload; returns the run id.
#[server(endpoint = "invoke_function")]
pub async fn invoke_function(function: String, data: String) -> Result<String, AppError> {
    let user = crate::auth::require_user().await?;
    let state = super::app_state()?;
    super::count_action(&state, &user.id)?;
    let data = super::parse_json(&data)?;
    let event = crate::engine::NewEvent::new(crate::engine::INVOKED, data).for_user(&user.id);
    let receipt = state
        .engine
        .invoke(&state.db, &function, event)
        .await
        .map_err(super::engine_error)?;
    receipt
        .run_ids
        .into_iter()
        .next()
        .ok_or_else(|| AppError::internal("no run was created"))
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::*;
    use crate::engine::inspect;
    use crate::state::AppState;

    pub async fn list_functions(
        state: &AppState,
        user_id: &str,
        range: ChartRange,
    ) -> Result<Vec<FunctionView>, AppError> {
        let counts = inspect::counts_by_function(&state.db, user_id).await?;
        let mut activity = inspect::activity(
            &state.db,
            user_id,
            // The run ids' own clock.
            crate::db::now_ms(),
            range.spans(),
            range.span_minutes() * 60_000,
        )
        .await?;
        let now = state.engine.now_ms();
        let mut ticks = std::collections::HashMap::new();
        for (function_id, _) in state.engine.schedules() {
            if !ticks.contains_key(function_id) {
                let last = inspect::latest_unowned_run(&state.db, function_id).await?;
                ticks.insert(function_id.clone(), last);
            }
        }
        let all_schedules = state.engine.schedules();
        let schedules_of = |id: &str| -> Vec<&crate::engine::Schedule> {
            all_schedules
                .iter()
                .filter(|(f, _)| f == id)
                .map(|(_, s)| s)
                .collect()
        };
        Ok(state
            .engine
            .functions()
            .into_iter()
            .map(|f| FunctionView {
                schedules: schedules_of(f.id())
                    .iter()
                    .map(|s| format!("{} ({})", s.pattern(), s.time_zone()))
                    .collect(),
                next_tick: schedules_of(f.id())
                    .iter()
                    .filter_map(|s| s.next(now))
                    .min(),
                last_tick: ticks.get(f.id()).copied().flatten(),
                id: f.id().to_string(),
                description: f.description().to_string(),
                triggers: f.triggers().to_vec(),
                awaits: f.awaits().to_vec(),
                retries: f.retry_limit(),
                cancelled_by: f.cancels().iter().map(|rule| rule.to_string()).collect(),
                concurrency: f.limits().iter().map(|l| l.to_string()).collect(),
                debounce: f.debounced().map(|d| d.to_string()),
                batch: f.batched().map(|b| b.to_string()),
                throttle: f.throttled().map(|t| t.to_string()),
                rate_limit: f.rate_limited().map(|r| r.to_string()),
                priority: f.prioritized().map(|p| p.to_string()),
                idempotency: f.idempotent().map(|r| r.to_string()),
                failure_handler: f.failure_handler_id(),
                handles_failures_of: f.handles_failures_of().map(str::to_string),
                counts: counts
                    .iter()
                    .filter(|(function, ..)| function == f.id())
                    .map(|(_, status, n)| (*status, *n))
                    .collect(),
                activity: activity
                    .remove(f.id())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| SpanView {
                        completed: a.completed,
                        failed: a.failed,
                        other: a.other,
                        duration: a.duration.map(|p| (p.p50, p.p95)),
                        delay: a.delay.map(|p| (p.p50, p.p95)),
                    })
                    .collect(),
            })
            .collect())
    }
}
