//! What executing runs report: step records and state moves on their way to the
//! database, and the status changes the engine publishes once they are committed.
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::entities::{run, step, wait};
use crate::domain::RunStatus;

/// A change of a run's status, published after it is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunUpdate {
    pub run_id: String,
    pub function_id: String,
    /// The user the triggering event belongs to, if any.
    pub user_id: Option<String>,
    pub status: RunStatus,
}

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

/// Which run a write is about, as its updates name it, and the claim it was made
/// under: the fencing token that every write of the run's progress must match.
#[derive(Clone, Debug)]
pub(crate) struct RunRef {
    pub run_id: String,
    pub function_id: String,
    pub event_id: String,
    pub user_id: Option<String>,
    /// The run's `claims` count when this worker claimed it.
    pub claim: i32,
    /// The parent run that invoked it, told of its end.
    pub invoked_by: Option<String>,
}

impl RunRef {
    /// The run `run` names.
    pub(crate) fn of(run: &run::Model) -> Self {
        RunRef {
            run_id: run.id.clone(),
            function_id: run.function_id.clone(),
            event_id: run.event_id.clone(),
            user_id: run.user_id.clone(),
            claim: run.claims,
            invoked_by: run.invoked_by.clone(),
        }
    }

    /// The update that says this run is now `status`.
    pub(crate) fn update(&self, status: RunStatus) -> RunUpdate {
        RunUpdate {
            run_id: self.run_id.clone(),
            function_id: self.function_id.clone(),
            user_id: self.user_id.clone(),
            status,
        }
    }
}

/// One run's news: a step record, a move, or both.
pub(crate) struct Write {
    pub run: RunRef,
    pub step: Option<step::Model>,
    /// A wait to open (with its step record and the run's park).
    pub wait: Option<wait::Model>,
    pub transition: Option<Transition>,
    /// Told, after the commit, whether the run was still ours.
    pub ack: Option<oneshot::Sender<bool>>,
    /// Shared by every write of one invocation; set when one of them was given up, so
    /// that the writes queued after it are dropped too rather than committed without it.
    pub lost: Arc<AtomicBool>,
}

impl Write {
    /// The update this write publishes once committed, if it moves the run.
    pub(crate) fn update(&self) -> Option<RunUpdate> {
        self.transition
            .as_ref()
            .map(|t| self.run.update(t.status()))
    }
}

/// The runs a group commit found still ours: run id -> the claim that holds it now.
/// A write counts only if it was made under that claim.
#[derive(Debug, Default)]
pub(crate) struct Owned(pub HashMap<String, i32>);

impl Owned {
    /// Whether `write`'s claim still holds its run.
    pub(crate) fn has(&self, write: &Write) -> bool {
        self.0.get(&write.run.run_id) == Some(&write.run.claim)
    }
}
