//! Running one invocation of a claimed run: call the handler (a replay from the top)
//! and hand how it ended to the completer.
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;

use super::completer::Completer;
use super::entities::{run, step};
use super::error::FnError;
use super::event::Event;
use super::function::{Ctx, Registry};
use super::progress::{RunRef, Transition, Write};
use super::retry::{decide, Decision};
use super::runtime::Runtime;
use super::step::Step;

/// The ids of the runs this process is executing.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<Mutex<HashSet<String>>>);

impl InFlight {
    /// The set, even if a panicking task poisoned its lock (its data stays valid).
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ids now in flight.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }
}

/// Calls the run's handler once and records how it ended.
pub(crate) async fn execute(
    rt: Arc<Runtime>,
    registry: &Registry,
    completer: Completer,
    run: run::Model,
    event: Option<Event>,
    saved: Vec<step::Model>,
) {
    let lost = Arc::new(AtomicBool::new(false));
    let run_ref = RunRef::of(&run);
    let write = |transition: Transition| Write {
        run: run_ref.clone(),
        step: None,
        transition: Some(transition),
        ack: None,
        lost: lost.clone(),
    };
    let (Some(function), Some(event)) = (registry.get(&run.function_id), event) else {
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
            rt.clone(),
            completer.clone(),
            run_ref.clone(),
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
    let now = rt.clock.now_ms();
    let transition = match decide(&failure, attempts as u32, retries, now, &rt.config.backoff) {
        Decision::NonRetriable => Transition::Failed {
            error: failure.message().to_string(),
            attempts: Some(attempts),
        },
        Decision::Spent => Transition::Failed {
            error: format!("failed after {attempts} attempts: {failure}"),
            attempts: Some(attempts),
        },
        Decision::RetryAt(due_at) => Transition::Queued {
            due_at,
            attempts: Some(attempts),
            error: Some(failure.message().to_string()),
        },
    };
    completer.commit(write(transition)).await;
}
