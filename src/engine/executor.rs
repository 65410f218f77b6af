//! Running one invocation of a claimed run: call the handler (a replay from the top)
//! and hand how it ended to the completer. A run that cannot or must not run — its
//! event is unreadable, its function unknown here, its worker kept crashing, its time
//! is up — ends here too, alone, with the reason.
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;

use super::completer::Completer;
use super::entities::run;
use super::error::{storable, FnError};
use super::event::Event;
use super::function::{Ctx, Registry};
use super::notifier::{publish, Relay};
use super::progress::{RunRef, Transition, Write};
use super::retry::{decide, Decision};
use super::runtime::Runtime;
use super::step::{check_output_size, Step, TheRun};
use super::store;
use super::store::claim::Saved;

/// Calls the run's handler once and records how it ended. `event` is the run's event,
/// or why it cannot be had.
pub(crate) async fn execute(
    rt: Arc<Runtime>,
    registry: &Arc<Registry>,
    completer: Completer,
    run: run::Model,
    event: Result<Event, String>,
    saved: Saved,
) {
    let lost = Arc::new(AtomicBool::new(false));
    let run_ref = RunRef::of(&run);
    let write = |transition: Transition| Write {
        wait: None,
        run: run_ref.clone(),
        step: None,
        transition: Some(transition),
        ack: None,
        lost: lost.clone(),
    };
    let fail = |error: String| {
        write(Transition::Failed {
            error: storable(&error),
            attempts: None,
        })
    };
    let now = rt.clock.now_ms();
    let Some(function) = registry.get(&run.function_id) else {
        unknown_function(&rt, &run, &run_ref, &completer, fail).await;
        return;
    };
    let event = match event {
        Ok(event) => event,
        Err(reason) => {
            completer.commit(fail(reason)).await;
            return;
        }
    };
    if run.stalled_claims > rt.config.max_stalled_claims as i32 {
        let last = run
            .error
            .as_deref()
            .map(|e| format!("; the last error was: {e}"))
            .unwrap_or_default();
        let error = format!(
            "claimed {} times without recording any progress: its worker crashed, hung \
             past its lease or had its writes refused each time{last}",
            run.stalled_claims
        );
        completer.commit(fail(error)).await;
        return;
    }
    let limits = function.time_limits();
    let started_at = run.started_at.unwrap_or(now);
    if let Some(limit) = limits.start {
        let waited = started_at - run.created_at;
        if waited > millis(limit) {
            let error = format!(
                "did not start within {}: it waited {} ms",
                seconds(limit),
                waited
            );
            completer.commit(fail(error)).await;
            return;
        }
    }
    // The time left before the run must have finished, if it has a limit.
    let left = limits
        .finish
        .map(|limit| started_at.saturating_add(millis(limit)) - now);
    if let Some(left) = left.filter(|left| *left <= 0) {
        let over = -left;
        let limit = limits.finish.map(seconds).unwrap_or_default();
        let error = format!("did not finish within {limit} (over by {over} ms)");
        completer.commit(fail(error)).await;
        return;
    }

    let retries = function.retry_limit();
    let stopped = Arc::new(Notify::new());
    let events = if saved.batch.is_empty() {
        vec![event.clone()]
    } else {
        saved.batch.clone()
    };
    let ctx = Ctx {
        step: Step::new(
            rt.clone(),
            completer.clone(),
            TheRun {
                run: run_ref.clone(),
                event: event.clone(),
                saved,
            },
            function.step_rules(),
            registry.clone(),
            lost.clone(),
            stopped.clone(),
        ),
        event,
        events,
        run_id: run.id.clone(),
        state: registry.state.clone(),
    };
    let steps = ctx.step.clone();
    let call = AssertUnwindSafe(function.call(ctx)).catch_unwind();
    // A step that parks the run (or finds it no longer ours) never resolves; it rings
    // `stopped` instead, and the handler is dropped where it stands.
    let handler = async {
        tokio::select! {
            outcome = call => Some(outcome),
            _ = stopped.notified() => None,
        }
    };
    let outcome = match left {
        None => handler.await,
        Some(left) => {
            let left = Duration::from_millis(left as u64);
            match tokio::time::timeout(left, handler).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let limit = limits.finish.map(seconds).unwrap_or_default();
                    completer
                        .commit(fail(format!("did not finish within {limit}")))
                        .await;
                    return;
                }
            }
        }
    };
    let failure = match outcome {
        Some(Ok(Ok(output))) => {
            let output = serde_json::to_string(&output).unwrap_or_else(|_| "null".into());
            let transition = match check_output_size(output.len(), rt.config.max_output_bytes) {
                Ok(()) => Transition::Completed { output },
                Err(err) => Transition::Failed {
                    error: storable(err.message()),
                    attempts: None,
                },
            };
            completer.commit(write(transition)).await;
            return;
        }
        None => return, // parked or no longer ours: already recorded
        Some(Ok(Err(err))) => err,
        Some(Err(panic)) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            FnError::Failed(format!("the handler panicked: {message}"))
        }
    };
    if steps.gave(&failure) {
        // A step failed for good and the handler passed its error on: the run fails
        // with it, and the handler's own attempts are not counted.
        let error = storable(failure.message());
        completer
            .commit(write(Transition::Failed {
                error,
                attempts: None,
            }))
            .await;
        return;
    }
    // The handler failed outside any step: the whole invocation is retried.
    let attempts = run.attempts + 1;
    let now = rt.clock.now_ms();
    let message = storable(failure.message());
    let transition = match decide(&failure, attempts as u32, retries, now, &rt.config.backoff) {
        Decision::NonRetriable => Transition::Failed {
            error: message,
            attempts: Some(attempts),
        },
        Decision::Spent => Transition::Failed {
            error: storable(&format!("failed after {attempts} attempts: {failure}")),
            attempts: Some(attempts),
        },
        Decision::RetryAt(due_at) => Transition::Queued {
            due_at,
            attempts: Some(attempts),
            error: Some(message),
        },
    };
    completer.commit(write(transition)).await;
}

/// A run of a function this process does not have: during a rolling deploy another
/// process may have it, so the run goes back to the queue for a while (its claim not
/// counted as a stall); after the grace period it fails with the reason.
async fn unknown_function(
    rt: &Arc<Runtime>,
    run: &run::Model,
    run_ref: &RunRef,
    completer: &Completer,
    fail: impl Fn(String) -> Write,
) {
    let now = rt.clock.now_ms();
    let grace = rt.config.unknown_function_grace;
    if now - run.created_at >= millis(grace) {
        let error = format!(
            "no process that claimed it within {} has a function {:?}",
            seconds(grace),
            run.function_id
        );
        completer.commit(fail(error)).await;
        return;
    }
    let reason = format!(
        "waiting for a process that has the function {:?}",
        run.function_id
    );
    let due_at = now + millis(rt.config.poll);
    match store::control::hand_back(rt, run_ref, due_at, &reason, false).await {
        Ok(updates) => publish(rt, updates, Relay::Now(&rt.db)).await,
        Err(err) => {
            tracing::warn!(error = %err, "could not hand back a run of an unknown function")
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}
