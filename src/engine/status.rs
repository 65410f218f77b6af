//! The run state machine, written down once.
use std::fmt;
use std::str::FromStr;

/// Where a run is in its life. Every move between states is one guarded UPDATE
/// (`... WHERE status = <expected>`), so two workers can never both move a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Waiting to start or to be retried at `due_at`. Entered from `send` (new run),
    /// from the completer (a step or the handler failed with attempts left) and from
    /// the rescuer (its worker's lease lapsed). Left when the dispatcher claims it.
    Queued,
    /// Claimed by `locked_by` until `lease_until`, renewed by heartbeats and by every
    /// recorded step. Entered only by the dispatcher's claim; left through the
    /// completer (sleeping, queued, completed, failed), the rescuer, or a cancel.
    Running,
    /// Parked by `step.sleep` until `due_at`; no worker holds it. Entered from the
    /// completer; left when the dispatcher claims it at its wake time, or by a cancel.
    Sleeping,
    /// The handler returned a value (in `output`). Final.
    Completed,
    /// A non-retriable error, or attempts spent (in `error`). Final.
    Failed,
    /// Cancelled through the API before it finished. Final.
    Cancelled,
}

impl RunStatus {
    /// Every state, in the order of a run's life.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Sleeping,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// The name stored in `run.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Sleeping => "sleeping",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown run status {s:?}"))
    }
}
