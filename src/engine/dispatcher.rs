//! The worker pool: claims due runs in batches, executes each in a task, keeps their
//! leases alive, rescues runs whose worker died, and shuts down gracefully.
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::completer::{self, Completer, Transition, Write};
use super::entities::{run, step};
use super::error::FnError;
use super::event::Event;
use super::function::Ctx;
use super::status::RunStatus;
use super::step::Step;
use super::{store, Inner, RunUpdate};

/// The running worker pool of one process.
pub struct Workers {
    stop: watch::Sender<bool>,
    dispatcher: JoinHandle<()>,
    completer: JoinHandle<()>,
    housekeeping: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Stops claiming, lets in-flight runs finish (up to the configured grace), hands
    /// back the rest, and waits for every record to be written.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.dispatcher.await;
        for task in self.housekeeping {
            let _ = task.await;
        }
        let _ = self.completer.await;
    }
}

/// The ids of the runs this process is executing.
type InFlight = Arc<Mutex<HashSet<String>>>;

pub(crate) fn start(inner: Arc<Inner>) -> Workers {
    let (stop, stopped) = watch::channel(false);
    let (completer, completer_task) = completer::start(inner.clone());
    let in_flight: InFlight = Arc::default();
    let mut housekeeping = vec![
        tokio::spawn(heartbeat(inner.clone(), in_flight.clone(), stopped.clone())),
        tokio::spawn(rescuer(inner.clone(), stopped.clone())),
    ];
    housekeeping.extend(super::notifier::start(inner.clone(), stopped.clone()));
    if let Some(retention) = inner.config.retention {
        housekeeping.push(tokio::spawn(pruner(
            inner.clone(),
            retention,
            stopped.clone(),
        )));
    }
    let dispatcher = tokio::spawn(dispatch(inner, completer, in_flight, stopped));
    Workers {
        stop,
        dispatcher,
        completer: completer_task,
        housekeeping,
    }
}

async fn dispatch(
    inner: Arc<Inner>,
    completer: Completer,
    in_flight: InFlight,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(inner.config.workers.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        if *stopped.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}

        let free = slots.available_permits().min(inner.config.batch);
        let mut claimed_all = false;
        if free > 0 {
            match claim_and_spawn(&inner, &completer, &in_flight, &slots, &mut tasks, free).await {
                Ok(claimed) => claimed_all = claimed == free,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming runs failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stopped.changed() => {}
                    }
                    continue;
                }
            }
        }
        if claimed_all && slots.available_permits() > 0 {
            continue; // more may be due right now
        }

        let wait = if slots.available_permits() == 0 {
            inner.config.poll
        } else {
            match store::next_due(&inner).await {
                Ok(Some(due)) => {
                    let ms = (due - inner.clock.now_ms()).max(0) as u64;
                    Duration::from_millis(ms).min(inner.config.poll)
                }
                Ok(None) => inner.config.poll,
                Err(_) => Duration::from_millis(500),
            }
        };
        if wait.is_zero() && slots.available_permits() > 0 {
            continue;
        }
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = slots.acquire(), if slots.available_permits() == 0 => {
                // Runs of one batch tend to finish together: let the others free their
                // slots too, so that the next claim is a batch rather than one run.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            _ = stopped.changed() => {}
        }
    }

    // Shutdown: give in-flight runs a grace period, then hand the rest back.
    let grace = tokio::time::timeout(inner.config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if grace.is_err() {
        tasks.shutdown().await;
    }
    let unfinished: Vec<String> = lock(&in_flight).drain().collect();
    match store::release(&inner, unfinished).await {
        Ok(updates) => publish(&inner, updates).await,
        Err(err) => {
            tracing::warn!(error = %err, "could not hand back runs; their leases will lapse")
        }
    }
}

fn lock(in_flight: &InFlight) -> std::sync::MutexGuard<'_, HashSet<String>> {
    in_flight.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tells this process's subscribers, and (on PostgreSQL) the other processes.
async fn publish(inner: &Inner, updates: Vec<RunUpdate>) {
    if let Err(err) = super::notifier::announce(&inner.db, &inner.worker_id, &updates).await {
        tracing::warn!(error = %err, "could not announce run updates to other processes");
    }
    for update in updates {
        let _ = inner.updates.send(update);
    }
}

/// Claims up to `limit` runs and starts a task for each; returns how many it claimed.
async fn claim_and_spawn(
    inner: &Arc<Inner>,
    completer: &Completer,
    in_flight: &InFlight,
    slots: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    limit: usize,
) -> Result<usize, sea_orm::DbErr> {
    let runs = store::claim(inner, limit).await?;
    if runs.is_empty() {
        return Ok(0);
    }
    let claimed = runs.len();
    lock(in_flight).extend(runs.iter().map(|(r, _)| r.id.clone()));
    // A run claimed before has saved steps to replay; a first claim has none.
    let resumed: Vec<String> = runs
        .iter()
        .filter(|(r, _)| r.claims > 1 || r.attempts > 0)
        .map(|(r, _)| r.id.clone())
        .collect();
    let mut steps = match store::steps(inner, resumed).await {
        Ok(steps) => steps,
        Err(err) => {
            // Hand the runs straight back rather than sit on them until the lease lapses.
            let ids: Vec<String> = runs.iter().map(|(r, _)| r.id.clone()).collect();
            lock(in_flight).retain(|id| !ids.contains(id));
            let _ = store::release(inner, ids).await;
            return Err(err);
        }
    };
    let running: Vec<RunUpdate> = runs
        .iter()
        .map(|(run, _)| RunUpdate {
            run_id: run.id.clone(),
            function_id: run.function_id.clone(),
            user_id: run.user_id.clone(),
            status: RunStatus::Running,
        })
        .collect();
    for update in &running {
        let _ = inner.updates.send(update.clone());
    }
    for (run, event) in runs {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            break; // cannot happen: we claimed no more than the free slots
        };
        let saved = steps.remove(&run.id).unwrap_or_default();
        let inner = inner.clone();
        let completer = completer.clone();
        let in_flight = in_flight.clone();
        tasks.spawn(async move {
            let run_id = run.id.clone();
            execute(inner, completer, run, event, saved).await;
            lock(&in_flight).remove(&run_id);
            drop(permit);
        });
    }
    // Other processes hear of it after the runs are under way, off the critical path.
    if inner.db.get_database_backend() == sea_orm::DbBackend::Postgres {
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(err) =
                super::notifier::announce(&inner.leases, &inner.worker_id, &running).await
            {
                tracing::warn!(error = %err, "could not announce run updates to other processes");
            }
        });
    }
    Ok(claimed)
}

/// Calls the run's handler once (a replay from the top) and records how it ended.
async fn execute(
    inner: Arc<Inner>,
    completer: Completer,
    run: run::Model,
    event: Option<Event>,
    saved: Vec<step::Model>,
) {
    let lost = Arc::new(AtomicBool::new(false));
    let write = |transition: Transition| Write {
        run_id: run.id.clone(),
        function_id: run.function_id.clone(),
        user_id: run.user_id.clone(),
        step: None,
        transition: Some(transition),
        ack: None,
        lost: lost.clone(),
    };
    let (Some(function), Some(event)) = (inner.functions.get(&run.function_id), event) else {
        let error = format!(
            "no function {:?} is registered in this process, or its event is gone",
            run.function_id
        );
        completer
            .commit(write(Transition::Failed {
                error,
                attempts: None,
            }))
            .await;
        return;
    };
    let retries = function.retry_limit();
    let ctx = Ctx {
        event,
        step: Step::new(
            inner.clone(),
            completer.clone(),
            &run,
            retries,
            saved,
            lost.clone(),
        ),
        run_id: run.id.clone(),
    };
    let outcome = AssertUnwindSafe(function.call(ctx)).catch_unwind().await;
    let failure = match outcome {
        Ok(Ok(output)) => {
            let output = serde_json::to_string(&output).unwrap_or_else(|_| "null".into());
            completer
                .commit(write(Transition::Completed { output }))
                .await;
            return;
        }
        Ok(Err(FnError::Interrupted)) => return, // parked or no longer ours: already recorded
        Ok(Err(err)) => err,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            FnError::Failed(format!("the handler panicked: {message}"))
        }
    };
    // The handler failed outside any step: the whole invocation is retried.
    let attempts = run.attempts + 1;
    let now = inner.clock.now_ms();
    let transition = match failure {
        FnError::NonRetriable(message) => Transition::Failed {
            error: message,
            attempts: Some(attempts),
        },
        err if attempts as u32 > retries => Transition::Failed {
            error: format!("failed after {attempts} attempts: {err}"),
            attempts: Some(attempts),
        },
        FnError::RetryAfter { after, message } => Transition::Queued {
            due_at: now + after.as_millis() as i64,
            attempts: Some(attempts),
            error: Some(message),
        },
        err => Transition::Queued {
            due_at: now + inner.config.backoff.delay(attempts as u32).as_millis() as i64,
            attempts: Some(attempts),
            error: Some(err.to_string()),
        },
    };
    completer.commit(write(transition)).await;
}

/// Renews the leases of the runs in flight, a few times per lease.
async fn heartbeat(inner: Arc<Inner>, in_flight: InFlight, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.config.heartbeat) => {}
            _ = stopped.changed() => return,
        }
        let ids: Vec<String> = lock(&in_flight).iter().cloned().collect();
        if let Err(err) = store::heartbeat(&inner, ids).await {
            tracing::warn!(error = %err, "lease heartbeat failed");
        }
    }
}

/// Re-queues runs whose lease lapsed, so that a dead worker's runs are finished by
/// whoever is alive.
async fn rescuer(inner: Arc<Inner>, mut stopped: watch::Receiver<bool>) {
    let every = (inner.config.lease / 2).max(Duration::from_millis(100));
    loop {
        match store::rescue(&inner).await {
            Ok(updates) if !updates.is_empty() => {
                tracing::info!(runs = updates.len(), "rescued runs whose lease lapsed");
                publish(&inner, updates).await;
                inner.wake.notify_one();
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "rescuing runs failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Deletes finished runs past the retention age, now and then.
async fn pruner(inner: Arc<Inner>, retention: Duration, mut stopped: watch::Receiver<bool>) {
    loop {
        let cutoff = inner.clock.now_ms() - retention.as_millis() as i64;
        match store::prune(&inner.db, cutoff).await {
            Ok((0, 0)) => {}
            Ok((runs, events)) => tracing::info!(runs, events, "pruned finished runs and events"),
            Err(err) => tracing::warn!(error = %err, "pruning failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.config.prune_every) => {}
            _ = stopped.changed() => return,
        }
    }
}
