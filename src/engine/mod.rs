//! The durable executor: Nodebase's own in-process Inngest.
//!
//! An [`Event`] sent with [`Engine::send`] creates one run per [`Function`] it triggers,
//! in the caller's transaction. Workers claim due runs under a lease and call the
//! function's handler, which does its work in [`Step`]s: `step.run` executes a closure
//! once and memoizes its JSON output; `step.sleep` parks the run durably. When a run
//! resumes, the handler starts again from the top and finished steps return their saved
//! output without running again.
//!
//! **Guarantee.** Every write of a run's progress is fenced by the claim it was made
//! under: a task whose claim is gone records nothing more and stops at its next step.
//! A step's result, once recorded and used by a later step, never changes. Its closure
//! runs at least once: again only if its result was not recorded (the process died or
//! the claim was lost first, the database refused the record). Give outside effects
//! the step's key (`Step::run_keyed`) as an idempotency key.
//!
//! This module knows nothing of the web app or of workflows.
//!
//! The map of its parts, and of one run's path through them, is `src/engine/README.md`.
mod batch;
mod clock;
mod completer;
mod concurrency;
mod cron;
mod debounce;
mod dispatcher;
pub mod entities;
mod error;
mod event;
mod executor;
mod expr;
mod fairness;
mod function;
mod maintenance;
pub mod metrics;
mod notifier;
mod per_period;
mod priority;
mod progress;
mod rate_limit;
mod retry;
mod runtime;
mod step;
mod store;
mod throttle;
pub mod trace;

pub use crate::domain::{RunStatus, StepKind, StepStatus};
pub use batch::{Batch, MAX_BATCH_EVENTS, MAX_BATCH_TIMEOUT};
pub use clock::{Clock, ManualClock, SystemClock};
pub use concurrency::{Concurrency, MAX_LIMITS};
pub use cron::Schedule;
pub use debounce::{Debounce, MAX_DEBOUNCE};
pub use dispatcher::Workers;
pub use error::{EngineError, FnError};
pub use event::{
    Event, NewEvent, SendReceipt, FAILED, FINISHED, INVOKED, RESERVED_PREFIX, SCHEDULED,
};
pub use function::{failure_handler_id, Ctx, Failure, Function, Timeouts};
pub use priority::{Priority, MAX_HEAD_START};
pub use progress::RunUpdate;
pub use rate_limit::{RateLimit, IDEMPOTENCY_PERIOD, MAX_RATE_PERIOD};
pub use retry::Backoff;
pub use runtime::EngineConfig;
pub use step::{Step, WaitFor, MAX_SENT_EVENTS, MAX_WAIT};
pub use store::inspect;
pub use throttle::{Throttle, MAX_THROTTLE_PERIOD};

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::broadcast;

use function::Registry;
use notifier::{publish, Relay};
use runtime::Runtime;

/// What a send writes through: the pool, where the send has committed when it returns,
/// or a caller's transaction, which commits later.
pub trait SendConn: ConnectionTrait + TransactionTrait {
    /// Whether a send's writes are committed when it returns.
    fn commits_at_once(&self) -> bool;
}

impl SendConn for DatabaseConnection {
    fn commits_at_once(&self) -> bool {
        true
    }
}

impl SendConn for DatabaseTransaction {
    fn commits_at_once(&self) -> bool {
        false
    }
}

/// The engine: cheap to clone, shared by the web server and the workers.
#[derive(Clone)]
pub struct Engine {
    rt: Arc<Runtime>,
    registry: Arc<Registry>,
    /// This process's dispatcher while its workers run.
    starter: dispatcher::StarterSlot,
}

/// Builds an [`Engine`]: the database, the functions, and optionally the settings.
pub struct EngineBuilder {
    db: DatabaseConnection,
    functions: Vec<Function>,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    state: function::State,
}

impl EngineBuilder {
    /// Gives every handler `value` (read with `ctx.state::<T>()`): one per type, a
    /// second of the same type replaces the first.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Registers a function.
    pub fn function(mut self, function: Function) -> Self {
        self.functions.push(function);
        self
    }

    /// Replaces the settings.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the clock (tests use a [`ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the registry (unique function ids) and the settings, and builds the
    /// engine.
    pub fn build(self) -> Result<Engine, EngineError> {
        if self.config.heartbeat >= self.config.lease {
            return Err(EngineError::InvalidConfig(format!(
                "the heartbeat ({:?}) must be shorter than the lease ({:?}), or leases lapse between renewals",
                self.config.heartbeat, self.config.lease
            )));
        }
        let registry = Registry::new(self.functions, self.state)?;
        let throttles = registry.throttles();
        let rate_limits = registry.rate_limits();
        // Both count kept runs: a pruned run would drop out of its window.
        let longest = (throttles.values().map(|t| t.period))
            .chain(rate_limits.values().map(|r| r.period))
            .max();
        if let (Some(retention), Some(longest)) = (self.config.retention, longest) {
            if retention < longest {
                return Err(EngineError::InvalidConfig(format!(
                    "the retention ({retention:?}) must be at least the longest throttle or rate-limit period ({longest:?}): they count the runs kept"
                )));
            }
        }
        let mut rt = Runtime::new(self.db, self.config, self.clock);
        rt.failure_handlers = registry.failure_handlers();
        rt.cancel_rules = registry.cancel_rules();
        rt.limits = registry.limits();
        rt.debounces = registry.debounces();
        rt.batches = registry.batches();
        rt.throttles = throttles;
        rt.rate_limits = rate_limits;
        rt.priorities = registry.priorities();
        Ok(Engine {
            rt: Arc::new(rt),
            registry: Arc::new(registry),
            starter: Default::default(),
        })
    }
}

impl Engine {
    /// What holds back each of `runs` that is queued and has not started, if anything
    /// does: a debounce, a throttle, or a concurrency limit with no room.
    pub async fn held_back(
        &self,
        runs: &[entities::run::Model],
    ) -> Result<std::collections::HashMap<String, inspect::HeldBack>, EngineError> {
        let now = self.rt.clock.now_ms();
        Ok(store::inspect::held_back(&self.rt, runs, now).await?)
    }

    /// Starts building an engine over `db`.
    pub fn builder(db: DatabaseConnection) -> EngineBuilder {
        EngineBuilder {
            db,
            functions: Vec::new(),
            config: EngineConfig::default(),
            clock: Arc::new(SystemClock),
            state: function::State::default(),
        }
    }

    /// Records `event` and one queued run per function it triggers, through `conn`: pass
    /// a transaction and they commit (or roll back) with the caller's own writes.
    ///
    /// Sent through the pool, the new runs are announced to subscribers (the live pages)
    /// as queued; sent in a transaction, they are announced once the caller, after its
    /// commit, hands the receipts to [`Engine::announce`] — or, if it does not, when
    /// they start.
    pub async fn send<C: SendConn>(
        &self,
        conn: &C,
        event: NewEvent,
    ) -> Result<SendReceipt, EngineError> {
        let mut receipts = self.send_many(conn, vec![event]).await?;
        receipts
            .pop()
            .ok_or_else(|| EngineError::Database("send recorded nothing".into()))
    }

    /// Like [`Engine::send`] for many events, in a few multi-row statements.
    pub async fn send_many<C: SendConn>(
        &self,
        conn: &C,
        events: Vec<NewEvent>,
    ) -> Result<Vec<SendReceipt>, EngineError> {
        // Everything is checked first: a bad event stores nothing, not even its neighbours.
        for event in &events {
            event::not_reserved(&event.name)?;
        }
        let prepared = event::prepare(events, self.rt.config.max_event_bytes)?;
        let registry = &self.registry;
        metrics::events_received(&prepared, |name| step::Routes::knows(&**registry, name));
        let awaited = prepared.iter().any(|p| registry.is_awaited(&p.event.name));
        // One event sent through the pool to idle workers here (PostgreSQL): its runs
        // are recorded as claimed by them, in slots taken now, and start without a claim.
        let starter = match prepared.as_slice() {
            [one] if conn.commits_at_once() && self.rt.postgres() => {
                dispatcher::current(&self.starter)
                    .map(|s| (s.reserve(registry.route(&one.event).len()), s))
            }
            _ => None,
        };
        let slots = starter.as_ref().map_or(0, |(slots, _)| slots.len());
        let sent = store::send::send_and_start(
            &self.rt,
            conn,
            prepared,
            |p| registry.route(&p.event),
            |name| registry.is_awaited(name),
            // `sent` wakes this process's dispatcher after a commit it saw.
            conn.commits_at_once(),
            slots,
        )
        .await?;
        let started = sent.started.len();
        self.sent(conn, &sent.receipts, awaited, started).await;
        if let Some((mut slots, starter)) = starter.filter(|_| started > 0) {
            slots.truncate(started);
            starter.hand(&self.rt, sent.started, slots).await;
        }
        Ok(sent.receipts)
    }

    /// What follows a stored send: its runs announced if it has committed — before the
    /// dispatcher is woken or handed the `started` ones, so that a run's news of its
    /// start does not come before that of its send — then the dispatcher (unless every
    /// run started) and (if an awaited event came) the matcher woken.
    async fn sent<C: SendConn>(
        &self,
        conn: &C,
        receipts: &[SendReceipt],
        awaited: bool,
        started: usize,
    ) {
        if conn.commits_at_once() {
            self.announce(receipts).await;
        }
        if receipts.iter().map(|r| r.run_ids.len()).sum::<usize>() > started {
            self.rt.wake.notify_one();
        }
        if awaited {
            self.rt.match_wake.notify_one();
        }
    }

    /// Tells subscribers (in every process) that the receipts' runs are queued: for
    /// sends made in a transaction, once it has committed. A send through the pool
    /// announces its own.
    pub async fn announce(&self, receipts: &[SendReceipt]) {
        let queued = receipts
            .iter()
            .filter(|r| !r.duplicate)
            .flat_map(|r| {
                r.run_ids
                    .iter()
                    .zip(&r.functions)
                    .map(|(run_id, function_id)| RunUpdate {
                        run_id: run_id.clone(),
                        function_id: function_id.clone(),
                        user_id: r.user_id.clone(),
                        status: RunStatus::Queued,
                    })
            })
            .collect();
        publish(&self.rt, queued, Relay::Later).await;
    }

    /// Records `event` and one run of `function_id` only, whatever the event's name,
    /// announced as [`Engine::send`]'s runs are.
    pub async fn invoke<C: SendConn>(
        &self,
        conn: &C,
        function_id: &str,
        event: NewEvent,
    ) -> Result<SendReceipt, EngineError> {
        let function = self.registry.get(function_id).ok_or_else(|| {
            EngineError::InvalidFunction(format!("no function {function_id:?} is registered"))
        })?;
        if let Some(of) = function.handles_failures_of() {
            return Err(EngineError::InvalidFunction(format!(
                "{function_id:?} runs only when a run of {of:?} fails"
            )));
        }
        let target = [function.id().to_string()];
        let prepared = event::prepare(vec![event], self.rt.config.max_event_bytes)?;
        metrics::events_received(&prepared, |name| step::Routes::knows(&*self.registry, name));
        let awaited = self.registry.is_awaited(&prepared[0].event.name);
        let mut receipts = store::send::send_many(
            &self.rt,
            conn,
            prepared,
            |_| target[..].into(),
            |_| awaited,
            conn.commits_at_once(),
        )
        .await?;
        self.sent(conn, &receipts, awaited, 0).await;
        receipts
            .pop()
            .ok_or_else(|| EngineError::Database("invoke recorded nothing".into()))
    }

    /// Starts a new run of a finished run's function for the same event, linked to it
    /// by `rerun_of`. Returns the new run's id, or `None` if the run is not finished.
    pub async fn rerun(&self, run_id: &str) -> Result<Option<String>, EngineError> {
        let now = self.rt.clock.now_ms();
        let Some(queued) = store::control::rerun(&self.rt, run_id, now).await? else {
            return Ok(None);
        };
        let new_id = queued.run_id.clone();
        publish(&self.rt, vec![queued], Relay::Later).await;
        self.rt.wake.notify_one();
        Ok(Some(new_id))
    }

    /// Cancels a run that has not finished. A running run stops at once, in whichever
    /// process runs it (its step is interrupted and its worker slot freed). Returns
    /// whether the run was cancelled (false if it had finished).
    pub async fn cancel(&self, run_id: &str) -> Result<bool, EngineError> {
        self.cancel_by(run_id, None).await
    }

    /// Like [`Engine::cancel`], recording who cancelled it (`by`, shown on its page).
    pub async fn cancel_by(&self, run_id: &str, by: Option<&str>) -> Result<bool, EngineError> {
        let now = self.rt.clock.now_ms();
        let cancelled = store::control::cancel(&self.rt.db, run_id, by, now).await?;
        let was_live = cancelled.is_some();
        if was_live {
            self.rt.in_flight.cancel(run_id);
            // It may have been invoked by a run that now hears of its end.
            self.rt.match_wake.notify_one();
        }
        publish(
            &self.rt,
            cancelled.into_iter().collect(),
            Relay::Now(&self.rt.db),
        )
        .await;
        Ok(was_live)
    }

    /// Deletes finished runs that ended more than `older_than` ago, their steps, and
    /// events left without runs, in small batches so that no lock is held for long.
    /// Returns how many runs and events were deleted.
    pub async fn prune(&self, older_than: Duration) -> Result<(u64, u64), EngineError> {
        let cutoff = self.rt.clock.now_ms() - older_than.as_millis() as i64;
        Ok(store::prune::prune(&self.rt.db, cutoff).await?)
    }

    /// A stream of run status changes from this process's workers and API calls.
    pub fn subscribe(&self) -> broadcast::Receiver<RunUpdate> {
        self.rt.updates.subscribe()
    }

    /// Tells the workers to look for due runs now (after a clock change, say).
    pub fn wake(&self) {
        self.rt.wake.notify_one();
    }

    /// The registered functions, sorted by id.
    pub fn functions(&self) -> Vec<&Function> {
        self.registry.all()
    }

    /// The cron schedules, with the id of the function each starts.
    pub fn schedules(&self) -> &[(String, Schedule)] {
        self.registry.schedules()
    }

    /// The queued runs due now, by function: (function id, how many, earliest due time).
    pub async fn queue(&self) -> Result<Vec<(String, i64, i64)>, EngineError> {
        Ok(inspect::queue(&self.rt.db, self.rt.clock.now_ms()).await?)
    }

    /// The engine's clock, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.rt.clock.now_ms()
    }

    /// The database the engine works on.
    pub fn db(&self) -> &DatabaseConnection {
        &self.rt.db
    }

    /// The name this process's workers write into `run.locked_by`.
    pub fn worker_id(&self) -> &str {
        &self.rt.worker_id
    }

    /// Whether this process tells the other processes of its runs' progress now. On
    /// PostgreSQL, while its listener runs (workers or [`Engine::listen`]), only if
    /// another process's listener is connected to the database; otherwise always. On
    /// SQLite there is no other process.
    pub fn tells_other_processes(&self) -> bool {
        self.rt.postgres() && self.rt.census.tells()
    }

    /// Listens for other processes' run updates without running any workers (a web-only
    /// process on PostgreSQL); nothing to do on SQLite. Stop it with [`Listener::stop`].
    pub fn listen(&self) -> Listener {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        Listener {
            stop,
            task: notifier::start(self.rt.clone(), stopped),
        }
    }

    /// Starts the worker pool: claiming, executing, group-committing, heartbeats and the
    /// rescue of runs whose worker died. Stop it with [`Workers::shutdown`].
    pub fn start(&self) -> Workers {
        dispatcher::start(self.rt.clone(), self.registry.clone(), self.starter.clone())
    }
}

/// A running notification listener (see [`Engine::listen`]).
pub struct Listener {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Listener {
    /// Stops listening.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}
