//! Steps: memoized `run`s and durable `sleep`s, replayed from saved results on resume.
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use super::completer::Completer;
use super::entities::step;
use super::error::FnError;
use super::progress::{RunRef, Transition, Write};
use super::retry::{decide, Decision};
use super::runtime::Runtime;
use crate::domain::{StepKind, StepStatus};

/// The step tools of one run. Cheap to clone.
#[derive(Clone)]
pub struct Step {
    run: Arc<RunSteps>,
}

struct RunSteps {
    rt: Arc<Runtime>,
    completer: Completer,
    run: RunRef,
    retries: u32,
    state: Mutex<Replay>,
    /// See [`Write::lost`].
    lost: Arc<AtomicBool>,
    /// The commit of the last completed step, not yet confirmed: the next step waits
    /// for it, so that no step starts unless the run is still ours, while a run's last
    /// step and its end are committed together.
    pending: Mutex<Option<oneshot::Receiver<bool>>>,
}

/// What the handler has seen so far in this invocation, and what earlier ones saved.
struct Replay {
    /// Saved steps by unique id.
    saved: HashMap<String, step::Model>,
    /// How often each id was used in this invocation (for the `:n` suffix).
    used: HashMap<String, u32>,
    /// Steps met so far in this invocation, which gives each its position.
    met: i32,
}

impl Step {
    pub(crate) fn new(
        rt: Arc<Runtime>,
        completer: Completer,
        run: RunRef,
        retries: u32,
        saved: Vec<step::Model>,
        lost: Arc<AtomicBool>,
    ) -> Self {
        Step {
            run: Arc::new(RunSteps {
                rt,
                completer,
                run,
                retries,
                state: Mutex::new(Replay {
                    saved: saved.into_iter().map(|s| (s.step_id.clone(), s)).collect(),
                    used: HashMap::new(),
                    met: 0,
                }),
                lost,
                pending: Mutex::new(None),
            }),
        }
    }

    /// Runs `f` once for this run and saves its output; on replay, returns the saved
    /// output without calling `f`. A failure is retried with backoff (the run is parked
    /// in between) until the function's retries are spent.
    pub async fn run<T, F, Fut>(&self, id: &str, f: F) -> Result<T, FnError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, FnError>>,
    {
        if !self.settle().await {
            return Err(FnError::Interrupted);
        }
        let (key, position, saved) = self.meet(id);
        if let Some(saved) = &saved {
            match saved.status {
                StepStatus::Completed => {
                    let output = saved.output.as_deref().unwrap_or("null");
                    return Ok(serde_json::from_str(output)?);
                }
                StepStatus::Failed => {
                    return Err(FnError::NonRetriable(
                        saved.error.clone().unwrap_or_default(),
                    ))
                }
                StepStatus::Retrying | StepStatus::Sleeping => {}
            }
        }
        let clock = &self.run.rt.clock;
        let attempts = saved.as_ref().map_or(0, |s| s.attempts) + 1;
        let started_at = saved
            .as_ref()
            .map_or_else(|| clock.now_ms(), |s| s.started_at);
        let mut errors: Vec<String> = saved
            .as_ref()
            .and_then(|s| serde_json::from_str(&s.errors).ok())
            .unwrap_or_default();

        let result = f().await;
        let now = clock.now_ms();
        let mut row = step::Model {
            run_id: self.run.run.run_id.clone(),
            step_id: key.clone(),
            name: id.to_string(),
            kind: StepKind::Run,
            status: StepStatus::Completed,
            position,
            attempts,
            output: None,
            error: None,
            errors: String::new(),
            started_at,
            ended_at: Some(now),
            wake_at: None,
        };
        match result {
            Ok(value) => {
                let output = serde_json::to_string(&value)?;
                row.output = Some(output);
                row.errors = serde_json::to_string(&errors)?;
                let ack = self
                    .run
                    .completer
                    .commit_later(self.write(row.clone(), None));
                *lock(&self.run.pending) = Some(ack);
                self.remember(row);
                Ok(value)
            }
            Err(FnError::Interrupted) => Err(FnError::Interrupted),
            Err(err) => {
                let message = err.message().to_string();
                errors.push(message.clone());
                row.errors = serde_json::to_string(&errors)?;
                row.error = Some(message.clone());
                let rt = &self.run.rt;
                let decision = decide(
                    &err,
                    attempts as u32,
                    self.run.retries,
                    now,
                    &rt.config.backoff,
                );
                let transition = match decision {
                    Decision::NonRetriable => Transition::Failed {
                        error: format!("step {id:?} failed: {message}"),
                        attempts: None,
                    },
                    Decision::Spent => Transition::Failed {
                        error: format!("step {id:?} failed after {attempts} attempts: {message}"),
                        attempts: None,
                    },
                    Decision::RetryAt(due_at) => Transition::Queued {
                        due_at,
                        attempts: None,
                        error: None,
                    },
                };
                if matches!(transition, Transition::Failed { .. }) {
                    row.status = StepStatus::Failed;
                } else {
                    row.status = StepStatus::Retrying;
                    row.ended_at = None;
                }
                self.record(row, Some(transition)).await;
                Err(FnError::Interrupted)
            }
        }
    }

    /// Parks the run for `duration`; no worker is held while it sleeps.
    pub async fn sleep(&self, id: &str, duration: Duration) -> Result<(), FnError> {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        self.sleep_to(id, |now| now.saturating_add(millis)).await
    }

    /// Parks the run until `time`.
    pub async fn sleep_until(
        &self,
        id: &str,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), FnError> {
        self.sleep_to(id, |_| time.timestamp_millis()).await
    }

    /// `wake_at_if_new` turns the step's start time into its wake time, so a
    /// `sleep(1s)` is recorded as exactly one second long.
    async fn sleep_to(
        &self,
        id: &str,
        wake_at_if_new: impl FnOnce(i64) -> i64,
    ) -> Result<(), FnError> {
        if !self.settle().await {
            return Err(FnError::Interrupted);
        }
        let (key, position, saved) = self.meet(id);
        let now = self.run.rt.clock.now_ms();
        if saved
            .as_ref()
            .is_some_and(|s| s.status == StepStatus::Completed)
        {
            return Ok(());
        }
        let started_at = saved.as_ref().map_or(now, |s| s.started_at);
        let wake_at = saved
            .as_ref()
            .and_then(|s| s.wake_at)
            .unwrap_or_else(|| wake_at_if_new(started_at));
        let mut row = step::Model {
            run_id: self.run.run.run_id.clone(),
            step_id: key,
            name: id.to_string(),
            kind: StepKind::Sleep,
            status: StepStatus::Sleeping,
            position,
            attempts: 1,
            output: None,
            error: None,
            errors: "[]".into(),
            started_at,
            ended_at: None,
            wake_at: Some(wake_at),
        };
        if wake_at <= now {
            // Awake: the run goes on at once. Recording the end of the sleep need not
            // hold it up; if it is lost, the next replay finds the sleep over again.
            row.status = StepStatus::Completed;
            row.ended_at = Some(wake_at.max(started_at));
            self.run.completer.send(self.write(row.clone(), None));
            self.remember(row);
            return Ok(());
        }
        self.record(row, Some(Transition::Sleeping { due_at: wake_at }))
            .await;
        Err(FnError::Interrupted)
    }

    /// The unique id, position and saved record of the next step named `id`.
    fn meet(&self, id: &str) -> (String, i32, Option<step::Model>) {
        let mut state = lock(&self.run.state);
        let used = state.used.entry(id.to_string()).or_insert(0);
        let key = if *used == 0 {
            id.to_string()
        } else {
            format!("{id}:{used}")
        };
        *used += 1;
        let position = state.met;
        state.met += 1;
        let saved = state.saved.get(&key).cloned();
        (key, position, saved)
    }

    fn remember(&self, row: step::Model) {
        let mut state = lock(&self.run.state);
        state.saved.insert(row.step_id.clone(), row);
    }

    fn write(&self, row: step::Model, transition: Option<Transition>) -> Write {
        Write {
            run: self.run.run.clone(),
            step: Some(row),
            transition,
            ack: None,
            lost: self.run.lost.clone(),
        }
    }

    /// Waits for the last step's commit: false if the run is no longer ours.
    async fn settle(&self) -> bool {
        let pending = lock(&self.run.pending).take();
        match pending {
            Some(ack) => ack.await.unwrap_or(false),
            None => true,
        }
    }

    /// Commits `row` (and the run's move, if any); false if the run is no longer ours.
    async fn record(&self, row: step::Model, transition: Option<Transition>) -> bool {
        self.run.completer.commit(self.write(row, transition)).await
    }
}

/// Locks `mutex`, even if a panicking handler poisoned it (its data stays valid).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
