//! Recording events and one queued run per function each triggers, through the
//! caller's connection or transaction.
use std::borrow::Cow;
use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict, Order, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionSession, TransactionTrait,
};

use super::columns::Columns;
use super::notify;
use crate::domain::RunStatus;
use crate::engine::concurrency;
use crate::engine::cron::{tick_key, Schedule};
use crate::engine::entities::{awaited_event, batch_event, event, run, skipped_run, wait};
use crate::engine::error::EngineError;
use crate::engine::event::{
    new_id, prepare, Event, NewEvent, Prepared, SendReceipt, FAILED, SCHEDULED,
};
use crate::engine::fairness::{Places, SHARE};
use crate::engine::function::Failure;
use crate::engine::progress::RunRef;
use crate::engine::runtime::Runtime;
use crate::engine::store::claim::ClaimedEvent;

/// Rows per multi-row INSERT, well under SQLite's limit on bound parameters.
const ROWS_PER_INSERT: usize = 500;

/// A queued run of `function_id` for `event_id`, due now (see [`with_gate_keys`]).
pub(crate) fn new_run(
    run_id: &str,
    function_id: &str,
    event_id: &str,
    user_id: Option<String>,
    now: i64,
) -> run::ActiveModel {
    run::ActiveModel {
        id: Set(run_id.to_string()),
        function_id: Set(function_id.to_string()),
        event_id: Set(event_id.to_string()),
        user_id: Set(user_id),
        status: Set(RunStatus::Queued),
        due_at: Set(now),
        locked_by: Set(None),
        lease_until: Set(None),
        claims: Set(0),
        stalled_claims: Set(0),
        attempts: Set(0),
        output: Set(None),
        error: Set(None),
        rerun_of: Set(None),
        invoked_by: Set(None),
        cancelled_by: Set(None),
        concurrency_key: Set(None),
        concurrency_key_2: Set(None),
        debounce_key: Set(None),
        throttle_key: Set(None),
        rate_key: Set(None),
        fair_at: Set(now),
        batch_key: Set(None),
        batch_size: Set(0),
        trace_parent: Set(crate::engine::trace::current_parent()),
        created_at: Set(now),
        started_at: Set(None),
        ended_at: Set(None),
        updated_at: Set(now),
    }
}

/// Gives a new run of `function_id` the keys its concurrency limits and its throttle
/// take from `event`.
pub(crate) fn with_gate_keys(
    rt: &Runtime,
    run: &mut run::ActiveModel,
    function_id: &str,
    event: &Event,
) {
    if let Some(limits) = rt.limits.get(function_id) {
        let [key, key_2] = concurrency::keys(limits, &event.as_json());
        run.concurrency_key = Set(key);
        run.concurrency_key_2 = Set(key_2);
    }
    if let Some(throttle) = rt.throttles.get(function_id) {
        run.throttle_key = Set(Some(throttle.key_for(&event.as_json())));
    }
}

/// Records `events` and their runs: one for each function id `route` gives the event
/// (the functions it triggers, or the one an invocation names). An event whose name
/// `awaited` says some function may wait for is also recorded as pending for the
/// matcher, in the same transaction. `wakes_here`: the caller wakes this process's
/// dispatcher itself once the send has committed, so that the one-statement send's
/// wake-up signal names this process, whose listener skips it (the transaction's
/// signal still wakes every process).
pub(crate) async fn send_many<'a, C: ConnectionTrait + TransactionTrait>(
    rt: &Runtime,
    conn: &C,
    prepared: Vec<Prepared>,
    route: impl Fn(&Prepared) -> Cow<'a, [String]>,
    awaited: impl Fn(&str) -> bool,
    wakes_here: bool,
) -> Result<Vec<SendReceipt>, EngineError> {
    let sent = send_and_start(rt, conn, prepared, route, awaited, wakes_here, 0).await?;
    Ok(sent.receipts)
}

/// What [`send_and_start`] recorded.
pub(crate) struct Sent {
    pub receipts: Vec<SendReceipt>,
    /// The runs recorded as claimed by this worker already, with their events.
    pub started: Vec<(run::Model, ClaimedEvent)>,
}

/// Like [`send_many`], and on PostgreSQL, when the send is one statement, records up to
/// `start` of its runs as claimed by this worker already (running under its lease): runs
/// due now of functions without concurrency limits or a throttle, in the order sent. The
/// caller has `start` free worker slots for them and runs them once `conn` has
/// committed (so `conn` should commit at once: the pool).
pub(crate) async fn send_and_start<'a, C: ConnectionTrait + TransactionTrait>(
    rt: &Runtime,
    conn: &C,
    prepared: Vec<Prepared>,
    route: impl Fn(&Prepared) -> Cow<'a, [String]>,
    awaited: impl Fn(&str) -> bool,
    wakes_here: bool,
    start: usize,
) -> Result<Sent, EngineError> {
    let now = rt.clock.now_ms();
    let rows: Vec<Rows> = prepared
        .into_iter()
        .map(|p| {
            let functions = route(&p);
            let awaited = awaited(&p.event.name);
            rows(rt, p, &functions, awaited, now)
        })
        .collect();
    let one_statement = conn.get_database_backend() == DbBackend::Postgres
        && rows.iter().all(|r| {
            r.idempotency_key.is_none()
                && r.awaited.is_none()
                && r.cancels.is_empty()
                && r.runs
                    .iter()
                    .all(|run| !is_debounced(run) && !is_rate_limited(run) && !is_batched(run))
        });
    if one_statement {
        // The wake-up signal. Sent through the pool, the runs wake this process's workers
        // once the send has committed: the signal is for the other processes, and none
        // is sent while no other listens (`notifier::Census`).
        let wake = match wakes_here {
            false => Some(notify::wake_sql(None)),
            true if rt.census.tells() => Some(notify::wake_sql(Some(&rt.worker_id))),
            true => None,
        };
        let start = (start > 0).then(|| Start {
            worker_id: &rt.worker_id,
            lease_until: rt.lease_from(now),
            most: start,
        });
        send_in_one_statement(conn, rows, now, wake, start).await
    } else {
        let receipts = send_in_transaction(rt, conn, rows, now).await?;
        Ok(Sent {
            receipts,
            started: Vec::new(),
        })
    }
}

/// Runs a one-statement send records as claimed already (see [`send_and_start`]).
struct Start<'a> {
    worker_id: &'a str,
    lease_until: i64,
    most: usize,
}

impl Start<'_> {
    /// Marks up to `most` of `runs` as claimed, if they are open and due at `now`. The
    /// one-statement send records a claim from the status alone, with this worker, lease
    /// and time: the values set here.
    fn mark(&self, runs: &mut [&mut run::ActiveModel], now: i64) -> Vec<String> {
        let open_and_due = |run: &run::ActiveModel| {
            matches!(&run.concurrency_key, Set(None))
                && matches!(&run.throttle_key, Set(None))
                && matches!(&run.due_at, Set(due) if *due <= now)
        };
        let mut marked = Vec::new();
        for run in runs
            .iter_mut()
            .filter(|run| open_and_due(run))
            .take(self.most)
        {
            run.status = Set(RunStatus::Running);
            run.locked_by = Set(Some(self.worker_id.to_string()));
            run.lease_until = Set(Some(self.lease_until));
            run.claims = Set(1);
            run.started_at = Set(Some(now));
            if let Set(id) = &run.id {
                marked.push(id.clone());
            }
        }
        marked
    }
}

/// The place of a user's last run if it has not started yet, read from the user's
/// newest run (one probe of `idx_run_user`): its `fair_at` without the head start it
/// took.
const LAST_WAITING: &str =
    "CASE WHEN status = 'queued' AND claims = 0 THEN fair_at + created_at - due_at END";

/// Gives new `runs` their places in the fair order (see `fairness`). Reads, in one
/// statement on `conn`, the place of each of their users' last run if it has not
/// started yet ([`LAST_WAITING`]). On SQLite, call it after the send's first write: a
/// read first would leave a deferred transaction unable to take the write lock.
pub(crate) async fn place_all<C: ConnectionTrait>(
    conn: &C,
    runs: &mut [&mut run::ActiveModel],
    now: i64,
) -> Result<(), DbErr> {
    let mut places = places(conn, runs, now).await?;
    for run in runs.iter_mut() {
        place(&mut places, run, now);
    }
    Ok(())
}

async fn places<C: ConnectionTrait>(
    conn: &C,
    runs: &[&mut run::ActiveModel],
    now: i64,
) -> Result<Places, DbErr> {
    let mut users: Vec<Option<String>> = runs
        .iter()
        .filter_map(|run| match &run.user_id {
            sea_orm::ActiveValue::Set(user) => Some(user.clone()),
            _ => None,
        })
        .collect();
    users.sort_unstable();
    users.dedup();
    if users.is_empty() {
        return Ok(Places::new(now, HashMap::new()));
    }
    let mut read = Query::select();
    for user in &users {
        let mut last = Query::select();
        last.expr(Expr::cust(LAST_WAITING))
            .from(run::Entity)
            .and_where(match user {
                Some(user) => Expr::col(run::Column::UserId).eq(user.as_str()),
                None => Expr::col(run::Column::UserId).is_null(),
            })
            .order_by(run::Column::Id, Order::Desc)
            .limit(1);
        read.expr(Expr::SubQuery(None, Box::new(last.into())));
    }
    let Some(row) = conn.query_one(&read).await? else {
        return Ok(Places::new(now, HashMap::new()));
    };
    let mut last = HashMap::new();
    for (i, user) in users.into_iter().enumerate() {
        if let Some(at) = row.try_get_by_index::<Option<i64>>(i)? {
            last.insert(user, at);
        }
    }
    Ok(Places::new(now, last))
}

/// Gives a new `run` its place: the next of its user's, moved back by the head start
/// its due time already took. A run due later (debounced) waits at its due time, as
/// parked runs do.
fn place(places: &mut Places, run: &mut run::ActiveModel, now: i64) {
    let (Set(user), Set(due_at)) = (&run.user_id, &run.due_at) else {
        return;
    };
    let due_at = *due_at;
    let at = if due_at > now {
        due_at
    } else {
        places.take(user) - (now - due_at)
    };
    run.fair_at = Set(at);
}

/// An event's rows and its receipt, before anything is stored.
struct Rows {
    event: event::ActiveModel,
    idempotency_key: Option<String>,
    runs: Vec<run::ActiveModel>,
    /// Set when some function may wait for the event.
    awaited: Option<awaited_event::ActiveModel>,
    /// The waits for the events that would cancel the runs (`Function::cancel_on`).
    cancels: Vec<wait::ActiveModel>,
    receipt: SendReceipt,
}

fn rows(rt: &Runtime, p: Prepared, functions: &[String], awaited: bool, now: i64) -> Rows {
    let event_id = new_id();
    let mut runs = Vec::with_capacity(functions.len());
    let mut run_ids = Vec::with_capacity(functions.len());
    let mut run_functions = Vec::with_capacity(functions.len());
    let mut cancels = Vec::new();
    // The event as a handler will see it, built only for functions whose runs need it
    // at the send (cancel rules, concurrency, throttle, debounce and rate-limit keys,
    // priorities).
    let needs_event = |id: &String| {
        rt.cancel_rules.contains_key(id)
            || rt.limits.contains_key(id)
            || rt.throttles.contains_key(id)
            || rt.debounces.contains_key(id)
            || rt.rate_limits.contains_key(id)
            || rt.priorities.contains_key(id)
    };
    let event = functions.iter().any(needs_event).then(|| Event {
        id: event_id.clone(),
        name: p.event.name.clone(),
        data: p.event.data.clone(),
        user_id: p.event.user_id.clone(),
        ts: now,
    });
    for function_id in functions {
        let run_id = new_id();
        let mut run = new_run(
            &run_id,
            function_id,
            &event_id,
            p.event.user_id.clone(),
            now,
        );
        if let Some(event) = event.as_ref().filter(|_| needs_event(function_id)) {
            if let Some(rules) = rt.cancel_rules.get(function_id) {
                cancels.extend(
                    super::wait::cancel_waits(&run_id, event, rules, now)
                        .into_iter()
                        .map(|w| w.into_active_model()),
                );
            }
            with_gate_keys(rt, &mut run, function_id, event);
            if let Some(debounce) = rt.debounces.get(function_id) {
                // Due a period away; a later event of the burst takes it over.
                let key = debounce.key_for(&event.as_json());
                run.debounce_key = Set(Some(scoped_key(event.user_id.as_deref(), &key)));
                run.due_at = Set(now + debounce.period_ms());
            }
            if let Some(limit) = rt.rate_limits.get(function_id) {
                run.rate_key = Set(limit.key_of(event));
            }
            if let Some(priority) = rt.priorities.get(function_id) {
                run.due_at = Set(now - priority.head_start_ms(&event.as_json()));
            }
        }
        if let Some(batch) = rt.batches.get(function_id) {
            // Due a timeout away, unless the batch it opens or joins fills first.
            run.batch_key = Set(Some(scoped_key(p.event.user_id.as_deref(), "")));
            run.batch_size = Set(1);
            run.due_at = Set(now + batch.timeout_ms());
        }
        runs.push(run);
        run_ids.push(run_id);
        run_functions.push(function_id.clone());
    }
    let idempotency_key = p
        .event
        .idempotency_key
        .as_deref()
        .map(|key| scoped_key(p.event.user_id.as_deref(), key));
    let awaited = awaited.then(|| awaited_event::ActiveModel {
        event_id: Set(event_id.clone()),
        name: Set(p.event.name.clone()),
        user_key: Set(p.event.user_id.clone().unwrap_or_default()),
        ts: Set(now),
        pending: Set(true),
    });
    let sender = p.event.user_id.clone();
    Rows {
        event: event::ActiveModel {
            id: Set(event_id.clone()),
            name: Set(p.event.name),
            data: Set(p.data),
            user_id: Set(p.event.user_id),
            idempotency_key: Set(idempotency_key.clone()),
            ts: Set(now),
        },
        idempotency_key,
        runs,
        awaited,
        cancels,
        receipt: SendReceipt {
            event_id,
            run_ids,
            functions: run_functions,
            user_id: sender,
            skipped: Vec::new(),
            duplicate: false,
        },
    }
}

/// PostgreSQL, no idempotency keys: the events, their runs and the wake-up signal (if
/// `wake`) in one statement — atomic by itself, and one round trip (plus the commit's
/// flush when `conn` is not a transaction). The rows travel as one binary array per
/// column ([`Columns`]).
///
/// When the runs are all one user's (a request's send, a bulk send of one account), the
/// statement itself places them in the fair order: placed as if the user had nothing
/// waiting, they move back together behind the user's last waiting run
/// ([`LAST_WAITING`], probed once) — the places [`place_all`] gives, without a round trip
/// of their own. Several users' runs are placed by [`place_all`] first.
async fn send_in_one_statement<C: ConnectionTrait>(
    conn: &C,
    mut rows: Vec<Rows>,
    now: i64,
    wake: Option<String>,
    start: Option<Start<'_>>,
) -> Result<Sent, EngineError> {
    use sea_orm::TryIntoModel;

    let mut runs: Vec<&mut run::ActiveModel> = rows.iter_mut().flat_map(|r| &mut r.runs).collect();
    let one_user = match runs.first().map(|run| &run.user_id) {
        Some(Set(first)) => runs
            .iter()
            .all(|run| matches!(&run.user_id, Set(user) if user == first))
            .then(|| first.clone()),
        _ => None,
    };
    if one_user.is_some() {
        let mut idle = Places::new(now, HashMap::new());
        for run in runs.iter_mut() {
            place(&mut idle, run, now);
        }
    } else {
        place_all(conn, &mut runs, now).await?;
    }
    let started = match &start {
        Some(start) => start.mark(&mut runs, now),
        None => Vec::new(),
    };

    let mut events = Vec::with_capacity(rows.len());
    let mut runs = Vec::new();
    let mut receipts = Vec::with_capacity(rows.len());
    for r in rows {
        events.push(r.event.try_into_model()?);
        for run in r.runs {
            runs.push(run.try_into_model()?);
        }
        receipts.push(r.receipt);
    }
    if events.is_empty() {
        return Ok(Sent {
            receipts,
            started: Vec::new(),
        });
    }
    // The statement's own parameters first: $1 the time, $2 and $3 the worker and the
    // lease of the runs it starts, $4 the one user whose runs it places.
    let mut values: Vec<sea_orm::Value> = vec![
        now.into(),
        start.as_ref().map(|s| s.worker_id.to_string()).into(),
        start.as_ref().map(|s| s.lease_until).into(),
    ];
    let whose = match &one_user {
        Some(Some(user)) => {
            values.push(user.clone().into());
            "user_id = $4"
        }
        _ => "user_id IS NULL",
    };
    let events_in = event_columns(&events);
    // Every event and run of a send is recorded at its time.
    let mut sql = format!(
        "INSERT INTO event ({}, ts) SELECT {}, $1 FROM {}",
        events_in.names(),
        events_in.select(None),
        events_in.from("e", values.len() + 1)
    );
    values.extend(events_in.into_values());
    if !runs.is_empty() {
        let runs_in = run_columns(&runs);
        // A run due later (debounced) keeps its due time as its place.
        let fair_at = one_user.is_some().then(|| {
            format!(
                "fair_at + CASE WHEN due_at <= $1 THEN GREATEST(0, (SELECT {LAST_WAITING} \
                 FROM run WHERE {whose} ORDER BY id DESC LIMIT 1) + {SHARE} - $1) ELSE 0 END"
            )
        });
        // `fair_at`: the runs' places, as given or moved back behind their user's last.
        // A run recorded as started ([`Start::mark`]) is running under $2's lease.
        sql = format!(
            "WITH new_events AS ({sql}), new_runs AS (INSERT INTO run ({}, locked_by, \
             lease_until, claims, started_at, created_at, updated_at) SELECT {}, \
             CASE WHEN status = 'running' THEN $2 END, \
             CASE WHEN status = 'running' THEN $3 END, \
             CASE WHEN status = 'running' THEN 1 ELSE 0 END, \
             CASE WHEN status = 'running' THEN $1 END, $1, $1 FROM {}) SELECT {}",
            runs_in.names(),
            runs_in.select(fair_at.as_deref().map(|expr| ("fair_at", expr))),
            runs_in.from("r", values.len() + 1),
            wake.as_deref().unwrap_or("NULL")
        );
        values.extend(runs_in.into_values());
    }
    let statement = sea_orm::Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    conn.execute_raw(statement).await?;
    let started = runs
        .into_iter()
        .filter(|run| started.contains(&run.id))
        .map(|run| {
            let event = events.iter().find(|e| e.id == run.event_id).cloned();
            let event =
                super::claim::readable(event.ok_or(DbErr::RecordNotFound(run.event_id.clone())));
            (run, event)
        })
        .collect();
    Ok(Sent { receipts, started })
}

/// New events as `send_in_one_statement`'s arrays carry them.
fn event_columns(events: &[event::Model]) -> Columns {
    let mut c = Columns::new(events.len());
    c.text("id", events.iter().map(|e| e.id.as_str()));
    c.text("name", events.iter().map(|e| e.name.as_str()));
    c.text("data", events.iter().map(|e| e.data.as_str()));
    c.nullable_text("user_id", events.iter().map(|e| e.user_id.as_deref()));
    c
}

/// New runs as `send_in_one_statement`'s arrays carry them: the columns that differ
/// between the runs of a send. The statement sets the times and a started run's claim;
/// the table's defaults say no attempt yet and no re-run.
fn run_columns(runs: &[run::Model]) -> Columns {
    let mut c = Columns::new(runs.len());
    c.text("id", runs.iter().map(|r| r.id.as_str()));
    c.text("function_id", runs.iter().map(|r| r.function_id.as_str()));
    c.text("event_id", runs.iter().map(|r| r.event_id.as_str()));
    c.nullable_text("user_id", runs.iter().map(|r| r.user_id.as_deref()));
    c.text("status", runs.iter().map(|r| r.status.as_str()));
    c.bigint("due_at", runs.iter().map(|r| r.due_at));
    c.nullable_text(
        "concurrency_key",
        runs.iter().map(|r| r.concurrency_key.as_deref()),
    );
    c.nullable_text(
        "concurrency_key_2",
        runs.iter().map(|r| r.concurrency_key_2.as_deref()),
    );
    c.nullable_text(
        "throttle_key",
        runs.iter().map(|r| r.throttle_key.as_deref()),
    );
    c.bigint("fair_at", runs.iter().map(|r| r.fair_at));
    c.nullable_text(
        "trace_parent",
        runs.iter().map(|r| r.trace_parent.as_deref()),
    );
    c
}

fn is_debounced(run: &run::ActiveModel) -> bool {
    matches!(&run.debounce_key, sea_orm::ActiveValue::Set(Some(_)))
}

fn is_batched(run: &run::ActiveModel) -> bool {
    matches!(&run.batch_key, sea_orm::ActiveValue::Set(Some(_)))
}

fn is_rate_limited(run: &run::ActiveModel) -> bool {
    matches!(&run.rate_key, sea_orm::ActiveValue::Set(Some(_)))
}

/// Everything else: a transaction of our own on a plain connection, a savepoint inside
/// the caller's transaction.
async fn send_in_transaction<C: ConnectionTrait + TransactionTrait>(
    rt: &Runtime,
    conn: &C,
    rows: Vec<Rows>,
    now: i64,
) -> Result<Vec<SendReceipt>, EngineError> {
    let txn = conn.begin().await?;
    let conn = &txn;
    let postgres = conn.get_database_backend() == DbBackend::Postgres;
    let mut receipts = Vec::with_capacity(rows.len());
    let mut event_rows = Vec::with_capacity(rows.len());
    let mut run_rows = Vec::with_capacity(rows.len());
    let mut awaited_rows = Vec::new();
    let mut cancel_rows = Vec::new();
    // Debounced runs, with where their ids go in the receipts: (receipt, run).
    let mut debounced = Vec::new();
    // Rate-limited runs, counted one by one after the rest: (receipt, run).
    let mut limited = Vec::new();
    // Batched runs, likewise: (receipt, run).
    let mut batched = Vec::new();
    for r in rows {
        if let Some(key) = &r.idempotency_key {
            // Insert-or-skip in one statement, so concurrent sends with one key agree.
            let mut on_conflict = OnConflict::column(event::Column::IdempotencyKey);
            if postgres {
                // Its unique index there holds only the events with a key.
                on_conflict
                    .target_and_where(Expr::col(event::Column::IdempotencyKey).is_not_null());
            }
            let inserted = event::Entity::insert(r.event)
                .on_conflict(on_conflict.do_nothing().to_owned())
                .exec_without_returning(conn)
                .await;
            match inserted {
                Ok(0) | Err(DbErr::RecordNotInserted) => {
                    receipts.push(duplicate_receipt(conn, key).await?);
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            event_rows.push(r.event);
        }
        for (i, run) in r.runs.into_iter().enumerate() {
            if is_debounced(&run) {
                debounced.push(((receipts.len(), i), run));
            } else if is_batched(&run) {
                batched.push(((receipts.len(), i), run));
            } else if is_rate_limited(&run) {
                limited.push((receipts.len(), run));
            } else {
                run_rows.push(run);
            }
        }
        awaited_rows.extend(r.awaited);
        cancel_rows.extend(r.cancels);
        receipts.push(r.receipt);
    }
    for chunk in event_rows.chunks(ROWS_PER_INSERT) {
        event::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    // After the events: the write lock is held.
    place_all(
        conn,
        run_rows
            .iter_mut()
            .chain(limited.iter_mut().map(|(_, run)| run))
            .chain(debounced.iter_mut().map(|(_, run)| run))
            .chain(batched.iter_mut().map(|(_, run)| run))
            .collect::<Vec<_>>()
            .as_mut_slice(),
        now,
    )
    .await?;
    for chunk in run_rows.chunks(ROWS_PER_INSERT) {
        run::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    let mut any_queued = !run_rows.is_empty() || !debounced.is_empty() || !batched.is_empty();
    for (receipt, run) in limited {
        if let Some(skipped) = rate_limit(rt, conn, run).await? {
            let receipt = &mut receipts[receipt];
            if let Some(i) = receipt.run_ids.iter().position(|id| *id == skipped.id) {
                receipt.run_ids.remove(i);
                receipt.functions.remove(i);
            }
            receipt.skipped.push(skipped.function_id);
        } else {
            any_queued = true;
        }
    }
    for ((receipt, i), run) in debounced {
        // The pending run it joins, or the new one it starts.
        let id = debounce(rt, conn, run).await?;
        receipts[receipt].run_ids[i] = id;
    }
    for ((receipt, i), run) in batched {
        let id = join_batch(rt, conn, run, now).await?;
        receipts[receipt].run_ids[i] = id;
    }
    for chunk in cancel_rows.chunks(ROWS_PER_INSERT / 2) {
        wait::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    for chunk in awaited_rows.chunks(ROWS_PER_INSERT) {
        awaited_event::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    if any_queued {
        notify::wake_on_commit(conn).await?;
    }
    if !awaited_rows.is_empty() {
        notify::match_on_commit(conn).await?;
    }
    txn.commit().await?;
    Ok(receipts)
}

/// Queues a debounced run, or — if its function has a run for the same debounce key
/// that has not started yet — hands that run the new event and moves its start to the
/// new run's due time (capped by the max wait from the pending run's first event), in
/// one statement on the unique index of such runs. Returns the id of the run that
/// will handle the event.
async fn debounce<C: ConnectionTrait>(
    rt: &Runtime,
    conn: &C,
    run: run::ActiveModel,
) -> Result<String, EngineError> {
    use sea_orm::TryIntoModel;

    let m = run.try_into_model()?;
    let postgres = conn.get_database_backend() == DbBackend::Postgres;
    let max_wait = rt
        .debounces
        .get(&m.function_id)
        .and_then(|d| d.max_wait_ms());
    let due = match max_wait {
        None => "excluded.due_at".to_string(),
        Some(ms) => {
            let least = if postgres { "LEAST" } else { "MIN" };
            format!("{least}(excluded.due_at, run.created_at + {ms})")
        }
    };
    let row = insert_or_update(
        conn,
        m,
        "debounce_key",
        &format!(
            "event_id = excluded.event_id, due_at = {due}, fair_at = {due}, \
             concurrency_key = excluded.concurrency_key, \
             concurrency_key_2 = excluded.concurrency_key_2, \
             throttle_key = excluded.throttle_key, updated_at = excluded.updated_at"
        ),
    )
    .await?;
    Ok(row.try_get_by_index::<String>(0)?)
}

/// Inserts `m`, or — if its function has a run not started yet with the same value of
/// `key` (`debounce_key` or `batch_key`, each with its unique partial index) — applies
/// `update` to that run instead, in one statement. Returns the run's id and batch size.
async fn insert_or_update<C: ConnectionTrait>(
    conn: &C,
    m: run::Model,
    key: &str,
    update: &str,
) -> Result<sea_orm::QueryResult, EngineError> {
    let backend = conn.get_database_backend();
    let postgres = backend == DbBackend::Postgres;
    let values: Vec<sea_orm::Value> = vec![
        m.id.into(),
        m.function_id.into(),
        m.event_id.into(),
        m.user_id.into(),
        m.status.as_str().into(),
        m.due_at.into(),
        m.claims.into(),
        m.stalled_claims.into(),
        m.attempts.into(),
        m.concurrency_key.into(),
        m.concurrency_key_2.into(),
        m.debounce_key.into(),
        m.throttle_key.into(),
        m.batch_key.into(),
        m.batch_size.into(),
        m.fair_at.into(),
        m.created_at.into(),
        m.updated_at.into(),
    ];
    let params: Vec<String> = (1..=values.len())
        .map(|i| {
            if postgres {
                format!("${i}")
            } else {
                "?".into()
            }
        })
        .collect();
    let sql = format!(
        "INSERT INTO run (id, function_id, event_id, user_id, status, due_at, claims, \
         stalled_claims, attempts, concurrency_key, concurrency_key_2, debounce_key, \
         throttle_key, batch_key, batch_size, fair_at, created_at, updated_at) VALUES ({}) \
         ON CONFLICT (function_id, {key}) \
         WHERE status = 'queued' AND claims = 0 AND {key} IS NOT NULL \
         DO UPDATE SET {update} RETURNING id, batch_size",
        params.join(", ")
    );
    conn.query_one_raw(sea_orm::Statement::from_sql_and_values(
        backend, sql, values,
    ))
    .await?
    .ok_or_else(|| EngineError::Database(format!("a run with a {key} was not recorded")))
}

/// Adds a batched run's event to the open batch of its function and user — or, if there
/// is none, opens one with this run — and lists the event at its place in the batch.
/// The event that fills the batch makes its run due now and closes it (clears its key).
/// Returns the id of the run that will handle the event.
async fn join_batch<C: ConnectionTrait>(
    rt: &Runtime,
    conn: &C,
    run: run::ActiveModel,
    now: i64,
) -> Result<String, EngineError> {
    use sea_orm::TryIntoModel;

    let m = run.try_into_model()?;
    let Some(batch) = rt.batches.get(&m.function_id) else {
        return Err(EngineError::Database(format!(
            "a run of {:?} has no batch to join",
            m.function_id
        )));
    };
    let event_id = m.event_id.clone();
    let full = format!("run.batch_size + 1 >= {}", batch.max_events);
    let row = insert_or_update(
        conn,
        m,
        "batch_key",
        &format!(
            "batch_size = run.batch_size + 1, \
             batch_key = CASE WHEN {full} THEN NULL ELSE run.batch_key END, \
             due_at = CASE WHEN {full} THEN {now} ELSE run.due_at END, \
             fair_at = CASE WHEN {full} THEN {now} ELSE run.fair_at END, \
             updated_at = excluded.updated_at"
        ),
    )
    .await?;
    let run_id: String = row.try_get_by_index(0)?;
    let size: i32 = row.try_get_by_index(1)?;
    batch_event::Entity::insert(batch_event::ActiveModel {
        run_id: Set(run_id.clone()),
        position: Set(size - 1),
        event_id: Set(event_id),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(run_id)
}

/// Records a run of a rate-limited function if its key has had fewer runs than the
/// limit queued in the period; otherwise records the skip (`skipped_run`, with the
/// run's id and why) and returns it. On PostgreSQL a transaction-scoped advisory lock on
/// the function and key makes concurrent sends count one after the other; on SQLite the
/// send holds the write lock already (its event is inserted first).
async fn rate_limit<C: ConnectionTrait>(
    rt: &Runtime,
    conn: &C,
    run: run::ActiveModel,
) -> Result<Option<skipped_run::Model>, EngineError> {
    use sea_orm::TryIntoModel;

    let run = run.try_into_model()?;
    let (Some(limit), Some(key)) = (rt.rate_limits.get(&run.function_id), &run.rate_key) else {
        return Err(EngineError::Database(format!(
            "a run of {:?} has no rate limit to count against",
            run.function_id
        )));
    };
    let backend = conn.get_database_backend();
    if backend == DbBackend::Postgres {
        let lock = sea_orm::Statement::from_sql_and_values(
            backend,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            [format!("rate:{}:{key}", run.function_id).into()],
        );
        conn.execute_raw(lock).await?;
    }
    let mut count = Query::select();
    count
        .expr(Func::count(Expr::col(run::Column::Id)))
        .from(run::Entity)
        // Literal, as in the partial index of the rate-limited runs.
        .and_where(Expr::cust("rate_key IS NOT NULL"))
        .and_where(Expr::col(run::Column::FunctionId).eq(run.function_id.as_str()))
        .and_where(Expr::col(run::Column::RateKey).eq(key.as_str()))
        .and_where(Expr::col(run::Column::CreatedAt).gt(run.created_at - limit.period_ms()));
    let queued: i64 = match conn.query_one(&count).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    if queued < i64::from(limit.limit) {
        run::Entity::insert(run.into_active_model())
            .exec_without_returning(conn)
            .await?;
        return Ok(None);
    }
    let skipped = skipped_run::Model {
        id: run.id,
        event_id: run.event_id,
        function_id: run.function_id,
        user_id: run.user_id,
        reason: limit.skip_reason(),
        created_at: run.created_at,
    };
    skipped_run::Entity::insert(skipped.clone().into_active_model())
        .exec_without_returning(conn)
        .await?;
    Ok(Some(skipped))
}

/// The idempotency key of the [`FAILED`] event of run `run_id`: one per failed run.
pub(crate) fn failure_key(run_id: &str) -> String {
    format!("failed:{run_id}")
}

/// Starts the failure handler of each run in `failed` (run, error) whose function has
/// one: a [`FAILED`] event for the run's user and one run of the handler, in `conn` — the
/// transaction that fails the runs, so that no failure goes unhandled. Returns whether
/// it started any.
pub(crate) async fn start_failure_handlers<C: ConnectionTrait + TransactionTrait>(
    rt: &Runtime,
    conn: &C,
    failed: &[(&RunRef, &str)],
) -> Result<bool, DbErr> {
    let failed: Vec<&(&RunRef, &str)> = failed
        .iter()
        .filter(|(run, _)| rt.failure_handlers.contains_key(&run.function_id))
        .collect();
    if failed.is_empty() {
        return Ok(false);
    }
    let mut event_ids: Vec<&str> = failed
        .iter()
        .map(|(run, _)| run.event_id.as_str())
        .collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let events: std::collections::HashMap<String, event::Model> = event::Entity::find()
        .filter(event::Column::Id.is_in(event_ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    let mut new_events = Vec::with_capacity(failed.len());
    for (run, error) in failed {
        let event = match events.get(&run.event_id).cloned().map(Event::try_from) {
            Some(Ok(event)) => event,
            // The run failed because its event is gone or unreadable: say so.
            _ => Event {
                id: run.event_id.clone(),
                name: String::new(),
                data: serde_json::Value::Null,
                user_id: run.user_id.clone(),
                ts: 0,
            },
        };
        let failure = Failure {
            function_id: run.function_id.clone(),
            run_id: run.run_id.clone(),
            error: error.to_string(),
            event,
        };
        let data = serde_json::to_value(&failure).map_err(|e| DbErr::Custom(e.to_string()))?;
        new_events.push(NewEvent {
            name: FAILED.to_string(),
            data,
            user_id: run.user_id.clone(),
            idempotency_key: Some(failure_key(&run.run_id)),
        });
    }
    // The failed run's payload was within the limit; the failure event may add a little.
    let prepared = prepare(new_events, usize::MAX).map_err(|e| DbErr::Custom(e.to_string()))?;
    let handler_of = |p: &Prepared| {
        p.event.data["function_id"]
            .as_str()
            .and_then(|f| rt.failure_handlers.get(f))
            .map_or(Cow::Borrowed(&[][..]), |id| {
                Cow::Borrowed(std::slice::from_ref(id))
            })
    };
    send_many(rt, conn, prepared, handler_of, |_| false, false)
        .await
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    Ok(true)
}

/// Sends `function_id`'s tick at `tick` (a [`SCHEDULED`] event for no user, and one run)
/// unless some process has: the tick's idempotency key keeps one. True if this call
/// started the run.
pub(crate) async fn send_tick(
    rt: &Runtime,
    function_id: &str,
    schedule: &Schedule,
    tick: i64,
) -> Result<bool, EngineError> {
    let data = serde_json::json!({
        "cron": schedule.pattern(),
        "time_zone": schedule.time_zone(),
        "tick": tick,
        "tick_at": schedule.format(tick),
    });
    let event = NewEvent::new(SCHEDULED, data).idempotency_key(tick_key(function_id, tick));
    let prepared = prepare(vec![event], usize::MAX)?;
    let target = [function_id.to_string()];
    let receipt = send_many(
        rt,
        &rt.db,
        prepared,
        |_| Cow::Borrowed(&target[..]),
        |_| false,
        false,
    )
    .await?
    .pop();
    Ok(receipt.is_some_and(|r| !r.duplicate))
}

/// An idempotency key as stored: scoped to the event's user, so that one user's key
/// never answers another user's send (the length prefix keeps the pair unambiguous).
pub(crate) fn scoped_key(user_id: Option<&str>, key: &str) -> String {
    let user = user_id.unwrap_or_default();
    format!("{}:{user}:{key}", user.len())
}

/// The receipt of the event first sent with (scoped) idempotency key `key`.
async fn duplicate_receipt<C: ConnectionTrait>(
    conn: &C,
    key: &str,
) -> Result<SendReceipt, EngineError> {
    let first = event::Entity::find()
        .filter(event::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await?
        .ok_or_else(|| EngineError::Database(format!("event with key {key:?} vanished")))?;
    let (run_ids, functions) = run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .column(run::Column::FunctionId)
        .filter(run::Column::EventId.eq(&first.id))
        .order_by_asc(run::Column::Id)
        .into_tuple::<(String, String)>()
        .all(conn)
        .await?
        .into_iter()
        .unzip();
    Ok(SendReceipt {
        event_id: first.id,
        run_ids,
        functions,
        user_id: first.user_id,
        skipped: Vec::new(),
        duplicate: true,
    })
}

/// Starts the child run of `parent`'s `step.invoke`: the event (whose idempotency key
/// makes a repeat find the first child) and one run of `function_id`, marked as
/// invoked by `parent`, in one transaction. Returns the child's run id.
pub(crate) async fn start_child(
    rt: &Runtime,
    prepared: Vec<Prepared>,
    function_id: &str,
    parent: &str,
) -> Result<String, EngineError> {
    let target = [function_id.to_string()];
    let txn = rt.db.begin().await?;
    let receipt = send_many(
        rt,
        &txn,
        prepared,
        |_| Cow::Borrowed(&target[..]),
        |_| false,
        false,
    )
    .await?
    .pop()
    .ok_or_else(|| EngineError::Database("the invocation recorded nothing".into()))?;
    let child = receipt
        .run_ids
        .first()
        .cloned()
        .ok_or_else(|| EngineError::Database("the invocation started no run".into()))?;
    if !receipt.duplicate {
        run::Entity::update_many()
            .col_expr(
                run::Column::InvokedBy,
                sea_orm::sea_query::Expr::value(parent),
            )
            .filter(run::Column::Id.eq(&child))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(child)
}
