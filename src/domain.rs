//! The vocabulary the server and the browser share: the states of runs and steps, what
//! the live stream tells the browser, and who is signed in. Compiled into both builds;
//! the only place where a state's stored name is written (besides the migrations).
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The path of the server-sent-events stream of run updates.
pub const LIVE_PATH: &str = "/api/live";

/// A state name that is not one of its kind's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownState(pub String);

/// Declares a state enum whose variants are stored (and serialized) by the given names;
/// on the server it is also a SeaORM column type, checked when read.
macro_rules! states {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "ssr", derive(sea_orm::DeriveValueType))]
        #[cfg_attr(feature = "ssr", sea_orm(value_type = "String"))]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every state, in the order of a life.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name stored in the database and shown on the page.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|state| state.as_str() == s)
                    .ok_or_else(|| UnknownState(format!("unknown {} {s:?}", stringify!($name))))
            }
        }
    };
}

states! {
    /// Where a run is in its life. Every move between states is one guarded UPDATE
    /// (`... WHERE status = <expected>`), so two workers can never both move a run.
    RunStatus {
        /// Waiting to start or to be retried at `due_at`. Entered from `send` (new run),
        /// from the completer (a step or the handler failed with attempts left) and from
        /// the rescuer (its worker's lease lapsed). Left when the dispatcher claims it.
        Queued = "queued",
        /// Claimed by `locked_by` until `lease_until`, renewed by heartbeats and by every
        /// recorded step. Entered by the dispatcher's claim (or, for a run its process's
        /// idle workers start at once, by its send); left through the
        /// completer (sleeping, queued, completed, failed), the rescuer, or a cancel.
        Running = "running",
        /// Parked by `step.sleep` until `due_at`; no worker holds it. Entered from the
        /// completer; left when the dispatcher claims it at its wake time, or by a cancel.
        Sleeping = "sleeping",
        /// The handler returned a value (in `output`). Final.
        Completed = "completed",
        /// A non-retriable error, or attempts spent (in `error`). Final.
        Failed = "failed",
        /// Cancelled through the API before it finished. Final.
        Cancelled = "cancelled",
    }
}

impl RunStatus {
    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// Whether a worker may claim the run once it is due.
    pub fn is_due_state(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Sleeping)
    }
}

states! {
    /// Where a step is. Written by the run's executor through the completer.
    StepStatus {
        /// A sleep whose wake time has not come.
        Sleeping = "sleeping",
        /// A wait for an event that has neither matched nor timed out.
        Waiting = "waiting",
        /// A `run` that failed and will be tried again.
        Retrying = "retrying",
        /// Done: a `run`'s output is saved, a sleep is over, a wait matched or timed out.
        Completed = "completed",
        /// A `run` that failed for good.
        Failed = "failed",
    }
}

states! {
    /// What a step does.
    StepKind {
        /// `step.run`: a memoized closure.
        Run = "run",
        /// `step.sleep` / `step.sleep_until`: a durable pause.
        Sleep = "sleep",
        /// `step.wait_for_event`: a durable pause until a matching event or a timeout.
        Wait = "wait",
        /// `step.send_event`: events sent once, their ids memoized.
        Send = "send",
        /// `step.invoke`: another function's run, started once and waited for.
        Invoke = "invoke",
    }
}

/// What the live stream tells the browser about one of its user's runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunNotice {
    pub run_id: String,
    pub function_id: String,
    pub status: RunStatus,
}

/// The signed-in user, as pages and server functions see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInUser {
    pub id: String,
    pub email: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for &status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        for &status in StepStatus::ALL {
            assert_eq!(status.as_str().parse::<StepStatus>(), Ok(status));
        }
        assert!("done".parse::<RunStatus>().is_err());
        assert!("sleep".parse::<StepKind>().is_ok());
    }
}
