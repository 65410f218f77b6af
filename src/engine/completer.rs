//! The completer: records what runs did, many runs per transaction (group commit).
//!
//! Executing runs hand it step results and state moves; it commits whatever has piled
//! up in one transaction, then tells each run whether it still owned itself (a run that
//! was cancelled, or whose lease lapsed, must stop) and publishes the moves.
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::notifier::{publish, Relay};
use super::progress::Write;
use super::runtime::Runtime;
use super::store;

/// The handle executing runs use to reach the completer.
#[derive(Clone)]
pub(crate) struct Completer {
    /// One queue per lane; a run's writes always go down the same lane, so they commit
    /// in the order they were made.
    lanes: Arc<[mpsc::UnboundedSender<Write>]>,
}

impl Completer {
    fn lane(&self, run_id: &str) -> &mpsc::UnboundedSender<Write> {
        let mut hasher = std::hash::DefaultHasher::new();
        run_id.hash(&mut hasher);
        &self.lanes[hasher.finish() as usize % self.lanes.len()]
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
    for _ in 0..lanes(&rt) {
        let (tx, rx) = mpsc::unbounded_channel::<Write>();
        senders.push(tx);
        tasks.push(tokio::spawn(lane(rt.clone(), rx)));
    }
    let task = tokio::spawn(async move {
        for task in tasks {
            let _ = task.await;
        }
    });
    (
        Completer {
            lanes: senders.into(),
        },
        task,
    )
}

/// One lane: commits whatever has piled up, one transaction at a time.
async fn lane(rt: Arc<Runtime>, mut rx: mpsc::UnboundedReceiver<Write>) {
    let mut batch = Vec::with_capacity(rt.config.batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < rt.config.batch {
            match rx.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        flush(&rt, std::mem::take(&mut batch)).await;
    }
}

/// Commits one batch, retrying a failing database a few times before giving up; runs
/// whose writes are given up stop, and are rescued once their lease lapses.
async fn flush(rt: &Arc<Runtime>, writes: Vec<Write>) {
    // An invocation whose earlier write was given up must not record anything after it.
    let (writes, dropped): (Vec<Write>, Vec<Write>) = writes
        .into_iter()
        .partition(|w| !w.lost.load(Ordering::Relaxed));
    drop(dropped); // their acks answer "not ours"
    if writes.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    let mut owned: Option<HashSet<String>> = None;
    for attempt in 1..=5 {
        match store::complete::commit(rt, &writes).await {
            Ok(set) => {
                owned = Some(set);
                break;
            }
            Err(err) => {
                tracing::warn!(attempt, error = %err, "could not record run progress");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    if owned.is_none() {
        for write in &writes {
            write.lost.store(true, Ordering::Relaxed);
        }
    }
    let owned = owned.unwrap_or_default();
    let updates: Vec<_> = writes
        .iter()
        .filter(|w| owned.contains(&w.run.run_id))
        .filter_map(Write::update)
        .collect();
    let parked = updates.iter().any(|u| u.status.is_due_state());
    publish(rt, updates, Relay::Done).await;
    for write in writes {
        if let Some(ack) = write.ack {
            let _ = ack.send(owned.contains(&write.run.run_id));
        }
    }
    if parked {
        // The dispatcher may need to move its timer earlier.
        rt.wake.notify_one();
    }
}
