//! The state every part of the engine shares: the database, the settings, the clock,
//! and the in-process signals.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbBackend};
use tokio::sync::{broadcast, watch, Notify};

use super::clock::Clock;
use super::progress::RunUpdate;
use super::retry::Backoff;

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
    /// Largest accepted event payload, in bytes of JSON (3 MiB, as Inngest's).
    pub max_event_bytes: usize,
    /// Largest output of a step or a run, in bytes of JSON (4 MiB): a larger one fails
    /// its step (or run) for good.
    pub max_output_bytes: usize,
    /// Most steps one run may use (1,000): the next one fails for good.
    pub max_steps: usize,
    /// A cron tick missed (no process ran, the database was down) by at most this long
    /// is still run once, late; older missed ticks are skipped.
    pub cron_catch_up: Duration,
    /// How long shutdown waits for in-flight runs before handing them back.
    pub shutdown_grace: Duration,
    /// Finished runs (and then their events) older than this are deleted; `None` keeps
    /// everything.
    pub retention: Option<Duration>,
    /// How often the workers prune.
    pub prune_every: Duration,
    /// A run claimed more often than this without its worker recording any progress
    /// (each worker crashed, hung past its lease, or had its writes refused) fails.
    pub max_stalled_claims: u32,
    /// The longest lookback a wait may ask for: awaited events are kept this long.
    pub max_lookback: Duration,
    /// How long a run of a function no process here knows stays queued for a process
    /// that knows it (a rolling deploy), before it fails.
    pub unknown_function_grace: Duration,
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
            max_event_bytes: 3 * 1024 * 1024,
            max_output_bytes: 4 * 1024 * 1024,
            max_steps: 1000,
            cron_catch_up: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            prune_every: Duration::from_secs(3600),
            max_stalled_claims: 5,
            unknown_function_grace: Duration::from_secs(600),
            max_lookback: Duration::from_secs(3600),
        }
    }
}

/// What the engine's parts share; one per [`super::Engine`].
pub(crate) struct Runtime {
    pub db: DatabaseConnection,
    /// For lease traffic (claims, heartbeats, "running" signals): on PostgreSQL, a small
    /// pool whose commits do not wait for the WAL flush. A crash can lose such a commit,
    /// which only makes a run look unclaimed (or its lease shorter) — as if its worker
    /// had died — while any later durable commit flushes it along. Results, sends and
    /// state moves always go through `db` and are durable when they return.
    pub leases: DatabaseConnection,
    pub config: EngineConfig,
    pub clock: Arc<dyn Clock>,
    /// Rings when a run may have become due (a send, a park, a rescue).
    pub wake: Notify,
    /// Rings when an event some wait may match was sent.
    pub match_wake: Notify,
    /// This process's subscribers; fed only by [`super::notifier::publish`].
    pub updates: broadcast::Sender<RunUpdate>,
    /// This process's name in `run.locked_by`.
    pub worker_id: String,
    /// The runs this process is executing.
    pub in_flight: InFlight,
    /// Function id -> the id of the function that handles its failures.
    pub failure_handlers: HashMap<String, String>,
    /// Function id -> the rules that cancel its runs (`Function::cancel_on`).
    pub cancel_rules: HashMap<String, Vec<super::step::WaitFor>>,
    /// Function id -> its concurrency limits (`Function::concurrency`).
    pub limits: HashMap<String, Vec<super::concurrency::Concurrency>>,
    /// Function id -> its debounce (`Function::debounce`).
    pub debounces: HashMap<String, super::debounce::Debounce>,
    /// Function id -> its batch (`Function::batch`).
    pub batches: HashMap<String, super::batch::Batch>,
    /// Function id -> its throttle (`Function::throttle`).
    pub throttles: HashMap<String, super::throttle::Throttle>,
    /// Function id -> its rate limit (`Function::rate_limit`).
    pub rate_limits: HashMap<String, super::rate_limit::RateLimit>,
    /// Each function with a priority, and its expression.
    pub priorities: HashMap<String, super::priority::Priority>,
    /// Run updates on their way to the other processes (`notifier::Relay::Later`).
    pub relay: Mutex<super::notifier::Outbox>,
    /// Whether another process listens for those updates (`notifier::Census`).
    pub census: super::notifier::Census,
}

/// The runs this process is executing, by id.
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashMap<String, Flight>>);

/// One run in flight in this process.
#[derive(Clone)]
pub(crate) struct Flight {
    /// The claim its newest task runs under.
    pub claim: i32,
    /// Held by the task executing the run: a later claim of the same run (the run was
    /// rescued from this very process) waits for the earlier task to stop, so that one
    /// process never runs two tasks of one run.
    pub gate: Arc<tokio::sync::Mutex<()>>,
    /// Turns true when the run is cancelled: its task stops at once.
    pub cancelled: Arc<watch::Sender<bool>>,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Flight>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers claim `claim` of `run_id`; the task must hold the returned gate while
    /// it executes.
    pub(crate) fn enter(&self, run_id: &str, claim: i32) -> Flight {
        let mut map = self.lock();
        // A later claim shares the earlier task's gate and cancel signal.
        let flight = match map.get(run_id) {
            Some(earlier) => Flight {
                claim,
                ..earlier.clone()
            },
            None => Flight {
                claim,
                gate: Arc::default(),
                cancelled: Arc::new(watch::channel(false).0),
            },
        };
        map.insert(run_id.to_string(), flight.clone());
        flight
    }

    /// Forgets claim `claim` of `run_id`, unless a later claim has replaced it.
    pub(crate) fn leave(&self, run_id: &str, claim: i32) {
        let mut map = self.lock();
        if map.get(run_id).is_some_and(|f| f.claim == claim) {
            map.remove(run_id);
        }
    }

    /// Stops the task executing `run_id` here, if there is one.
    pub(crate) fn cancel(&self, run_id: &str) {
        if let Some(flight) = self.lock().get(run_id) {
            flight.cancelled.send_replace(true);
        }
    }

    /// The ids in flight.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Takes every id out (at shutdown).
    pub(crate) fn drain(&self) -> Vec<String> {
        self.lock().drain().map(|(id, _)| id).collect()
    }
}

impl Runtime {
    pub(crate) fn new(db: DatabaseConnection, config: EngineConfig, clock: Arc<dyn Clock>) -> Self {
        let (updates, _) = broadcast::channel(4096);
        Runtime {
            leases: lease_pool(&db),
            db,
            config,
            clock,
            wake: Notify::new(),
            match_wake: Notify::new(),
            updates,
            in_flight: InFlight::default(),
            failure_handlers: HashMap::new(),
            cancel_rules: HashMap::new(),
            limits: HashMap::new(),
            debounces: HashMap::new(),
            batches: HashMap::new(),
            throttles: HashMap::new(),
            rate_limits: HashMap::new(),
            priorities: HashMap::new(),
            relay: Mutex::default(),
            census: Default::default(),
            worker_id: format!(
                "{}-{}-{}",
                hostname(),
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
        }
    }

    /// Whether the database is PostgreSQL (many processes) rather than SQLite.
    pub(crate) fn postgres(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    /// Whether some function's runs are gated (a concurrency limit or a throttle): then
    /// the workers claim gated runs too (`store::claim::claim_gated`).
    pub(crate) fn gates(&self) -> bool {
        !self.limits.is_empty() || !self.throttles.is_empty()
    }

    /// The end of a lease taken or renewed at `now`.
    pub(crate) fn lease_from(&self, now: i64) -> i64 {
        now + self.config.lease.as_millis() as i64
    }
}

/// See [`Runtime::leases`]; on SQLite, the same pool as everything else.
fn lease_pool(db: &DatabaseConnection) -> DatabaseConnection {
    if db.get_database_backend() != DbBackend::Postgres {
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
