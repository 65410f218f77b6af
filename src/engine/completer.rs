//! The completer: records what runs did, many runs per transaction (group commit).
//!
//! Executing runs hand it step results and state moves; it commits whatever has piled
//! up in one transaction, then tells each run whether it still owned itself (a run that
//! was cancelled, or whose lease lapsed, must stop) and publishes the moves.
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DbErr;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::notifier::{publish, Relay};
use super::progress::{Owned, Write};
use super::runtime::Runtime;
use super::store;

/// The handle executing runs use to reach the completer.
#[derive(Clone)]
pub(crate) struct Completer {
    /// One queue per lane; an invocation's writes all go down the same lane, so they
    /// commit in the order they were made.
    lanes: Arc<[mpsc::UnboundedSender<Write>]>,
    /// Writes queued or being committed, per lane.
    queued: Arc<[AtomicUsize]>,
    /// The lane of every write made through this handle: an invocation's handle
    /// ([`Completer::pinned`]) has one; the pool's hashes the run id.
    pin: Option<usize>,
}

impl Completer {
    fn lane(&self, run_id: &str) -> &mpsc::UnboundedSender<Write> {
        let lane = self.pin.unwrap_or_else(|| {
            let mut hasher = std::hash::DefaultHasher::new();
            run_id.hash(&mut hasher);
            hasher.finish() as usize % self.lanes.len()
        });
        self.queued[lane].fetch_add(1, Ordering::Relaxed);
        &self.lanes[lane]
    }

    /// A handle for one invocation of a run: all its writes go down the lane with the
    /// fewest writes queued now. A lane that falls behind then gets fewer new runs; with
    /// a lane per run id, it kept its share of new runs and held them longest, so most
    /// runs in flight ended up queued in it, behind 64 writes per commit, while the
    /// other lanes committed a few writes at a time (three-step runs on PostgreSQL:
    /// 2,000 runs/s before, 3,700 after).
    pub(crate) fn pinned(&self) -> Completer {
        let lane = (0..self.queued.len())
            .min_by_key(|&i| self.queued[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        Completer {
            pin: Some(lane),
            ..self.clone()
        }
    }

    /// Queues a write without waiting for it.
    pub(crate) fn send(&self, write: Write) {
        let _ = self.lane(&write.run.run_id).send(write);
    }

    /// Queues a write and waits for its commit: true if the run was still ours.
    pub(crate) async fn commit(&self, write: Write) -> bool {
        self.commit_later(write).await.unwrap_or(false)
    }

    /// Queues a write; the receiver hears, after the commit, whether the run was still
    /// ours (a dropped sender means it was not).
    pub(crate) fn commit_later(&self, mut write: Write) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        write.ack = Some(tx);
        let _ = self.lane(&write.run.run_id).send(write);
        rx
    }
}

/// Transactions in flight at once. SQLite has one writer, so one lane is all it can
/// use; PostgreSQL commits several at once, and flushes their WAL together.
fn lanes(rt: &Runtime) -> usize {
    if rt.postgres() {
        4
    } else {
        1
    }
}

/// Starts the completer's lanes; the task it returns ends when every lane has written
/// what it was given, after every `Completer` handle is dropped.
pub(crate) fn start(rt: Arc<Runtime>) -> (Completer, JoinHandle<()>) {
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    let queued: Arc<[AtomicUsize]> = (0..lanes(&rt)).map(|_| AtomicUsize::new(0)).collect();
    for i in 0..queued.len() {
        let (tx, rx) = mpsc::unbounded_channel::<Write>();
        senders.push(tx);
        tasks.push(tokio::spawn(lane(rt.clone(), rx, queued.clone(), i)));
    }
    let task = tokio::spawn(async move {
        for task in tasks {
            let _ = task.await;
        }
    });
    (
        Completer {
            lanes: senders.into(),
            queued,
            pin: None,
        },
        task,
    )
}

/// One lane: commits whatever has piled up, one transaction at a time.
async fn lane(
    rt: Arc<Runtime>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    queued: Arc<[AtomicUsize]>,
    me: usize,
) {
    let mut batch = Vec::with_capacity(rt.config.batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < rt.config.batch {
            match rx.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let n = batch.len();
        flush(&rt, std::mem::take(&mut batch)).await;
        queued[me].fetch_sub(n, Ordering::Relaxed);
    }
}

/// Commits one batch, retrying a failing database a few times; if it still fails, each
/// run's writes are committed on their own, so that a write the database refuses costs
/// only its own run (see [`give_up`]).
async fn flush(rt: &Arc<Runtime>, writes: Vec<Write>) {
    // An invocation whose earlier write was given up must not record anything after it.
    let (writes, dropped): (Vec<Write>, Vec<Write>) = writes
        .into_iter()
        .partition(|w| !w.lost.load(Ordering::Relaxed));
    drop(dropped); // their acks answer "not ours"
    if writes.is_empty() {
        return;
    }
    let all: Vec<&Write> = writes.iter().collect();
    let began = std::time::Instant::now();
    let committed = commit(rt, &all, 5).await;
    super::metrics::commit(all.len(), began.elapsed());
    let owned = match committed {
        Ok(owned) => owned,
        Err(err) if all.iter().all(|w| w.run.run_id == all[0].run.run_id) => {
            give_up(rt, &all, &err).await;
            Owned::default()
        }
        Err(_) => isolate(rt, &all).await,
    };
    let updates: Vec<_> = writes
        .iter()
        .filter(|w| owned.has(w))
        .filter_map(Write::update)
        .collect();
    let parked = updates.iter().any(|u| u.status.is_due_state());
    publish(rt, updates, Relay::Later).await;
    for write in writes {
        let ours = owned.has(&write);
        if let Some(ack) = write.ack {
            let _ = ack.send(ours);
        }
    }
    if parked {
        // The dispatcher may need to move its timer earlier.
        rt.wake.notify_one();
    }
}

/// Commits `writes`, trying up to `attempts` times with a growing pause.
async fn commit(rt: &Runtime, writes: &[&Write], attempts: u32) -> Result<Owned, DbErr> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match store::complete::commit(rt, writes).await {
            Ok(owned) => return Ok(owned),
            Err(err) if attempt >= attempts => return Err(err),
            Err(err) => {
                tracing::warn!(attempt, error = %err, "could not record run progress");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

/// Commits each run's writes apart (in their order); returns the runs that were ours.
async fn isolate(rt: &Arc<Runtime>, writes: &[&Write]) -> Owned {
    let mut runs: Vec<&str> = writes.iter().map(|w| w.run.run_id.as_str()).collect();
    runs.sort_unstable();
    runs.dedup();
    let mut owned = Owned::default();
    for run_id in runs {
        let group: Vec<&Write> = writes
            .iter()
            .copied()
            .filter(|w| w.run.run_id == run_id)
            .collect();
        match commit(rt, &group, 2).await {
            Ok(ours) => owned.0.extend(ours.0),
            Err(err) => give_up(rt, &group, &err).await,
        }
    }
    owned
}

/// The database refuses a run's progress: its writes are lost (the run's task stops at
/// its next step), and the run goes back to the queue after a backoff with the
/// database's reason as its error — or, if even that fails (the database is down),
/// stays with its lease until the rescuer re-queues it.
async fn give_up(rt: &Arc<Runtime>, group: &[&Write], err: &DbErr) {
    for write in group {
        write.lost.store(true, Ordering::Relaxed);
    }
    let run = &group[0].run;
    tracing::warn!(run = %run.run_id, error = %err, "the database refused a run's progress");
    let reason = format!("the database refused this run's progress: {err}");
    let due_at =
        rt.clock.now_ms() + rt.config.backoff.delay(run.claim.max(1) as u32).as_millis() as i64;
    match store::control::hand_back(rt, run, due_at, &reason, true).await {
        Ok(updates) => publish(rt, updates, Relay::Now(&rt.db)).await,
        Err(err) => {
            tracing::warn!(error = %err, "could not hand the run back; its lease will lapse")
        }
    }
}
