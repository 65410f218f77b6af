//! Read-only views of runs, events and functions, for dashboards. Every query takes the
//! user the data must belong to: rows of other users are invisible, as if absent.
use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, Func, Order, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::claim::{Busy, Keyed};
use crate::domain::RunStatus;
use crate::engine::entities::{event, run, skipped_run, step, wait};
use crate::engine::runtime::Runtime;

/// Filters for [`runs`]; `None` means "any".
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub function_id: Option<String>,
    /// A run id or an event id.
    pub search: Option<String>,
    /// Only runs older than this run id (the last id of the previous page).
    pub before: Option<String>,
    pub limit: u64,
}

/// A run with the bits a list shows.
#[derive(Clone, Debug)]
pub struct RunListing {
    pub run: run::Model,
    pub event_name: String,
    /// The most attempts any of its steps (or its handler) took.
    pub attempts: i32,
}

/// The user's runs, newest first, and whether there are more after them.
pub async fn runs(
    db: &impl ConnectionTrait,
    user_id: &str,
    filter: &RunFilter,
) -> Result<(Vec<RunListing>, bool), DbErr> {
    let mut query = run::Entity::find()
        .filter(run::Column::UserId.eq(user_id))
        .order_by(run::Column::Id, Order::Desc)
        .limit(filter.limit + 1);
    if let Some(status) = filter.status {
        query = query.filter(run::Column::Status.eq(status));
    }
    if let Some(function_id) = &filter.function_id {
        query = query.filter(run::Column::FunctionId.eq(function_id));
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        query = query.filter(
            run::Column::Id
                .eq(search)
                .or(run::Column::EventId.eq(search)),
        );
    }
    if let Some(before) = &filter.before {
        query = query.filter(run::Column::Id.lt(before));
    }
    let mut rows = query.all(db).await?;
    let more = rows.len() as u64 > filter.limit;
    rows.truncate(filter.limit as usize);
    listings(db, rows).await.map(|l| (l, more))
}

async fn listings(
    db: &impl ConnectionTrait,
    rows: Vec<run::Model>,
) -> Result<Vec<RunListing>, DbErr> {
    let event_ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    let names: HashMap<String, String> = event::Entity::find()
        .select_only()
        .column(event::Column::Id)
        .column(event::Column::Name)
        .filter(event::Column::Id.is_in(event_ids))
        .into_tuple::<(String, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let run_ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let attempts: HashMap<String, i32> = step::Entity::find()
        .select_only()
        .column(step::Column::RunId)
        .column_as(step::Column::Attempts.max(), "attempts")
        .filter(step::Column::RunId.is_in(run_ids))
        .group_by(step::Column::RunId)
        .into_tuple::<(String, i32)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|run| RunListing {
            event_name: names.get(&run.event_id).cloned().unwrap_or_default(),
            attempts: std::cmp::max(
                attempts.get(&run.id).copied().unwrap_or(0),
                run.attempts + i32::from(run.claims > 0),
            ),
            run,
        })
        .collect())
}

/// How many of the user's runs are in each state (optionally of one function).
pub async fn counts(
    db: &impl ConnectionTrait,
    user_id: &str,
    function_id: Option<&str>,
) -> Result<Vec<(RunStatus, i64)>, DbErr> {
    let mut query = Query::select();
    query
        .column(run::Column::Status)
        .expr(Func::count(Expr::col(run::Column::Id)))
        .from(run::Entity)
        .and_where(Expr::col(run::Column::UserId).eq(user_id))
        .group_by_col(run::Column::Status);
    if let Some(function_id) = function_id {
        query.and_where(Expr::col(run::Column::FunctionId).eq(function_id));
    }
    db.query_all(&query)
        .await?
        .iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}

/// How many of the user's runs (of `function_id`, if given) were sent in each of the
/// last `minutes` whole minutes, oldest first; the last is the minute `now` is in. Read
/// from the run ids alone — UUIDv7, which begin with their millisecond, so those of the
/// window are one range of `idx_run_user` (user, id) — and counted here: the cost is
/// one index entry per run of the window, whatever the user's older runs.
pub async fn sent_per_minute(
    db: &impl ConnectionTrait,
    user_id: &str,
    function_id: Option<&str>,
    now: i64,
    minutes: usize,
) -> Result<Vec<u32>, DbErr> {
    const MINUTE: i64 = 60_000;
    let first = (now.div_euclid(MINUTE) - minutes as i64 + 1) * MINUTE;
    let mut query = run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .filter(run::Column::UserId.eq(user_id))
        .filter(run::Column::Id.gte(first_id_at(first)));
    if let Some(function_id) = function_id {
        query = query.filter(run::Column::FunctionId.eq(function_id));
    }
    let ids: Vec<String> = query.into_tuple().all(db).await?;
    let mut counts = vec![0u32; minutes];
    for at in ids.iter().filter_map(|id| millis_of_id(id)) {
        if let Some(minute) = span_of(at, first, MINUTE, minutes) {
            counts[minute] += 1;
        }
    }
    Ok(counts)
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: i64,
    pub p95: i64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values`; `None` when there are none.
    fn of(mut values: Vec<i64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let rank =
            |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Some(Percentiles {
            p50: rank(0.50),
            p95: rank(0.95),
        })
    }
}

/// What one function's runs sent within one span of time have come to, and how long
/// they took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    pub completed: u32,
    pub failed: u32,
    /// Still queued, running or sleeping, or cancelled.
    pub other: u32,
    /// Start to end, of the runs that finished.
    pub duration: Option<Percentiles>,
    /// Send to start, of the runs that started.
    pub delay: Option<Percentiles>,
}

/// A run of the window: id, function, status, created, started and ended at.
type WindowRow = (String, String, RunStatus, i64, Option<i64>, Option<i64>);

/// The user's runs sent in each of the last `spans` spans of `span_ms` (oldest first;
/// the last is the one `now` is in), by function: how they stand and how long they took.
/// Functions without runs in the window are left out. The window's runs are one range
/// of `idx_run_user` (see [`sent_per_minute`]), each read from its row.
pub async fn activity(
    db: &impl ConnectionTrait,
    user_id: &str,
    now: i64,
    spans: usize,
    span_ms: i64,
) -> Result<HashMap<String, Vec<Activity>>, DbErr> {
    let first = (now.div_euclid(span_ms) - spans as i64 + 1) * span_ms;
    let rows: Vec<WindowRow> = run::Entity::find()
        .select_only()
        .columns([
            run::Column::Id,
            run::Column::FunctionId,
            run::Column::Status,
            run::Column::CreatedAt,
            run::Column::StartedAt,
            run::Column::EndedAt,
        ])
        .filter(run::Column::UserId.eq(user_id))
        .filter(run::Column::Id.gte(first_id_at(first)))
        .into_tuple()
        .all(db)
        .await?;
    #[derive(Clone, Default)]
    struct Gathered {
        activity: Activity,
        durations: Vec<i64>,
        delays: Vec<i64>,
    }
    let mut gathered: HashMap<String, Vec<Gathered>> = HashMap::new();
    for (id, function_id, status, created_at, started_at, ended_at) in rows {
        let Some(i) = millis_of_id(&id).and_then(|at| span_of(at, first, span_ms, spans)) else {
            continue;
        };
        let span = &mut gathered
            .entry(function_id)
            .or_insert_with(|| vec![Gathered::default(); spans])[i];
        match status {
            RunStatus::Completed => span.activity.completed += 1,
            RunStatus::Failed => span.activity.failed += 1,
            _ => span.activity.other += 1,
        }
        if let Some(started_at) = started_at {
            span.delays.push(started_at - created_at);
            if let Some(ended_at) = ended_at.filter(|_| status.is_final()) {
                span.durations.push(ended_at - started_at);
            }
        }
    }
    Ok(gathered
        .into_iter()
        .map(|(function_id, spans)| {
            let spans = spans
                .into_iter()
                .map(|g| Activity {
                    duration: Percentiles::of(g.durations),
                    delay: Percentiles::of(g.delays),
                    ..g.activity
                })
                .collect();
            (function_id, spans)
        })
        .collect())
}

/// Which of the `spans` spans of `span_ms` from `first` the millisecond `at` is in.
fn span_of(at: i64, first: i64, span_ms: i64, spans: usize) -> Option<usize> {
    usize::try_from((at - first).div_euclid(span_ms))
        .ok()
        .filter(|&i| i < spans)
}

/// The smallest UUIDv7 (as text) of millisecond `ms`.
fn first_id_at(ms: i64) -> String {
    let ms = Ord::max(ms, 0) as u64;
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// The millisecond a UUIDv7 (as text) was made in.
fn millis_of_id(id: &str) -> Option<i64> {
    let hex: String = id.chars().filter(|c| *c != '-').take(12).collect();
    i64::from_str_radix(&hex, 16).ok()
}

/// Run counts by function and state, for the user.
pub async fn counts_by_function(
    db: &impl ConnectionTrait,
    user_id: &str,
) -> Result<Vec<(String, RunStatus, i64)>, DbErr> {
    let mut query = Query::select();
    query
        .column(run::Column::FunctionId)
        .column(run::Column::Status)
        .expr(Func::count(Expr::col(run::Column::Id)))
        .from(run::Entity)
        .and_where(Expr::col(run::Column::UserId).eq(user_id))
        .group_by_col(run::Column::FunctionId)
        .group_by_col(run::Column::Status);
    triples(db, &query).await
}

/// The rows of a query of three columns.
async fn triples<A, B, C>(
    db: &impl ConnectionTrait,
    query: &sea_orm::sea_query::SelectStatement,
) -> Result<Vec<(A, B, C)>, DbErr>
where
    A: sea_orm::TryGetable,
    B: sea_orm::TryGetable,
    C: sea_orm::TryGetable,
{
    db.query_all(query)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get_by_index(0)?,
                row.try_get_by_index(1)?,
                row.try_get_by_index(2)?,
            ))
        })
        .collect()
}

/// The queued runs that are due at `now`, by function: how many, and the earliest due
/// time. One grouped query over the due-run index (`run (status, due_at)`).
pub async fn queue(db: &impl ConnectionTrait, now: i64) -> Result<Vec<(String, i64, i64)>, DbErr> {
    let mut query = Query::select();
    query
        .column(run::Column::FunctionId)
        .expr(Func::count(Expr::col(run::Column::Id)))
        .expr(Func::min(Expr::col(run::Column::DueAt)))
        .from(run::Entity)
        .and_where(Expr::col(run::Column::Status).eq(RunStatus::Queued.as_str()))
        .and_where(Expr::col(run::Column::DueAt).lte(now))
        .group_by_col(run::Column::FunctionId);
    triples(db, &query).await
}

/// Why a queued run has not started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldBack {
    /// `concurrency`, `throttle`, `debounce` or `batch`.
    pub by: &'static str,
    /// The limit ("1 at once per event.user_id"), the throttle ("2 starts per 10s per
    /// event.user_id"), the debounce ("3s per user") or the batch so far ("3 of up to
    /// 10 events or 5s per user").
    pub detail: String,
    /// For a throttled run: the earliest time it may start (when the oldest start in
    /// its key's window leaves it).
    pub until: Option<i64>,
}

/// For each of `runs` that is queued and has not started: what holds it back, if
/// anything does — a debounce whose period has not passed, a batch still open (until
/// its timeout), a throttle whose window is
/// full (or moved the run's start), or (for a run due already) a concurrency limit with
/// no room, counted as the claim counts.
pub(crate) async fn held_back(
    rt: &Runtime,
    runs: &[run::Model],
    now: i64,
) -> Result<HashMap<String, HeldBack>, DbErr> {
    let (db, limits, debounces) = (&rt.db, &rt.limits, &rt.debounces);
    let queued = runs.iter().filter(|r| r.status == RunStatus::Queued);
    let mut held: HashMap<String, HeldBack> = queued
        .clone()
        .filter(|r| r.debounce_key.is_some() && r.claims == 0 && r.due_at > now)
        .filter_map(|r| {
            let debounce = debounces.get(&r.function_id)?;
            Some((
                r.id.clone(),
                HeldBack {
                    by: "debounce",
                    detail: debounce.to_string(),
                    until: None,
                },
            ))
        })
        .collect();
    // A batch still open: waiting for more events until its timeout.
    for r in queued
        .clone()
        .filter(|r| r.batch_key.is_some() && r.claims == 0)
    {
        if let Some(batch) = rt.batches.get(&r.function_id) {
            let why = HeldBack {
                by: "batch",
                detail: format!("{} of {}", r.batch_size, batch),
                until: Some(r.due_at),
            };
            held.insert(r.id.clone(), why);
        }
    }
    let throttled: Vec<&run::Model> = queued
        .clone()
        .filter(|r| r.started_at.is_none() && !held.contains_key(&r.id))
        .filter(|r| r.throttle_key.is_some() && rt.throttles.contains_key(&r.function_id))
        .collect();
    if !throttled.is_empty() {
        let pairs = throttled.iter().filter_map(|r| {
            let key = r.throttle_key.as_deref()?;
            Some((r.function_id.as_str(), key))
        });
        let starts = super::claim::starts_in_window(rt, db, pairs, now).await?;
        for r in throttled {
            let throttle = &rt.throttles[&r.function_id];
            let key = r.throttle_key.as_deref().unwrap_or_default();
            let full = starts.held_until(throttle, &r.function_id, key);
            // Due later than now: the claim found the window full and moved it.
            let moved = (r.due_at > now).then_some(r.due_at);
            if let Some(until) = Ord::max(full, moved) {
                let why = HeldBack {
                    by: "throttle",
                    detail: throttle.to_string(),
                    until: Some(Ord::max(until, r.due_at)),
                };
                held.insert(r.id.clone(), why);
            }
        }
    }
    let waiting: Vec<&run::Model> = queued
        .filter(|r| r.due_at <= now && r.concurrency_key.is_some() && !held.contains_key(&r.id))
        .collect();
    if waiting.is_empty() {
        return Ok(held);
    }
    let busy = Busy::now(db).await?;
    for r in waiting {
        let keyed = Keyed {
            function_id: r.function_id.clone(),
            concurrency_key: r.concurrency_key.clone(),
            concurrency_key_2: r.concurrency_key_2.clone(),
        };
        if let Some(limit) = busy.held_back_by(limits, &keyed) {
            let why = HeldBack {
                by: "concurrency",
                detail: limit.to_string(),
                until: None,
            };
            held.insert(r.id.clone(), why);
        }
    }
    Ok(held)
}

/// When the latest run of `function_id` that belongs to no user (a cron tick's) was
/// queued, and its status.
pub async fn latest_unowned_run(
    db: &impl ConnectionTrait,
    function_id: &str,
) -> Result<Option<(i64, RunStatus)>, DbErr> {
    run::Entity::find()
        .select_only()
        .column(run::Column::CreatedAt)
        .column(run::Column::Status)
        .filter(run::Column::FunctionId.eq(function_id))
        .filter(run::Column::UserId.is_null())
        .order_by_desc(run::Column::CreatedAt)
        .into_tuple()
        .one(db)
        .await
}

/// One run of the user's, with its event and its first `max_steps` steps in order.
pub async fn run_detail(
    db: &impl ConnectionTrait,
    user_id: &str,
    run_id: &str,
    max_steps: u64,
) -> Result<Option<(RunListing, event::Model, Vec<step::Model>)>, DbErr> {
    let Some(run) = run::Entity::find_by_id(run_id.to_string())
        .filter(run::Column::UserId.eq(user_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let Some(event) = event::Entity::find_by_id(run.event_id.clone())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let steps = step::Entity::find()
        .filter(step::Column::RunId.eq(run_id))
        .order_by_asc(step::Column::Position)
        .limit(max_steps)
        .all(db)
        .await?;
    let listing = listings(db, vec![run]).await?.pop();
    Ok(listing.map(|l| (l, event, steps)))
}

/// The waits of a run (call it after [`run_detail`] has checked that the run is the
/// user's), by step key.
pub async fn waits(db: &impl ConnectionTrait, run_id: &str) -> Result<Vec<wait::Model>, DbErr> {
    wait::Entity::find()
        .filter(wait::Column::RunId.eq(run_id))
        .all(db)
        .await
}

/// The run of the failure handler that a failed run of the user's started, if any.
pub async fn failure_handler_run(
    db: &impl ConnectionTrait,
    user_id: &str,
    run_id: &str,
) -> Result<Option<String>, DbErr> {
    let key = super::send::scoped_key(Some(user_id), &super::send::failure_key(run_id));
    let Some(event) = event::Entity::find()
        .filter(event::Column::IdempotencyKey.eq(key))
        .filter(event::Column::UserId.eq(user_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .filter(run::Column::EventId.eq(event.id))
        .into_tuple::<String>()
        .one(db)
        .await
}

/// An event in a list, with the first runs it triggered.
#[derive(Clone, Debug)]
pub struct EventListing {
    pub event: event::Model,
    /// Oldest first, at most the `runs_per_event` asked for.
    pub runs: Vec<run::Model>,
    /// Whether the event triggered more runs than `runs`.
    pub more_runs: bool,
    /// The functions whose rate limit skipped it, with why.
    pub skipped: Vec<skipped_run::Model>,
}

/// A page of `user_id`'s events, newest first, `limit` of them after `before` (an
/// event id), each with at most `runs_per_event` of its runs; and whether more follow.
pub async fn events(
    db: &impl ConnectionTrait,
    user_id: &str,
    before: Option<&str>,
    limit: u64,
    runs_per_event: u64,
) -> Result<(Vec<EventListing>, bool), DbErr> {
    let mut query = event::Entity::find()
        .filter(event::Column::UserId.eq(user_id))
        .order_by(event::Column::Id, Order::Desc)
        .limit(limit + 1);
    if let Some(before) = before {
        query = query.filter(event::Column::Id.lt(before));
    }
    let mut rows = query.all(db).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let mut listings = Vec::with_capacity(rows.len());
    for event in rows {
        let mut runs = run::Entity::find()
            .filter(run::Column::EventId.eq(&event.id))
            .order_by_asc(run::Column::Id)
            .limit(runs_per_event + 1)
            .all(db)
            .await?;
        let more_runs = runs.len() as u64 > runs_per_event;
        runs.truncate(runs_per_event as usize);
        let skipped = skipped_run::Entity::find()
            .filter(skipped_run::Column::EventId.eq(&event.id))
            .order_by_asc(skipped_run::Column::FunctionId)
            .all(db)
            .await?;
        listings.push(EventListing {
            event,
            runs,
            more_runs,
            skipped,
        });
    }
    Ok((listings, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Percentiles::of(vec![]), None);
        assert_eq!(
            Percentiles::of(vec![7]),
            Some(Percentiles { p50: 7, p95: 7 })
        );
        let hundred: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(
            Percentiles::of(hundred),
            Some(Percentiles { p50: 50, p95: 95 })
        );
    }

    #[test]
    fn a_run_ids_millisecond_is_read_back_and_bounds_its_range() {
        let id = uuid::Uuid::now_v7().to_string();
        let ms = millis_of_id(&id).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now - ms).abs() < 1_000, "{id}: {ms} vs {now}");
        assert!(first_id_at(ms) <= id && id < first_id_at(ms + 1));
        assert_eq!(millis_of_id(&first_id_at(ms)), Some(ms));
    }
}
