//! How run updates leave the engine and reach other processes: [`publish`] tells this
//! process's subscribers and (on PostgreSQL) the others; the listener hears the other
//! processes' updates and wake-ups. On SQLite there is one process, and the in-process
//! signals are enough.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgListener, PgPool};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::progress::RunUpdate;
use super::runtime::Runtime;
use super::store::notify::{self, Wire, MATCH, RUNS, WAKE};
use crate::domain::RunStatus;

/// How other processes hear of updates being published.
pub(crate) enum Relay<'a> {
    /// Tell them now through this connection, and wait.
    Now(&'a DatabaseConnection),
    /// Tell them soon, from a background task, off the hot path (see [`Outbox`]), if
    /// any listens (see [`Census`]).
    Later,
}

/// Run updates waiting to be told to the other processes. One task at a time sends
/// everything that has piled up in one statement, through the lease pool (whose
/// commits do not wait for the WAL flush), so that no transaction that records
/// progress takes PostgreSQL's lock on the notification queue — which it would hold
/// through its commit's flush, and so make every commit wait for the one before.
/// Updates leave in the order they were published. They are told after their commit:
/// never for a move that did not commit, and not at all if this process dies in
/// between (then the others learn of the move at their next poll or page load).
/// Published while no other process listens, they are not told at all.
#[derive(Default)]
pub(crate) struct Outbox {
    pending: Vec<RunUpdate>,
    /// Whether a task is sending; it takes whatever is pending before it stops.
    sending: bool,
}

/// The one way run updates leave the engine: this process's subscribers hear at once,
/// then the other processes as `relay` says.
pub(crate) async fn publish(rt: &Arc<Runtime>, updates: Vec<RunUpdate>, relay: Relay<'_>) {
    if updates.is_empty() {
        return;
    }
    for update in &updates {
        if update.status.is_final() {
            super::metrics::run_ended(&update.function_id, update.status);
        }
        if frees_a_slot(rt, update) {
            rt.wake.notify_one();
        }
        let _ = rt.updates.send(update.clone());
    }
    if !rt.postgres() {
        return;
    }
    match relay {
        Relay::Now(conn) => announce(conn, &rt.worker_id, &updates).await,
        Relay::Later if !rt.census.tells() => {}
        Relay::Later => {
            let mut outbox = lock(&rt.relay);
            outbox.pending.extend(updates);
            if !outbox.sending {
                outbox.sending = true;
                tokio::spawn(send_outbox(rt.clone()));
            }
        }
    }
}

/// Sends the outbox until it is empty.
async fn send_outbox(rt: Arc<Runtime>) {
    loop {
        let updates = {
            let mut outbox = lock(&rt.relay);
            if outbox.pending.is_empty() {
                outbox.sending = false;
                return;
            }
            std::mem::take(&mut outbox.pending)
        };
        announce(&rt.leases, &rt.worker_id, &updates).await;
    }
}

fn lock(outbox: &std::sync::Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    outbox.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the update is a run of a function with concurrency limits that stopped
/// executing: a run its keys held back may start now.
fn frees_a_slot(rt: &Runtime, update: &RunUpdate) -> bool {
    update.status != RunStatus::Running && rt.limits.contains_key(&update.function_id)
}

async fn announce(conn: &DatabaseConnection, worker_id: &str, updates: &[RunUpdate]) {
    if let Err(err) = notify::announce(conn, worker_id, updates).await {
        tracing::warn!(error = %err, "could not announce run updates to other processes");
    }
}

/// Whether another process listens for run updates: a process alone on its database
/// sends none (each costs PostgreSQL a write to its notification queue, and every
/// listener a read). While its listener is connected, a process counts every
/// [`COUNT_EVERY`] the other listeners' connections (named [`notify::LISTENER`]…), and
/// one that starts listening says hello at once; until its own listener is connected,
/// or after it lost it, a process tells.
pub(crate) struct Census {
    tell: AtomicBool,
    count: std::sync::Mutex<Count>,
    /// This process's listener's `application_name`.
    name: String,
}

#[derive(Default)]
struct Count {
    listening: bool,
    /// Bumped by every change, so that a count begun before it does not undo it.
    generation: u64,
}

/// How often a process counts the other listeners: one that stopped listening is still
/// told for at most this long.
const COUNT_EVERY: Duration = Duration::from_secs(1);

impl Default for Census {
    fn default() -> Self {
        Census {
            tell: AtomicBool::new(true),
            count: Default::default(),
            name: format!("{}{}", notify::LISTENER, uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Census {
    /// Whether run updates go to the other processes now.
    pub(crate) fn tells(&self) -> bool {
        self.tell.load(Ordering::Relaxed)
    }

    fn change(&self, listening: Option<bool>, tell: Option<bool>) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        count.generation += 1;
        if let Some(listening) = listening {
            count.listening = listening;
        }
        if let Some(tell) = tell {
            self.tell.store(tell, Ordering::Relaxed);
        }
    }

    /// Starts a count: `None` while this process's listener is not connected.
    fn begin(&self) -> Option<u64> {
        let count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        count.listening.then_some(count.generation)
    }

    /// Ends the count begun at `generation`, unless something changed meanwhile.
    fn counted(&self, generation: u64, others: bool) {
        let count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        if count.listening && count.generation == generation {
            self.tell.store(others, Ordering::Relaxed);
        }
    }
}

/// Starts the listener on PostgreSQL (nothing on SQLite), and with it the census of the
/// other listeners. It reconnects by itself; after a reconnect it wakes the workers,
/// since signals sent meanwhile were lost.
pub(crate) fn start(rt: Arc<Runtime>, stopped: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    if !rt.postgres() {
        return None;
    }
    Some(tokio::spawn(async move {
        tokio::join!(listen(rt.clone(), stopped.clone()), census(rt, stopped));
    }))
}

async fn listen(rt: Arc<Runtime>, mut stopped: watch::Receiver<bool>) {
    // The listener's own pool: its one connection bears the listener's name, and is
    // closed when it stops listening.
    let pool = listener_pool(&rt);
    let mut listener: Option<PgListener> = None;
    loop {
        if *stopped.borrow() {
            break;
        }
        let Some(l) = listener.as_mut() else {
            match connect(&rt, &pool).await {
                Ok(l) => {
                    listener = Some(l);
                    rt.wake.notify_one();
                    rt.match_wake.notify_one();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for notifications; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stopped.changed() => break,
                    }
                }
            }
            continue;
        };
        let received = tokio::select! {
            received = l.try_recv() => received,
            _ = stopped.changed() => break,
        };
        match received {
            Ok(Some(notification)) => handle(&rt, notification.channel(), notification.payload()),
            Ok(None) => {
                tracing::warn!("notification connection lost; reconnecting");
                rt.census.change(Some(false), Some(true));
                listener = None;
            }
            Err(err) => {
                tracing::warn!(error = %err, "notification listener failed; reconnecting");
                rt.census.change(Some(false), Some(true));
                listener = None;
            }
        }
    }
    rt.census.change(Some(false), Some(true));
    drop(listener);
    pool.close().await;
}

fn listener_pool(rt: &Runtime) -> PgPool {
    let pool = rt.db.get_postgres_connection_pool();
    let options = (*pool.connect_options())
        .clone()
        .application_name(&rt.census.name);
    pool.options()
        .clone()
        .max_connections(1)
        .min_connections(0)
        .connect_lazy_with(options)
}

/// Listens, counts the other listeners, and says hello to them.
async fn connect(rt: &Runtime, pool: &PgPool) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection comes back through here, to be counted and to say hello.
    listener.eager_reconnect(false);
    listener.listen_all([WAKE, RUNS, MATCH]).await?;
    rt.census.change(Some(true), None);
    count(rt).await;
    if let Err(err) = notify::hello(&rt.leases, &rt.worker_id).await {
        tracing::warn!(error = %err, "could not tell other processes that this one listens");
    }
    Ok(listener)
}

/// Counts the other listeners every [`COUNT_EVERY`].
async fn census(rt: Arc<Runtime>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(COUNT_EVERY) => count(&rt).await,
            _ = stopped.changed() => return,
        }
    }
}

async fn count(rt: &Runtime) {
    let Some(generation) = rt.census.begin() else {
        return;
    };
    let others = notify::others_listen(&rt.leases, &rt.census.name)
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "could not count the other processes' listeners");
            true
        });
    rt.census.counted(generation, others);
}

fn handle(rt: &Runtime, channel: &str, payload: &str) {
    if channel == WAKE {
        // A send of this process's that woke the dispatcher after its commit needs no
        // second wake-up: the claim it would start finds nothing.
        if payload != rt.worker_id {
            rt.wake.notify_one();
        }
        return;
    }
    if channel == MATCH {
        rt.match_wake.notify_one();
        return;
    }
    if notify::sent_by(payload, &rt.worker_id) {
        return;
    }
    let Ok(wire) = serde_json::from_str::<Wire>(payload) else {
        return;
    };
    if wire.runs.is_empty() {
        // A hello: another process listens now.
        rt.census.change(None, Some(true));
        return;
    }
    for update in wire.runs.into_iter().map(RunUpdate::from) {
        if update.status.is_due_state() || frees_a_slot(rt, &update) {
            rt.wake.notify_one();
        }
        if update.status == RunStatus::Cancelled {
            // Cancelled through another process: stop it here if it runs here.
            rt.in_flight.cancel(&update.run_id);
        }
        // Another process published it; here it only reaches our subscribers.
        let _ = rt.updates.send(update);
    }
}
