//! The durable executor: Nodebase's own in-process Inngest.
//!
//! An [`Event`] sent with [`Engine::send`] creates one run per [`Function`] it triggers,
//! in the caller's transaction. Workers claim due runs under a lease and call the
//! function's handler, which does its work in [`Step`]s: `step.run` executes a closure
//! once and memoizes its JSON output; `step.sleep` parks the run durably. When a run
//! resumes, the handler starts again from the top and finished steps return their saved
//! output without running again.
//!
//! **Guarantee.** A step's result is recorded exactly once. Its closure runs at least
//! once: it runs again only if the process dies (or loses the run's lease) between
//! running the closure and recording its result. Make step effects idempotent where a
//! repeat would hurt.
//!
//! This module knows nothing of the web app or of workflows.
mod clock;
mod completer;
mod dispatcher;
pub mod entities;
mod error;
mod event;
mod function;
pub mod inspect;
mod notifier;
mod retry;
mod status;
mod step;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{EngineError, FnError};
pub use event::{Event, NewEvent, SendReceipt};
pub use function::{Ctx, Function};
pub use retry::Backoff;
pub use status::RunStatus;
pub use step::Step;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tokio::sync::{broadcast, Notify};

/// A change of a run's status, published after it is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunUpdate {
    pub run_id: String,
    pub function_id: String,
    /// The user the triggering event belongs to, if any.
    pub user_id: Option<String>,
    pub status: RunStatus,
}

/// How the engine runs; `EngineConfig::default()` suits a small server.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Runs executing at once in this process.
    pub workers: usize,
    /// How long a claimed run stays ours without a heartbeat.
    pub lease: Duration,
    /// How often in-flight runs' leases are renewed.
    pub heartbeat: Duration,
    /// The safety-net poll, for wake-ups no notification announced.
    pub poll: Duration,
    /// Most runs claimed, or writes committed, in one transaction.
    pub batch: usize,
    /// The delay before a failed step or run is tried again.
    pub backoff: Backoff,
    /// Largest accepted event payload, in bytes of JSON.
    pub max_event_bytes: usize,
    /// How long shutdown waits for in-flight runs before handing them back.
    pub shutdown_grace: Duration,
    /// Finished runs (and then their events) older than this are deleted; `None` keeps
    /// everything.
    pub retention: Option<Duration>,
    /// How often the workers prune.
    pub prune_every: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 64,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll: Duration::from_secs(5),
            batch: 64,
            backoff: Backoff::default(),
            max_event_bytes: 512 * 1024,
            shutdown_grace: Duration::from_secs(10),
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            prune_every: Duration::from_secs(3600),
        }
    }
}

/// The engine: cheap to clone, shared by the web server and the workers.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    db: DatabaseConnection,
    /// For lease traffic (claims, heartbeats, "running" signals): on PostgreSQL, a small
    /// pool whose commits do not wait for the WAL flush. A crash can lose such a commit,
    /// which only makes a run look unclaimed (or its lease shorter) — as if its worker
    /// had died — while any later durable commit flushes it along. Results, sends and
    /// state moves always go through `db` and are durable when they return.
    leases: DatabaseConnection,
    functions: HashMap<String, Function>,
    /// Event name -> ids of the functions it triggers.
    triggers: HashMap<String, Vec<String>>,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    /// Rings when a run may have become due (a send, a park, a rescue).
    wake: Notify,
    updates: broadcast::Sender<RunUpdate>,
    /// This process's name in `run.locked_by`.
    worker_id: String,
}

/// Builds an [`Engine`]: the database, the functions, and optionally the settings.
pub struct EngineBuilder {
    db: DatabaseConnection,
    functions: Vec<Function>,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
}

impl EngineBuilder {
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

    /// Checks the registry (unique function ids) and builds the engine.
    pub fn build(self) -> Result<Engine, EngineError> {
        let mut functions = HashMap::new();
        let mut triggers: HashMap<String, Vec<String>> = HashMap::new();
        for function in self.functions {
            if function.triggers().is_empty() {
                return Err(EngineError::InvalidFunction(format!(
                    "function {:?} has no trigger",
                    function.id()
                )));
            }
            for trigger in function.triggers() {
                event::validate_name(trigger)?;
                triggers
                    .entry(trigger.clone())
                    .or_default()
                    .push(function.id().to_string());
            }
            let id = function.id().to_string();
            if functions.insert(id.clone(), function).is_some() {
                return Err(EngineError::InvalidFunction(format!(
                    "two functions have the id {id:?}"
                )));
            }
        }
        let (updates, _) = broadcast::channel(4096);
        Ok(Engine {
            inner: Arc::new(Inner {
                leases: lease_pool(&self.db),
                db: self.db,
                functions,
                triggers,
                config: self.config,
                clock: self.clock,
                wake: Notify::new(),
                updates,
                worker_id: format!(
                    "{}-{}-{}",
                    hostname(),
                    std::process::id(),
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                ),
            }),
        })
    }
}

/// See [`Inner::leases`]; on SQLite, the same pool as everything else.
fn lease_pool(db: &DatabaseConnection) -> DatabaseConnection {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return db.clone();
    }
    let pool = db.get_postgres_connection_pool();
    let options = (*pool.connect_options()).clone().options([
        ("synchronous_commit", "off"),
        // The claim's plan does not depend on its parameters; planning it afresh each
        // time costs more than running it once the table has seen many runs.
        ("plan_cache_mode", "force_generic_plan"),
    ]);
    // The main pool's settings (timeouts, health checks), with fewer connections.
    let leases = pool
        .options()
        .clone()
        .max_connections(4)
        .min_connections(0)
        .connect_lazy_with(options);
    sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(leases)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "nodebase".into())
}

impl Engine {
    /// Starts building an engine over `db`.
    pub fn builder(db: DatabaseConnection) -> EngineBuilder {
        EngineBuilder {
            db,
            functions: Vec::new(),
            config: EngineConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Records `event` and one queued run per function it triggers, through `conn`: pass
    /// a transaction and they commit (or roll back) with the caller's own writes.
    pub async fn send<C: ConnectionTrait + TransactionTrait>(
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
    pub async fn send_many<C: ConnectionTrait + TransactionTrait>(
        &self,
        conn: &C,
        events: Vec<NewEvent>,
    ) -> Result<Vec<SendReceipt>, EngineError> {
        let receipts = event::send_many(&self.inner, conn, events, None).await?;
        if receipts.iter().any(|r| !r.run_ids.is_empty()) {
            self.inner.wake.notify_one();
        }
        Ok(receipts)
    }

    /// Records `event` and one run of `function_id` only, whatever the event's name.
    pub async fn invoke<C: ConnectionTrait + TransactionTrait>(
        &self,
        conn: &C,
        function_id: &str,
        event: NewEvent,
    ) -> Result<SendReceipt, EngineError> {
        let (id, _) = self
            .inner
            .functions
            .get_key_value(function_id)
            .ok_or_else(|| {
                EngineError::InvalidFunction(format!("no function {function_id:?} is registered"))
            })?;
        let mut receipts = event::send_many(&self.inner, conn, vec![event], Some(id)).await?;
        self.inner.wake.notify_one();
        receipts
            .pop()
            .ok_or_else(|| EngineError::Database("invoke recorded nothing".into()))
    }

    /// Starts a new run of a finished run's function for the same event, linked to it
    /// by `rerun_of`. Returns the new run's id, or `None` if the run is not finished.
    pub async fn rerun(&self, run_id: &str) -> Result<Option<String>, EngineError> {
        let now = self.inner.clock.now_ms();
        let new_id = store::rerun(&self.inner.db, run_id, now).await?;
        if new_id.is_some() {
            self.inner.wake.notify_one();
        }
        Ok(new_id)
    }

    /// Cancels a run that has not finished. A running run stops at its next step
    /// boundary. Returns whether the run was cancelled (false if it had finished).
    pub async fn cancel(&self, run_id: &str) -> Result<bool, EngineError> {
        let now = self.inner.clock.now_ms();
        let cancelled = store::cancel(&self.inner.db, run_id, now).await?;
        if let Some(update) = &cancelled {
            notifier::announce(
                &self.inner.db,
                &self.inner.worker_id,
                std::slice::from_ref(update),
            )
            .await?;
            let _ = self.inner.updates.send(update.clone());
        }
        Ok(cancelled.is_some())
    }

    /// Deletes finished runs that ended more than `older_than` ago, their steps, and
    /// events left without runs, in small batches so that no lock is held for long.
    /// Returns how many runs and events were deleted.
    pub async fn prune(&self, older_than: Duration) -> Result<(u64, u64), EngineError> {
        let cutoff = self.inner.clock.now_ms() - older_than.as_millis() as i64;
        Ok(store::prune(&self.inner.db, cutoff).await?)
    }

    /// A stream of run status changes from this process's workers and API calls.
    pub fn subscribe(&self) -> broadcast::Receiver<RunUpdate> {
        self.inner.updates.subscribe()
    }

    /// Tells the workers to look for due runs now (after a clock change, say).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The registered functions, sorted by id.
    pub fn functions(&self) -> Vec<&Function> {
        let mut all: Vec<&Function> = self.inner.functions.values().collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }

    /// The database the engine works on.
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// The name this process's workers write into `run.locked_by`.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Listens for other processes' run updates without running any workers (a web-only
    /// process on PostgreSQL); nothing to do on SQLite. Stop it with [`Listener::stop`].
    pub fn listen(&self) -> Listener {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        Listener {
            stop,
            task: notifier::start(self.inner.clone(), stopped),
        }
    }

    /// Starts the worker pool: claiming, executing, group-committing, heartbeats and the
    /// rescue of runs whose worker died. Stop it with [`Workers::shutdown`].
    pub fn start(&self) -> Workers {
        dispatcher::start(self.inner.clone())
    }
}

pub use dispatcher::Workers;

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
