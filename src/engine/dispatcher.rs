//! The worker pool: claims due runs in batches and executes each in a task, with the
//! completer and the housekeeping beside it; shuts down gracefully.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
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

pub(crate) fn start(rt: Arc<Runtime>, registry: Arc<Registry>, slot: StarterSlot) -> Workers {
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
    let dispatcher = tokio::spawn(dispatch(rt, registry, completer, slot, stopped));
    Workers {
        stop,
        dispatcher,
        completer: completer_task,
        housekeeping,
    }
}

/// How a send reaches this process's dispatcher to start the runs it recorded as
/// claimed already (`store::send::send_and_start`): with slots it took, while the last
/// claim found no other run due.
pub(crate) struct Starter {
    slots: Arc<Semaphore>,
    /// Whether the last claim found fewer due runs than it had room for: a run started
    /// at its send then passes none that waits.
    idle: AtomicBool,
    handed: mpsc::UnboundedSender<Handed>,
}

/// Where the running dispatcher's [`Starter`] is found (empty while none runs).
pub(crate) type StarterSlot = Arc<std::sync::Mutex<Option<Arc<Starter>>>>;

/// The running dispatcher's [`Starter`], if any.
pub(crate) fn current(slot: &StarterSlot) -> Option<Arc<Starter>> {
    lock(slot).clone()
}

fn lock(slot: &StarterSlot) -> std::sync::MutexGuard<'_, Option<Arc<Starter>>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs recorded as claimed by this worker at their send, and their slots.
struct Handed {
    runs: Vec<(run::Model, ClaimedEvent)>,
    slots: Vec<OwnedSemaphorePermit>,
}

impl Starter {
    /// Up to `most` free slots if the workers are idle; none otherwise.
    pub(crate) fn reserve(&self, most: usize) -> Vec<OwnedSemaphorePermit> {
        if !self.idle.load(Ordering::Relaxed) {
            return Vec::new();
        }
        (0..most)
            .map_while(|_| self.slots.clone().try_acquire_owned().ok())
            .collect()
    }

    /// Hands committed `runs` to the dispatcher with their `slots`; if it has stopped,
    /// gives the runs back to the queue.
    pub(crate) async fn hand(
        &self,
        rt: &Arc<Runtime>,
        runs: Vec<(run::Model, ClaimedEvent)>,
        slots: Vec<OwnedSemaphorePermit>,
    ) {
        if let Err(mpsc::error::SendError(handed)) = self.handed.send(Handed { runs, slots }) {
            give_back(rt, handed.runs).await;
        }
    }
}

/// Returns claimed runs that will not run here to the queue.
async fn give_back(rt: &Arc<Runtime>, runs: Vec<(run::Model, ClaimedEvent)>) {
    let ids = runs.into_iter().map(|(run, _)| run.id).collect();
    match store::control::release(rt, ids).await {
        Ok(updates) => publish(rt, updates, Relay::Now(&rt.db)).await,
        Err(err) => {
            tracing::warn!(error = %err, "could not hand back runs; their leases will lapse")
        }
    }
}

async fn dispatch(
    rt: Arc<Runtime>,
    registry: Arc<Registry>,
    completer: Completer,
    slot: StarterSlot,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(rt.config.workers.max(1)));
    let (handed_tx, mut handed) = mpsc::unbounded_channel();
    let starter = Arc::new(Starter {
        slots: slots.clone(),
        idle: AtomicBool::new(false),
        handed: handed_tx,
    });
    *lock(&slot) = Some(starter.clone());
    let mut tasks = JoinSet::new();
    let mut deadline = Instant::now();
    // Whether to claim before waiting again (not after runs were handed over: their
    // send found no other run due).
    let mut claim = true;
    loop {
        if *stopped.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}

        if claim {
            let free = slots.available_permits().min(rt.config.batch);
            let mut claimed_all = false;
            if free > 0 {
                match claim_and_spawn(&rt, &registry, &completer, &slots, &mut tasks, free).await {
                    Ok((claimed, more)) => claimed_all = more || claimed == free,
                    Err(err) => {
                        starter.idle.store(false, Ordering::Relaxed);
                        tracing::warn!(error = %err, "claiming runs failed");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = stopped.changed() => {}
                        }
                        continue;
                    }
                }
                starter.idle.store(!claimed_all, Ordering::Relaxed);
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
            deadline = Instant::now() + wait;
        }
        claim = true;
        tokio::select! {
            Some(h) = handed.recv() => {
                if let Err(err) = spawn(&rt, &registry, &completer, &slots, &mut tasks, h.runs, h.slots).await {
                    tracing::warn!(error = %err, "starting runs handed over by their send failed");
                }
                claim = false;
            }
            _ = rt.wake.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = slots.acquire(), if slots.available_permits() == 0 => {
                // Runs of one batch tend to finish together: let the others free their
                // slots too, so that the next claim is a batch rather than one run.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            _ = stopped.changed() => {}
        }
    }
    // No send hands runs over from now on; those on their way go back to the queue.
    {
        let mut current = lock(&slot);
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, &starter)) {
            *current = None;
        }
    }
    handed.close();
    while let Ok(h) = handed.try_recv() {
        give_back(&rt, h.runs).await;
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
    metrics::claim(runs.len());
    let mut claimed = spawn(rt, registry, completer, slots, tasks, runs, Vec::new()).await?;
    let mut more = false;
    if claimed < limit && rt.gates() {
        let gated = store::claim::claim_gated(rt, limit - claimed).await?;
        more = gated.more;
        metrics::claim(gated.runs.len());
        claimed += spawn(
            rt,
            registry,
            completer,
            slots,
            tasks,
            gated.runs,
            Vec::new(),
        )
        .await?;
    }
    Ok((claimed, more))
}

/// Starts a task for each claimed run, in a slot of `taken` or else a free one (a run
/// for which none is left goes back to the queue); returns how many it started.
async fn spawn(
    rt: &Arc<Runtime>,
    registry: &Arc<Registry>,
    completer: &Completer,
    slots: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    mut runs: Vec<(run::Model, ClaimedEvent)>,
    mut taken: Vec<OwnedSemaphorePermit>,
) -> Result<usize, sea_orm::DbErr> {
    while taken.len() < runs.len() {
        match slots.clone().try_acquire_owned() {
            Ok(slot) => taken.push(slot),
            Err(_) => break,
        }
    }
    if runs.len() > taken.len() {
        // A send took slots (`Starter::reserve`) after the claim counted them.
        give_back(rt, runs.split_off(taken.len())).await;
    }
    if runs.is_empty() {
        return Ok(0);
    }
    let claimed = runs.len();
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
        let Some(permit) = taken.pop() else {
            break; // cannot happen: a slot was taken for each run above
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
