//! The completer: records what runs did, many runs per transaction (group commit).
//!
//! Executing runs hand it step results and state moves; it commits whatever has piled
//! up in one transaction, then tells each run whether it still owned itself (a run that
//! was cancelled, or whose lease lapsed, must stop) and publishes the moves.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::entities::step;
use super::status::RunStatus;
use super::{store, Inner, RunUpdate};

/// A run leaving `running`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Back in line at `due_at` (a retry); `attempts`/`error` set the run's own counters
    /// when the handler itself failed.
    Queued {
        due_at: i64,
        attempts: Option<i32>,
        error: Option<String>,
    },
    /// Parked by a sleep until `due_at`.
    Sleeping { due_at: i64 },
    /// Done, with the handler's output as JSON text.
    Completed { output: String },
    /// Given up, with why.
    Failed {
        error: String,
        attempts: Option<i32>,
    },
}

impl Transition {
    pub(crate) fn status(&self) -> RunStatus {
        match self {
            Transition::Queued { .. } => RunStatus::Queued,
            Transition::Sleeping { .. } => RunStatus::Sleeping,
            Transition::Completed { .. } => RunStatus::Completed,
            Transition::Failed { .. } => RunStatus::Failed,
        }
    }
}

/// One run's news: a step record, a move, or both.
pub(crate) struct Write {
    pub run_id: String,
    pub function_id: String,
    pub user_id: Option<String>,
    pub step: Option<step::Model>,
    pub transition: Option<Transition>,
    /// Told, after the commit, whether the run was still ours.
    pub ack: Option<oneshot::Sender<bool>>,
}

/// The handle executing runs use to reach the completer.
#[derive(Clone)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Write>,
}

impl Completer {
    /// Queues a write without waiting for it.
    pub(crate) fn send(&self, write: Write) {
        let _ = self.tx.send(write);
    }

    /// Queues a write and waits for its commit: true if the run was still ours.
    pub(crate) async fn commit(&self, mut write: Write) -> bool {
        let (tx, rx) = oneshot::channel();
        write.ack = Some(tx);
        if self.tx.send(write).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

/// Starts the completer task; it ends when every `Completer` handle is dropped.
pub(crate) fn start(inner: Arc<Inner>) -> (Completer, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(inner.config.batch);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < inner.config.batch {
                match rx.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            flush(&inner, std::mem::take(&mut batch)).await;
        }
    });
    (Completer { tx }, task)
}

/// Commits one batch, retrying a failing database a few times before giving up; runs
/// whose writes are given up stop, and are rescued once their lease lapses.
async fn flush(inner: &Inner, writes: Vec<Write>) {
    let mut delay = Duration::from_millis(50);
    let mut owned: Option<HashSet<String>> = None;
    for attempt in 1..=5 {
        match store::commit(inner, &writes).await {
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
    let owned = owned.unwrap_or_default();
    let mut parked = false;
    for write in writes {
        let ours = owned.contains(&write.run_id);
        if ours {
            if let Some(transition) = &write.transition {
                parked |= matches!(
                    transition,
                    Transition::Queued { .. } | Transition::Sleeping { .. }
                );
                let _ = inner.updates.send(RunUpdate {
                    run_id: write.run_id.clone(),
                    function_id: write.function_id.clone(),
                    user_id: write.user_id.clone(),
                    status: transition.status(),
                });
            }
        }
        if let Some(ack) = write.ack {
            let _ = ack.send(ours);
        }
    }
    if parked {
        // The dispatcher may need to move its timer earlier.
        inner.wake.notify_one();
    }
}
