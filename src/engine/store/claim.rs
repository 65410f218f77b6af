//! Taking due runs under a lease, with what their executors need; renewing leases.
use std::collections::HashMap;

use sea_orm::sea_query::{
    Alias, CommonTableExpression, Condition, Expr, ExprTrait, Func, LockBehavior, LockType, Order,
    Query, UpdateStatement, WithClause,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    QueryFilter, QueryOrder, QueryResult, TransactionTrait,
};

use super::{due_states, gated, id_col, id_in, locked_by_us, open, running};
use crate::domain::{RunStatus, StepKind, StepStatus};
use crate::engine::concurrency::Concurrency;
use crate::engine::entities::{batch_event, event, run, step, wait};
use crate::engine::event::Event;
use crate::engine::runtime::Runtime;
use crate::engine::throttle::{Starts, Throttle, Window};

/// What a claimed run brings to its invocation: what earlier invocations recorded (its
/// steps in order and, for a run parked on a wait, its waits by step key and the events
/// that ended them) and, for a batch run, its events.
#[derive(Debug, Default)]
pub(crate) struct Saved {
    pub steps: Vec<step::Model>,
    /// A batch run's events, in order; empty for other runs.
    pub batch: Vec<Event>,
    pub waits: HashMap<String, wait::Model>,
    pub wait_events: HashMap<String, Event>,
}

/// A claimed run's event, or why it cannot be had: a run whose event is gone or
/// unreadable fails alone, and never stops the others claimed with it.
pub(crate) type ClaimedEvent = Result<Event, String>;

/// Claims up to `limit` due open runs (without concurrency or throttle keys) for this
/// worker, first in the fair order, with their events (gated runs: [`claim_gated`]).
pub(crate) async fn claim(
    rt: &Runtime,
    limit: usize,
) -> Result<Vec<(run::Model, ClaimedEvent)>, DbErr> {
    let now = rt.clock.now_ms();
    let mut due = Query::select();
    due.column(run::Column::Id)
        .from(run::Entity)
        .and_where(due_states())
        .and_where(open())
        .and_where(Expr::col(run::Column::DueAt).lte(now))
        // Users in turn (see `fairness`), from `idx_run_fair`.
        .order_by(run::Column::FairAt, Order::Asc)
        .limit(limit as u64);
    let postgres = rt.postgres();
    if postgres {
        // Concurrent claimers skip each other's rows instead of waiting on them.
        due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let mut claim = claim_update(rt, now);
    claim.and_where(id_in(postgres, due));
    if !postgres {
        // SQLite has no UPDATE inside WITH: two statements.
        let rows = rt.leases.query_all(&claim).await?;
        return with_events(rt, rows).await;
    }
    // PostgreSQL: the claim and its events in one round trip.
    let claimed = Alias::new("claimed");
    let mut select = Query::select();
    select
        .columns(run::Column::iter().map(|c| (claimed.clone(), c)))
        .from(claimed.clone())
        .left_join(
            event::Entity,
            Expr::col((event::Entity, event::Column::Id))
                .equals((claimed.clone(), run::Column::EventId)),
        );
    for column in event::Column::iter() {
        select.expr_as(
            Expr::col((event::Entity, column)),
            Alias::new(format!("{EVENT_PREFIX}{}", column.as_str())),
        );
    }
    let mut with = WithClause::new();
    with.cte(
        CommonTableExpression::new()
            .query(claim)
            .table_name(claimed)
            .to_owned(),
    );
    let query = with.query(select);
    let rows = rt.leases.query_all(&query).await?;
    rows.iter()
        .map(|row| {
            let run = run::Model::from_query_result(row, "")?;
            let event = match row.try_get::<Option<String>>("", &format!("{EVENT_PREFIX}id"))? {
                Some(_) => readable(event::Model::from_query_result(row, EVENT_PREFIX)),
                None => Err(gone(&run.event_id)),
            };
            Ok((run, event))
        })
        .collect()
}

/// The claim's UPDATE, without the runs it applies to: each one due still, now running
/// under this worker's lease.
fn claim_update(rt: &Runtime, now: i64) -> UpdateStatement {
    let mut claim = Query::update();
    claim
        .table(run::Entity)
        .value(run::Column::Status, RunStatus::Running.as_str())
        .value(run::Column::LockedBy, rt.worker_id.as_str())
        .value(run::Column::LeaseUntil, rt.lease_from(now))
        .value(run::Column::Claims, Expr::col(run::Column::Claims).add(1))
        .value(
            run::Column::StalledClaims,
            Expr::col(run::Column::StalledClaims).add(1),
        )
        .value(
            run::Column::StartedAt,
            Func::coalesce([Expr::col(run::Column::StartedAt), Expr::val(now)]),
        )
        .value(run::Column::UpdatedAt, now)
        .and_where(due_states())
        // By name, never `*`: a statement prepared before another process added a
        // column (a newer version's migration) fails on its next run (SQLite's driver
        // even panics), and a claim must outlive a rolling deploy.
        .returning(Query::returning().columns(run::Column::iter()));
    claim
}

/// Claimed rows as runs, with their events read after.
async fn with_events(
    rt: &Runtime,
    rows: Vec<QueryResult>,
) -> Result<Vec<(run::Model, ClaimedEvent)>, DbErr> {
    let runs = rows
        .iter()
        .map(|row| run::Model::from_query_result(row, ""))
        .collect::<Result<Vec<_>, _>>()?;
    let events = events(rt, runs.iter().map(|r| r.event_id.clone()).collect()).await?;
    Ok(runs
        .into_iter()
        .map(|r| {
            // One event may have started several of these runs.
            let event = match events.get(&r.event_id) {
                Some(event) => event.clone(),
                None => Err(gone(&r.event_id)),
            };
            (r, event)
        })
        .collect())
}

/// Serializes the claims of gated runs among PostgreSQL processes, for the length of
/// a claim's transaction (an arbitrary number, Nodebase's own).
const GATED_CLAIM_LOCK: i64 = 0x6e6f_6465_6261_7365;

/// What a claim of gated runs took, and whether it looked at a full window of
/// candidates (then more may be claimable at once).
pub(crate) struct GatedClaim {
    pub runs: Vec<(run::Model, ClaimedEvent)>,
    pub more: bool,
}

/// A due gated run, as the claim weighs it.
struct Candidate {
    id: String,
    keyed: Keyed,
    throttle_key: Option<String>,
    started_at: Option<i64>,
}

impl Candidate {
    fn from_row(row: &QueryResult) -> Result<Candidate, DbErr> {
        Ok(Candidate {
            id: row.try_get("", run::Column::Id.as_str())?,
            keyed: Keyed::from_query_result(row, "")?,
            throttle_key: row.try_get("", run::Column::ThrottleKey.as_str())?,
            started_at: row.try_get("", run::Column::StartedAt.as_str())?,
        })
    }
}

/// Claims up to `limit` due gated runs (with concurrency or throttle keys) whose keys
/// have room, oldest due first. One claimer at a time — SQLite's write lock, a
/// transaction-scoped advisory lock on PostgreSQL — counts the running runs by
/// concurrency key and the recent starts by throttle key, reads the due runs of keys
/// that are not full, takes what fits, moves the due time of the runs a throttle holds
/// back to when their window frees, and commits before the next counts.
pub(crate) async fn claim_gated(rt: &Runtime, limit: usize) -> Result<GatedClaim, DbErr> {
    let now = rt.clock.now_ms();
    let none = GatedClaim {
        runs: Vec::new(),
        more: false,
    };
    // Most of the time no gated run is due: one indexed read says so, without the lock.
    let mut any = Query::select();
    any.expr(Expr::val(1))
        .from(run::Entity)
        .and_where(due_states())
        .and_where(gated())
        .and_where(Expr::col(run::Column::DueAt).lte(now))
        .limit(1);
    if rt.leases.query_one(&any).await?.is_none() {
        return Ok(none);
    }
    let postgres = rt.postgres();
    let txn = if postgres {
        let txn = rt.leases.begin().await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({GATED_CLAIM_LOCK})"))
            .await?;
        txn
    } else {
        super::begin(rt).await?
    };
    let mut busy = Busy::now(&txn).await?;
    let window = (limit * 4).max(64);
    let mut due = Query::select();
    due.columns([
        run::Column::Id,
        run::Column::FunctionId,
        run::Column::ConcurrencyKey,
        run::Column::ConcurrencyKey2,
        run::Column::ThrottleKey,
        run::Column::StartedAt,
    ])
    .from(run::Entity)
    .and_where(due_states())
    .and_where(gated())
    .and_where(Expr::col(run::Column::DueAt).lte(now))
    // Runs a throttle moved to one due time start in the order they were queued.
    .order_by(run::Column::DueAt, Order::Asc)
    .order_by(run::Column::Id, Order::Asc)
    .limit(window as u64);
    if let Some(full) = busy.full(&rt.limits) {
        due.cond_where(full.not());
    }
    let candidates = txn
        .query_all(&due)
        .await?
        .iter()
        .map(Candidate::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let more = candidates.len() == window;
    let throttled_keys = candidates
        .iter()
        .filter_map(|c| throttled(rt, c).map(|(_, key)| (c.keyed.function_id.as_str(), key)));
    let mut starts = starts_in_window(rt, &txn, throttled_keys, now).await?;
    let mut picked = Vec::new();
    let mut held: HashMap<i64, Vec<String>> = HashMap::new();
    for candidate in &candidates {
        if busy.held_back_by(&rt.limits, &candidate.keyed).is_some() {
            continue;
        }
        let function_id = &candidate.keyed.function_id;
        let throttle = throttled(rt, candidate);
        if let Some((throttle, key)) = throttle {
            if let Some(until) = starts.held_until(throttle, function_id, key) {
                held.entry(until).or_default().push(candidate.id.clone());
                continue;
            }
            starts.take(function_id, key, now);
        }
        busy.take(&candidate.keyed);
        picked.push(candidate.id.clone());
        if picked.len() == limit {
            break;
        }
    }
    let moved = !held.is_empty();
    for (until, ids) in held {
        let mut later = Query::update();
        later
            .table(run::Entity)
            .value(run::Column::DueAt, until)
            .and_where(due_states())
            .and_where(id_col().is_in(ids));
        txn.execute(&later).await?;
    }
    if picked.is_empty() {
        txn.commit().await?;
        return Ok(GatedClaim {
            runs: Vec::new(),
            more: more && moved,
        });
    }
    let mut claim = claim_update(rt, now);
    claim.and_where(id_col().is_in(picked));
    let rows = txn.query_all(&claim).await?;
    txn.commit().await?;
    Ok(GatedClaim {
        runs: with_events(rt, rows).await?,
        more,
    })
}

/// The throttle a candidate's start counts against, with its key: only a run's first
/// start is throttled.
fn throttled<'a>(rt: &'a Runtime, candidate: &'a Candidate) -> Option<(&'a Throttle, &'a str)> {
    if candidate.started_at.is_some() {
        return None;
    }
    let throttle = rt.throttles.get(&candidate.keyed.function_id)?;
    Some((throttle, candidate.throttle_key.as_deref()?))
}

/// The starts in their current windows of these (function, throttle key) pairs, in
/// one read: how many, and the oldest.
pub(crate) async fn starts_in_window<'k, C: ConnectionTrait>(
    rt: &Runtime,
    conn: &C,
    pairs: impl Iterator<Item = (&'k str, &'k str)>,
    now: i64,
) -> Result<Starts, DbErr> {
    let mut keys: HashMap<&str, Vec<&str>> = HashMap::new();
    for (function_id, key) in pairs {
        if !rt.throttles.contains_key(function_id) {
            continue;
        }
        let function_keys = keys.entry(function_id).or_default();
        if !function_keys.contains(&key) {
            function_keys.push(key);
        }
    }
    let mut starts = Starts::default();
    if keys.is_empty() {
        return Ok(starts);
    }
    let mut windows = Condition::any();
    for (function_id, function_keys) in keys {
        let period = rt.throttles[function_id].period_ms();
        windows = windows.add(
            Expr::col(run::Column::FunctionId)
                .eq(function_id)
                .and(Expr::col(run::Column::ThrottleKey).is_in(function_keys))
                .and(Expr::col(run::Column::StartedAt).gt(now - period)),
        );
    }
    let mut query = Query::select();
    query
        .columns([run::Column::FunctionId, run::Column::ThrottleKey])
        .expr(Func::count(Expr::col(run::Column::Id)))
        .expr(Func::min(Expr::col(run::Column::StartedAt)))
        .from(run::Entity)
        // Literal, as in the partial index of the throttled runs' starts.
        .and_where(Expr::cust("throttle_key IS NOT NULL"))
        .cond_where(windows)
        .group_by_col(run::Column::FunctionId)
        .group_by_col(run::Column::ThrottleKey);
    for row in conn.query_all(&query).await? {
        let function_id: String = row.try_get_by_index(0)?;
        let key: String = row.try_get_by_index(1)?;
        let count: i64 = row.try_get_by_index(2)?;
        let oldest: i64 = row.try_get_by_index(3)?;
        let window = Window {
            count: count as u32,
            oldest,
        };
        starts.insert(function_id, key, window);
    }
    Ok(starts)
}

/// A run's function and concurrency keys.
#[derive(FromQueryResult)]
pub(crate) struct Keyed {
    pub function_id: String,
    pub concurrency_key: Option<String>,
    pub concurrency_key_2: Option<String>,
}

impl Keyed {
    fn keys(&self) -> impl Iterator<Item = (usize, &str)> {
        [&self.concurrency_key, &self.concurrency_key_2]
            .into_iter()
            .enumerate()
            .filter_map(|(i, key)| key.as_deref().map(|key| (i, key)))
    }
}

/// Runs executing, by (function, limit, key).
#[derive(Default)]
pub(crate) struct Busy(HashMap<(String, usize, String), u32>);

impl Busy {
    /// The keyed runs executing now, as `conn` sees them.
    pub(crate) async fn now<C: ConnectionTrait>(conn: &C) -> Result<Busy, DbErr> {
        let mut busy = Busy::default();
        let mut running = Query::select();
        running
            .columns([
                run::Column::FunctionId,
                run::Column::ConcurrencyKey,
                run::Column::ConcurrencyKey2,
            ])
            .from(run::Entity)
            .and_where(super::running())
            .and_where(Expr::col(run::Column::ConcurrencyKey).is_not_null());
        for row in conn.query_all(&running).await? {
            busy.take(&Keyed::from_query_result(&row, "")?);
        }
        Ok(busy)
    }

    fn take(&mut self, run: &Keyed) {
        for (i, key) in run.keys() {
            *self
                .0
                .entry((run.function_id.clone(), i, key.to_string()))
                .or_default() += 1;
        }
    }

    /// The first of the run's limits that has no room for it, if any (a limit this
    /// process does not know of does not hold the run back).
    pub(crate) fn held_back_by<'l>(
        &self,
        limits: &'l HashMap<String, Vec<Concurrency>>,
        run: &Keyed,
    ) -> Option<&'l Concurrency> {
        let limits = limits.get(&run.function_id)?;
        run.keys().find_map(|(i, key)| {
            let limit = limits.get(i)?;
            let busy = self
                .0
                .get(&(run.function_id.clone(), i, key.to_string()))
                .copied()
                .unwrap_or(0);
            (busy >= limit.limit).then_some(limit)
        })
    }

    /// A condition matching the runs of the keys that are full, if any is.
    fn full(&self, limits: &HashMap<String, Vec<Concurrency>>) -> Option<Condition> {
        let mut full = Condition::any();
        let mut any = false;
        for ((function_id, i, key), busy) in &self.0 {
            let at_limit = limits
                .get(function_id)
                .and_then(|limits| limits.get(*i))
                .is_some_and(|limit| *busy >= limit.limit);
            if at_limit {
                let column = if *i == 0 {
                    run::Column::ConcurrencyKey
                } else {
                    run::Column::ConcurrencyKey2
                };
                full = full.add(
                    Expr::col(run::Column::FunctionId)
                        .eq(function_id.as_str())
                        .and(Expr::col(column).eq(key.as_str())),
                );
                any = true;
            }
        }
        any.then_some(full)
    }
}

/// Names the event's columns apart from the run's in the claim's result (the run has
/// an `event_id` of its own).
const EVENT_PREFIX: &str = "ev_";

/// The events with these ids, each read on its own.
async fn events(rt: &Runtime, ids: Vec<String>) -> Result<HashMap<String, ClaimedEvent>, DbErr> {
    let rows = event::Entity::find()
        .filter(event::Column::Id.is_in(ids))
        .all(&rt.db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.id.clone(), readable(Ok(row))))
        .collect())
}

/// An event row as a handler's [`Event`], or why it cannot be read.
pub(crate) fn readable(row: Result<event::Model, DbErr>) -> ClaimedEvent {
    let row = row.map_err(|e| format!("its event cannot be read: {e}"))?;
    Event::try_from(row).map_err(|e| format!("its event cannot be read: {e}"))
}

fn gone(event_id: &str) -> String {
    format!("its event {event_id} is gone")
}

/// The events of these batch runs (`Function::batch`), in the order they joined; for a
/// run one of whose events is gone or unreadable, why (the run fails: no event of a
/// batch is dropped unseen). Two reads, however many runs.
pub(crate) async fn batches(
    rt: &Runtime,
    run_ids: Vec<String>,
) -> Result<HashMap<String, Result<Vec<Event>, String>>, DbErr> {
    if run_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = batch_event::Entity::find()
        .filter(batch_event::Column::RunId.is_in(run_ids))
        .order_by_asc(batch_event::Column::Position)
        .all(&rt.db)
        .await?;
    let events = events(rt, rows.iter().map(|r| r.event_id.clone()).collect()).await?;
    let mut by_run: HashMap<String, Result<Vec<Event>, String>> = HashMap::new();
    for row in rows {
        let batch = by_run.entry(row.run_id).or_insert_with(|| Ok(Vec::new()));
        let Ok(list) = batch else { continue };
        match events.get(&row.event_id) {
            Some(Ok(event)) => list.push(event.clone()),
            Some(Err(why)) => *batch = Err(format!("an event of its batch: {why}")),
            None => *batch = Err(format!("an event of its batch: {}", gone(&row.event_id))),
        }
    }
    Ok(by_run)
}

/// What these runs saved (see [`Saved`]).
pub(crate) async fn steps(
    rt: &Runtime,
    run_ids: Vec<String>,
) -> Result<HashMap<String, Saved>, DbErr> {
    let mut by_run: HashMap<String, Saved> = HashMap::new();
    if run_ids.is_empty() {
        return Ok(by_run);
    }
    let rows = step::Entity::find()
        .filter(step::Column::RunId.is_in(run_ids.clone()))
        .order_by_asc(step::Column::Position)
        .all(&rt.db)
        .await?;
    let mut waiting = Vec::new();
    for row in rows {
        if row.kind == StepKind::Wait && row.status == StepStatus::Waiting {
            waiting.push(row.run_id.clone());
        }
        by_run
            .entry(row.run_id.clone())
            .or_default()
            .steps
            .push(row);
    }
    if waiting.is_empty() {
        return Ok(by_run);
    }
    // The waits of runs parked on one, and the events that ended them.
    let waits = wait::Entity::find()
        .filter(wait::Column::RunId.is_in(waiting))
        .all(&rt.db)
        .await?;
    let ended: Vec<String> = waits.iter().filter_map(|w| w.event_id.clone()).collect();
    let events = self::events(rt, ended).await?;
    for wait in waits {
        let saved = by_run.entry(wait.run_id.clone()).or_default();
        if let Some(Ok(event)) = wait.event_id.as_ref().and_then(|id| events.get(id)) {
            saved.wait_events.insert(event.id.clone(), event.clone());
        }
        saved.waits.insert(wait.step_id.clone(), wait);
    }
    Ok(by_run)
}

/// When the next queued or sleeping run falls due, if any. A gated run due already is
/// left out: it waits for room in its concurrency keys, and a run of its function that
/// stops executing rings the workers (a throttle moves the due time of the runs it
/// holds back instead). One round trip.
pub(crate) async fn next_due(rt: &Runtime) -> Result<Option<i64>, DbErr> {
    let mut free = Query::select();
    free.expr(Func::min(Expr::col(run::Column::DueAt)))
        .from(run::Entity)
        .and_where(due_states())
        .and_where(open());
    let mut next = Query::select();
    next.expr(Expr::SubQuery(None, Box::new(free.into())));
    if rt.gates() {
        let mut keyed = Query::select();
        keyed
            .expr(Func::min(Expr::col(run::Column::DueAt)))
            .from(run::Entity)
            .and_where(due_states())
            .and_where(gated())
            .and_where(Expr::col(run::Column::DueAt).gt(rt.clock.now_ms()));
        next.expr(Expr::SubQuery(None, Box::new(keyed.into())));
    }
    let Some(row) = rt.db.query_one(&next).await? else {
        return Ok(None);
    };
    let free: Option<i64> = row.try_get_by_index(0)?;
    let keyed: Option<i64> = if rt.gates() {
        row.try_get_by_index(1)?
    } else {
        None
    };
    Ok(match (free, keyed) {
        (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
        (a, b) => a.or(b),
    })
}

/// Renews the leases of this worker's runs that are still executing.
pub(crate) async fn heartbeat(rt: &Runtime, run_ids: Vec<String>) -> Result<u64, DbErr> {
    if run_ids.is_empty() {
        return Ok(0);
    }
    let now = rt.clock.now_ms();
    let postgres = rt.postgres();
    let mut ours = Query::select();
    ours.column(run::Column::Id)
        .from(run::Entity)
        .and_where(id_col().is_in(run_ids));
    if postgres {
        // A run whose writes are being committed right now is skipped: that commit
        // renews its lease, and waiting for it could deadlock with it.
        ours.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let mut renew = Query::update();
    renew
        .table(run::Entity)
        .value(run::Column::LeaseUntil, rt.lease_from(now))
        .and_where(id_in(postgres, ours))
        .and_where(running())
        .and_where(locked_by_us(rt));
    Ok(rt.leases.execute(&renew).await?.rows_affected())
}
