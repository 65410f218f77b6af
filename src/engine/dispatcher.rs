//! The worker pool: claims due runs in batches and executes each in a task, with the
//! completer and the housekeeping beside it; shuts down gracefully.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use super::completer::{self, Completer};
use super::entities::run;
use super::executor::execute;
use super::function::Registry;
use super::maintenance;
use super::metrics;
use super::notifier::{self, publish, Relay};
use super::progress::RunRef;
use super::runtime::Runtime;
use super::store;
use super::store::claim::ClaimedEvent;
use crate::domain::RunStatus;

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

pub(crate) fn start(rt: Arc<Runtime>, registry: Arc<Registry>) -> Workers {
    let (stop, stopped) = watch::channel(false);
    let (completer, completer_task) = completer::start(rt.clone());
    let mut housekeeping = vec![
        tokio::spawn(maintenance::heartbeat(rt.clone(), stopped.clone())),
        tokio::spawn(maintenance::rescuer(rt.clone(), stopped.clone())),
        tokio::spawn(maintenance::matcher(rt.clone(), stopped.clone())),
    ];
    housekeeping.extend(notifier::start(rt.clone(), stopped.clone()));
    if !registry.schedules().is_empty() {
        housekeeping.push(tokio::spawn(maintenance::scheduler(
            rt.clone(),
            registry.clone(),
            stopped.clone(),
        )));
    }
    if let Some(retention) = rt.config.retention {
        housekeeping.push(tokio::spawn(maintenance::pruner(
            rt.clone(),
            retention,
            stopped.clone(),
        )));
    }
    let dispatcher = tokio::spawn(dispatch(rt, registry, completer, stopped));
    Workers {
        stop,
        dispatcher,
        completer: completer_task,
        housekeeping,
    }
}

async fn dispatch(
    rt: Arc<Runtime>,
    registry: Arc<Registry>,
    completer: Completer,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(rt.config.workers.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        if *stopped.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}

        let free = slots.available_permits().min(rt.config.batch);
        let mut claimed_all = false;
        if free > 0 {
            match claim_and_spawn(&rt, &registry, &completer, &slots, &mut tasks, free).await {
                Ok((claimed, more)) => claimed_all = more || claimed == free,
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
            rt.config.poll
        } else {
            match store::claim::next_due(&rt).await {
                Ok(Some(due)) => {
                    let ms = (due - rt.clock.now_ms()).max(0) as u64;
                    Duration::from_millis(ms).min(rt.config.poll)
                }
                Ok(None) => rt.config.poll,
                Err(_) => Duration::from_millis(500),
            }
        };
        if wait.is_zero() && slots.available_permits() > 0 {
            continue;
        }
        tokio::select! {
            _ = rt.wake.notified() => {}
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
    let grace = tokio::time::timeout(rt.config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if grace.is_err() {
        tasks.shutdown().await;
    }
    let unfinished = rt.in_flight.drain();
    match store::control::release(&rt, unfinished).await {
        Ok(updates) => publish(&rt, updates, Relay::Now(&rt.db)).await,
        Err(err) => {
            tracing::warn!(error = %err, "could not hand back runs; their leases will lapse")
        }
    }
}

/// Claims up to `limit` runs — open ones first, then gated ones (concurrency, throttle)
/// that have room — and starts a task for each; returns how many it claimed, and
/// whether more gated ones may be claimable now. The open runs start before the gated
/// claim.
async fn claim_and_spawn(
    rt: &Arc<Runtime>,
    registry: &Arc<Registry>,
    completer: &Completer,
    slots: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    limit: usize,
) -> Result<(usize, bool), sea_orm::DbErr> {
    let runs = store::claim::claim(rt, limit).await?;
    let mut claimed = spawn(rt, registry, completer, slots, tasks, runs).await?;
    let mut more = false;
    if claimed < limit && rt.gates() {
        let gated = store::claim::claim_gated(rt, limit - claimed).await?;
        more = gated.more;
        claimed += spawn(rt, registry, completer, slots, tasks, gated.runs).await?;
    }
    Ok((claimed, more))
}

/// Starts a task for each claimed run; returns how many.
async fn spawn(
    rt: &Arc<Runtime>,
    registry: &Arc<Registry>,
    completer: &Completer,
    slots: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    runs: Vec<(run::Model, ClaimedEvent)>,
) -> Result<usize, sea_orm::DbErr> {
    if runs.is_empty() {
        return Ok(0);
    }
    let claimed = runs.len();
    metrics::claim(claimed);
    for (run, _) in runs.iter().filter(|(r, _)| r.claims == 1) {
        let waited = run.started_at.unwrap_or(run.created_at) - run.created_at;
        metrics::run_started(&run.function_id, waited);
    }
    let ids_of = |keep: fn(&run::Model) -> bool| -> Vec<String> {
        runs.iter()
            .filter(|(r, _)| keep(r))
            .map(|(r, _)| r.id.clone())
            .collect()
    };
    // What the runs bring along: the steps a run claimed before saved, to replay (a first
    // claim has none), and a batch run's events, in order (`Function::batch`).
    let loaded = async {
        let steps = store::claim::steps(rt, ids_of(|r| r.claims > 1 || r.attempts > 0)).await?;
        let batches = store::claim::batches(rt, ids_of(|r| r.batch_size > 0)).await?;
        Ok::<_, sea_orm::DbErr>((steps, batches))
    };
    let (mut steps, mut batches) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => {
            // Hand the runs straight back rather than sit on them until the lease lapses.
            let ids: Vec<String> = runs.iter().map(|(r, _)| r.id.clone()).collect();
            let _ = store::control::release(rt, ids).await;
            return Err(err);
        }
    };
    let running = runs
        .iter()
        .map(|(run, _)| RunRef::of(run).update(RunStatus::Running))
        .collect();
    // Other processes hear of it from a background task, off the critical path.
    publish(rt, running, Relay::Later).await;
    for (run, event) in runs {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            break; // cannot happen: we claimed no more than the free slots
        };
        let mut saved = steps.remove(&run.id).unwrap_or_default();
        let event = match batches.remove(&run.id) {
            Some(Ok(batch)) => {
                saved.batch = batch;
                event
            }
            Some(Err(why)) => Err(why),
            None => event,
        };
        let flight = rt.in_flight.enter(&run.id, run.claims);
        let rt = rt.clone();
        let registry = registry.clone();
        let completer = completer.pinned();
        // Everything logged while the run executes says which run it was.
        let span = tracing::info_span!(
            "run",
            function = %run.function_id,
            run_id = %run.id,
            claim = run.claims
        );
        // Of the span that created the run, wherever that was.
        crate::engine::trace::adopt(&span, run.trace_parent.as_deref());
        tasks.spawn(
            async move {
                let (run_id, claim) = (run.id.clone(), run.claims);
                let mut cancelled = flight.cancelled.subscribe();
                let execution = async {
                    // An earlier task of this run in this process (it lost its lease while
                    // alive) finishes first; its writes no longer count.
                    let _turn = flight.gate.lock().await;
                    execute(rt.clone(), &registry, completer, run, event, saved).await;
                };
                tokio::select! {
                    _ = execution => {}
                    // Cancelled (here or in another process): stop now, mid-step.
                    _ = cancelled.wait_for(|cancelled| *cancelled) => {}
                }
                rt.in_flight.leave(&run_id, claim);
                drop(permit);
            }
            .instrument(span),
        );
    }
    Ok(claimed)
}
