//! Steps: memoized `run`s and durable `sleep`s, replayed from saved results on resume.
//!
//! A step's key (its id, with `:n` added when the id was used before in this run) is
//! given when the step is *called*, before anything is awaited, so keys follow the
//! order in which the handler calls its steps — never the order in which they finish.
//! Steps called together (`futures::join!(step.run("a", …), step.run("b", …))`) run at
//! once and replay correctly.
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;
use tracing::Instrument;

use super::completer::Completer;
use super::entities::{step, wait};
use super::error::{storable, FnError};
use super::event::{not_reserved, prepare, Event, NewEvent, FINISHED, INVOKED};
use super::metrics;
use super::progress::{RunRef, Transition, Write};
use super::retry::{decide, Decision};
use super::runtime::Runtime;
use super::store;
use super::store::claim::Saved;
use crate::domain::{StepKind, StepStatus};

/// The longest step id a handler may use.
pub const MAX_STEP_ID: usize = 256;

/// The most events one `send_event` step sends.
pub const MAX_SENT_EVENTS: usize = 1000;

/// What steps need of the registry to send events: the functions an event name
/// triggers, and whether some function waits for it.
pub(crate) trait Routes: Send + Sync {
    fn route(&self, event: &NewEvent) -> std::borrow::Cow<'_, [String]>;
    fn is_awaited(&self, event_name: &str) -> bool;
    /// Whether some function triggers on or waits for exactly this name.
    fn knows(&self, event_name: &str) -> bool;
    fn has_function(&self, function_id: &str) -> bool;
}

/// The run the steps are for: which (with its claim), its event, and what earlier
/// invocations saved.
pub(crate) struct TheRun {
    pub run: RunRef,
    pub event: Event,
    pub saved: Saved,
}

/// What a function's options say about its steps.
pub(crate) struct StepRules {
    pub retries: u32,
    pub step_timeout: Option<Duration>,
    pub awaits: Vec<String>,
}

/// The step tools of one run. Cheap to clone.
#[derive(Clone)]
pub struct Step {
    run: Arc<RunSteps>,
}

/// Whether the last step's record committed while the run was still ours.
type Ack = Shared<BoxFuture<'static, bool>>;

struct RunSteps {
    rt: Arc<Runtime>,
    completer: Completer,
    run: RunRef,
    /// The run's event: what waits match against.
    event: Event,
    /// Where sent events go.
    routes: Arc<dyn Routes>,
    retries: u32,
    /// How long one attempt of a `run` step may take, unless the call says otherwise.
    step_timeout: Option<Duration>,
    /// The event names the function declared it may wait for.
    awaits: Vec<String>,
    state: Mutex<Replay>,
    /// See [`Write::lost`].
    lost: Arc<AtomicBool>,
    /// Rung when a step has stopped the run (see [`Step::stop`]).
    stopped: Arc<Notify>,
    /// The final failures steps gave the handler, so that the executor can tell one
    /// passed on from a failure of the handler itself.
    failures: Mutex<Vec<FnError>>,
    /// The commit of the last completed step, not yet confirmed: the next step waits
    /// for it, so that no step starts unless the run is still ours, while a run's last
    /// step and its end are committed together.
    pending: Mutex<Option<Ack>>,
}

/// What the handler has seen so far in this invocation, and what earlier ones saved.
struct Replay {
    /// Saved steps by key.
    saved: HashMap<String, step::Model>,
    /// The waits as the claim found them, by step key, and the events that ended them.
    waits: HashMap<String, wait::Model>,
    wait_events: HashMap<String, Event>,
    /// How often each id was called in this invocation (for the `:n` suffix).
    calls: HashMap<String, u32>,
    /// Every key given out in this invocation: no two steps share one.
    keys: HashSet<String>,
    /// Steps met so far in this invocation, which gives each its position.
    met: i32,
}

/// A step as the handler called it: its key, its place, and what was saved for it.
struct Met {
    id: String,
    key: String,
    position: i32,
    saved: Option<step::Model>,
}

impl Step {
    pub(crate) fn new(
        rt: Arc<Runtime>,
        completer: Completer,
        of: TheRun,
        rules: StepRules,
        routes: Arc<dyn Routes>,
        lost: Arc<AtomicBool>,
        stopped: Arc<Notify>,
    ) -> Self {
        let TheRun { run, event, saved } = of;
        Step {
            run: Arc::new(RunSteps {
                rt,
                completer,
                run,
                event,
                routes,
                retries: rules.retries,
                step_timeout: rules.step_timeout,
                awaits: rules.awaits,
                state: Mutex::new(Replay {
                    saved: saved
                        .steps
                        .into_iter()
                        .map(|s| (s.step_id.clone(), s))
                        .collect(),
                    waits: saved.waits,
                    wait_events: saved.wait_events,
                    calls: HashMap::new(),
                    keys: HashSet::new(),
                    met: 0,
                }),
                lost,
                stopped,
                failures: Mutex::new(Vec::new()),
                pending: Mutex::new(None),
            }),
        }
    }

    /// Runs `f` once for this run and saves its output; on replay, returns the saved
    /// output without calling `f`. A failure is retried with backoff (the run is parked
    /// in between) until the function's retries are spent.
    pub fn run<'a, T, F, Fut>(
        &'a self,
        id: &str,
        f: F,
    ) -> impl Future<Output = Result<T, FnError>> + 'a
    where
        T: Serialize + DeserializeOwned + 'a,
        F: FnOnce() -> Fut + 'a,
        Fut: Future<Output = Result<T, FnError>> + 'a,
    {
        self.run_keyed(id, None, move |_| f())
    }

    /// Like [`Step::run`], but an attempt that takes longer than `timeout` fails (and
    /// is retried like any failure).
    pub fn run_with_timeout<'a, T, F, Fut>(
        &'a self,
        id: &str,
        timeout: Duration,
        f: F,
    ) -> impl Future<Output = Result<T, FnError>> + 'a
    where
        T: Serialize + DeserializeOwned + 'a,
        F: FnOnce() -> Fut + 'a,
        Fut: Future<Output = Result<T, FnError>> + 'a,
    {
        self.run_keyed(id, Some(timeout), move |_| f())
    }

    /// Like [`Step::run`], giving `f` the step's key: stable across replays and retries
    /// and unique in the database (`<run id>/<step key>`), so that an outside effect can
    /// use it as an idempotency key and happen once even if `f` runs again.
    pub fn run_keyed<'a, T, F, Fut>(
        &'a self,
        id: &str,
        timeout: Option<Duration>,
        f: F,
    ) -> impl Future<Output = Result<T, FnError>> + 'a
    where
        T: Serialize + DeserializeOwned + 'a,
        F: FnOnce(String) -> Fut + 'a,
        Fut: Future<Output = Result<T, FnError>> + 'a,
    {
        // The key is given now, at the call, not when the future is first polled.
        let met = self.meet(id);
        async move {
            let met = met?;
            if !self.settle().await {
                return self.stop().await;
            }
            self.execute(met, StepKind::Run, timeout.or(self.run.step_timeout), f)
                .await
        }
    }

    async fn execute<T, F, Fut>(
        &self,
        met: Met,
        kind: StepKind,
        timeout: Option<Duration>,
        f: F,
    ) -> Result<T, FnError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<T, FnError>>,
    {
        let Met {
            id,
            key,
            position,
            saved,
        } = met;
        if let Some(saved) = &saved {
            match saved.status {
                StepStatus::Completed => {
                    let output = saved.output.as_deref().unwrap_or("null");
                    return Ok(serde_json::from_str(output)?);
                }
                StepStatus::Failed => {
                    let message = saved.error.as_deref().unwrap_or_default();
                    return Err(self.failure(step_failure(&id, saved.attempts, message)));
                }
                StepStatus::Retrying | StepStatus::Sleeping | StepStatus::Waiting => {}
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

        let span =
            tracing::info_span!("step", step = %key, kind = kind.as_str(), attempt = attempts);
        let attempt = f(format!("{}/{key}", self.run.run.run_id)).instrument(span);
        let began = std::time::Instant::now();
        let result = match timeout {
            None => attempt.await,
            Some(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(result) => result,
                Err(_) => Err(FnError::failed(format!(
                    "timed out after {}",
                    humanize(limit)
                ))),
            },
        };
        metrics::step_attempt(
            &self.run.run.function_id,
            kind,
            began.elapsed(),
            result.is_err(),
        );
        let now = clock.now_ms();
        let mut row = step::Model {
            run_id: self.run.run.run_id.clone(),
            step_id: key,
            name: id.clone(),
            kind,
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
        let max_output = self.run.rt.config.max_output_bytes;
        let result = result.and_then(|value| {
            let output = serde_json::to_string(&value)?;
            check_output_size(output.len(), max_output)?;
            Ok((value, output))
        });
        match result {
            Ok((value, output)) => {
                row.output = Some(output);
                row.errors = serde_json::to_string(&errors)?;
                self.commit_and_go_on(row);
                Ok(value)
            }
            Err(err) => {
                let message = storable(err.message());
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
                match decision {
                    Decision::NonRetriable | Decision::Spent => {
                        // The step has failed for good: the handler gets the error and
                        // may handle it; if it passes it on, the run fails with it.
                        row.status = StepStatus::Failed;
                        self.commit_and_go_on(row);
                        Err(self.failure(step_failure(&id, attempts, &message)))
                    }
                    Decision::RetryAt(due_at) => {
                        row.status = StepStatus::Retrying;
                        row.ended_at = None;
                        let transition = Transition::Queued {
                            due_at,
                            attempts: None,
                            error: None,
                        };
                        self.record(row, Some(transition)).await;
                        self.stop().await
                    }
                }
            }
        }
    }

    /// Sends `events` (at most [`MAX_SENT_EVENTS`]) for the run's user, once: returns
    /// their ids, and on replay the same ids without sending anything. Each event's
    /// idempotency key is derived from the step's key (any key given is replaced), so a
    /// send repeated after a crash before the step's record stores nothing new.
    pub fn send_event<'a>(
        &'a self,
        id: &str,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<Vec<String>, FnError>> + 'a {
        let met = self.meet(id);
        async move {
            let met = met?;
            if !self.settle().await {
                return self.stop().await;
            }
            self.execute(met, StepKind::Send, None, move |key| {
                self.deliver(key, events)
            })
            .await
        }
    }

    async fn deliver(&self, key: String, events: Vec<NewEvent>) -> Result<Vec<String>, FnError> {
        if events.len() > MAX_SENT_EVENTS {
            return Err(FnError::non_retriable(format!(
                "a step sends at most {MAX_SENT_EVENTS} events, not {}",
                events.len()
            )));
        }
        for event in &events {
            not_reserved(&event.name).map_err(|e| FnError::non_retriable(e.to_string()))?;
        }
        let user_id = self.run.event.user_id.clone();
        let stem = digest(&key);
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, mut event)| {
                event.user_id = user_id.clone();
                event.idempotency_key = Some(format!("step:{stem}:{i}"));
                event
            })
            .collect();
        let rt = &self.run.rt;
        let prepared = prepare(events, rt.config.max_event_bytes)
            .map_err(|e| FnError::non_retriable(e.to_string()))?;
        let routes = &self.run.routes;
        metrics::events_received(&prepared, |name| routes.knows(name));
        let awaited = prepared.iter().any(|p| routes.is_awaited(&p.event.name));
        let receipts = store::send::send_many(
            rt,
            &rt.db,
            prepared,
            |p| routes.route(&p.event),
            |name| routes.is_awaited(name),
            false,
        )
        .await
        .map_err(|e| FnError::failed(e.to_string()))?;
        rt.wake.notify_one();
        if awaited {
            rt.match_wake.notify_one();
        }
        Ok(receipts.into_iter().map(|r| r.event_id).collect())
    }

    /// Parks the run for `duration`; no worker is held while it sleeps.
    pub fn sleep<'a>(
        &'a self,
        id: &str,
        duration: Duration,
    ) -> impl Future<Output = Result<(), FnError>> + 'a {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        self.sleep_to(self.meet(id), move |now| now.saturating_add(millis))
    }

    /// Parks the run until `time`.
    pub fn sleep_until<'a>(
        &'a self,
        id: &str,
        time: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<(), FnError>> + 'a {
        self.sleep_to(self.meet(id), move |_| time.timestamp_millis())
    }

    /// `wake_at_if_new` turns the step's start time into its wake time, so a
    /// `sleep(1s)` is recorded as exactly one second long.
    async fn sleep_to(
        &self,
        met: Result<Met, FnError>,
        wake_at_if_new: impl FnOnce(i64) -> i64,
    ) -> Result<(), FnError> {
        let Met {
            id,
            key,
            position,
            saved,
        } = met?;
        if !self.settle().await {
            return self.stop().await;
        }
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
            name: id,
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
        self.stop().await
    }

    /// Parks the run until an event named as `wait` says arrives for the run's user and
    /// matches, or until the wait times out: `Some(event)` or `None`. No worker is held
    /// meanwhile. Each event ends a run's wait at most once: two waits of one run never
    /// get the same event. The function must declare the event name
    /// ([`super::Function::waits_for`]).
    pub fn wait_for_event<'a>(
        &'a self,
        id: &str,
        wait: WaitFor,
    ) -> impl Future<Output = Result<Option<Event>, FnError>> + 'a {
        let met = self.meet(id);
        async move {
            let met = met?;
            if !self.settle().await {
                return self.stop().await;
            }
            self.wait(met, wait).await
        }
    }

    async fn wait(&self, met: Met, opts: WaitFor) -> Result<Option<Event>, FnError> {
        let Met {
            id,
            key,
            position,
            saved,
        } = met;
        let now = self.run.rt.clock.now_ms();
        let mut row = match saved {
            Some(saved) if saved.status == StepStatus::Completed => return saved_output(&saved),
            Some(saved) => saved,
            None => {
                // The first meeting: open the wait and park the run in one commit.
                let (wait, row) = self.open_wait(&opts, id, key, position, now)?;
                return self.park_on(wait, row).await;
            }
        };
        let (event, ended_at) = self.await_end(&id, &row).await?;
        row.status = StepStatus::Completed;
        row.ended_at = Some(ended_at);
        row.output = Some(serde_json::to_string(&event)?);
        // The wait's row already says how it ended, so the run goes on at once: if this
        // record is lost, the next replay reads the same end from the wait again.
        self.run.completer.send(self.write(row.clone(), None));
        self.remember(row);
        Ok(event)
    }

    /// Records `wait` with its step's `row` and parks the run until the wait expires
    /// (or an event ends it), then looks back for an event already there.
    async fn park_on<T>(&self, wait: wait::Model, row: step::Model) -> Result<T, FnError> {
        let due_at = wait.expires_at;
        let mut write = self.write(row, Some(Transition::Sleeping { due_at }));
        write.wait = Some(wait.clone());
        if self.run.completer.commit(write).await {
            self.look_back(&wait).await;
        }
        self.stop().await
    }

    /// How the wait of a waiting step `row` ended — the event (or `None`: timed out) and
    /// when — or, if it has not, parks the run on it again (and never returns).
    async fn await_end(
        &self,
        id: &str,
        row: &step::Model,
    ) -> Result<(Option<Event>, i64), FnError> {
        let rt = &self.run.rt;
        let run_id = self.run.run.run_id.clone();
        let now = rt.clock.now_ms();
        // The wait as the claim found it; if it was still open then, ask again now.
        let preloaded = lock(&self.run.state).waits.remove(&row.step_id);
        let mut wait = match preloaded.filter(|w| w.status != store::wait::OPEN) {
            Some(wait) => Some(wait),
            None => store::wait::get(&rt.db, &run_id, &row.step_id).await?,
        };
        let expired = wait
            .as_ref()
            .is_some_and(|w| w.status == store::wait::OPEN && now >= w.expires_at);
        if expired {
            // Time it out, unless an event has ended it just now; then read how it ended.
            store::wait::time_out(&rt.db, &run_id, &row.step_id, now).await?;
            wait = store::wait::get(&rt.db, &run_id, &row.step_id).await?;
        }
        let Some(wait) = wait else {
            return Err(FnError::non_retriable(format!(
                "the wait of step {id:?} is missing"
            )));
        };
        let ended_at = wait.ended_at.unwrap_or(now);
        match wait.status.as_str() {
            store::wait::MATCHED => {
                let event_id = wait.event_id.as_deref().unwrap_or_default();
                let preloaded = lock(&self.run.state).wait_events.remove(event_id);
                let event = match preloaded {
                    Some(event) => Some(event),
                    None => store::wait::event(&rt.db, event_id).await?,
                };
                let event = event.ok_or_else(|| {
                    FnError::non_retriable(format!(
                        "the event {event_id} that ended the wait is gone"
                    ))
                })?;
                Ok((Some(event), ended_at))
            }
            store::wait::OPEN => {
                // Woken early (another step of the run was due): park again.
                let due_at = wait.expires_at;
                if self
                    .record(row.clone(), Some(Transition::Sleeping { due_at }))
                    .await
                {
                    self.look_back(&wait).await;
                }
                self.stop().await
            }
            _ => Ok((None, ended_at)),
        }
    }

    /// Starts a run of `function_id` with `data` as its event's payload, for the run's
    /// user, and waits up to `timeout` (at most [`MAX_WAIT`]) for its end: its output,
    /// or its error as the step's failure (which the handler may handle). The child is
    /// started once (a replay finds the same child), and its end is reported to this
    /// run in the commit that ends it, so a crash between the two loses nothing.
    pub fn invoke<'a>(
        &'a self,
        id: &str,
        function_id: &str,
        data: serde_json::Value,
        timeout: Duration,
    ) -> impl Future<Output = Result<serde_json::Value, FnError>> + 'a {
        let met = self.meet(id);
        let function_id = function_id.to_string();
        async move {
            let met = met?;
            if !self.settle().await {
                return self.stop().await;
            }
            self.call(met, function_id, data, timeout).await
        }
    }

    async fn call(
        &self,
        met: Met,
        function_id: String,
        data: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, FnError> {
        let Met {
            id,
            key,
            position,
            saved,
        } = met;
        let now = self.run.rt.clock.now_ms();
        let mut row = match saved {
            Some(saved) if saved.status == StepStatus::Completed => return saved_output(&saved),
            Some(saved) if saved.status == StepStatus::Failed => {
                let message = saved.error.as_deref().unwrap_or_default();
                return Err(self.failure(step_failure(&id, saved.attempts, message)));
            }
            Some(saved) => saved,
            None => {
                let child = Child {
                    function_id: &function_id,
                    data,
                    timeout,
                };
                let (wait, row) = self.start_child(&id, key, position, child, now).await?;
                return self.park_on(wait, row).await;
            }
        };
        let (end, ended_at) = self.await_end(&id, &row).await?;
        row.ended_at = Some(ended_at);
        let outcome = match end {
            None => Err(format!(
                "the invoked run of {function_id:?} did not finish within {}",
                humanize(timeout)
            )),
            Some(end) => match end.data["status"].as_str() {
                Some("completed") => Ok(end.data["output"].clone()),
                status => Err(format!(
                    "the invoked run of {function_id:?} {}: {}",
                    status.unwrap_or("ended"),
                    end.data["error"].as_str().unwrap_or("no reason given")
                )),
            },
        };
        match outcome {
            Ok(output) => {
                row.status = StepStatus::Completed;
                row.output = Some(serde_json::to_string(&output)?);
                self.run.completer.send(self.write(row.clone(), None));
                self.remember(row);
                Ok(output)
            }
            Err(message) => {
                let message = storable(&message);
                row.status = StepStatus::Failed;
                row.error = Some(message.clone());
                row.errors = serde_json::to_string(&[&message])?;
                self.commit_and_go_on(row);
                Err(self.failure(step_failure(&id, 1, &message)))
            }
        }
    }

    /// Starts the child run of an `invoke` step (again, if an earlier attempt started it
    /// but its record was lost: the idempotency key finds the same child) and builds the
    /// wait for its end.
    async fn start_child(
        &self,
        id: &str,
        key: String,
        position: i32,
        child: Child<'_>,
        now: i64,
    ) -> Result<(wait::Model, step::Model), FnError> {
        let function_id = child.function_id;
        if !self.run.routes.has_function(function_id) {
            return Err(FnError::non_retriable(format!(
                "step {id:?} invokes {function_id:?}, which is not a registered function"
            )));
        }
        if child.timeout > MAX_WAIT || child.timeout.is_zero() {
            return Err(FnError::non_retriable(format!(
                "step {id:?}: an invoke's timeout must be between 1 ms and 365 days, not {}",
                humanize(child.timeout)
            )));
        }
        let rt = &self.run.rt;
        let run_id = &self.run.run.run_id;
        let mut event = NewEvent::new(INVOKED, child.data);
        event.user_id = self.run.event.user_id.clone();
        event.idempotency_key = Some(format!("invoke:{}", digest(&format!("{run_id}/{key}"))));
        let prepared = prepare(vec![event], rt.config.max_event_bytes)
            .map_err(|e| FnError::non_retriable(format!("step {id:?}: {e}")))?;
        let child_id = store::send::start_child(rt, prepared, function_id, run_id)
            .await
            .map_err(|e| FnError::failed(e.to_string()))?;
        rt.wake.notify_one();
        let expires_at = now.saturating_add(millis(child.timeout));
        let wait = wait::Model {
            run_id: run_id.clone(),
            step_id: key.clone(),
            user_key: self.run.event.user_id.clone().unwrap_or_default(),
            event_name: FINISHED.into(),
            match_key: Some(store::wait::match_key(
                "data.run_id",
                &serde_json::Value::String(child_id.clone()).to_string(),
            )),
            condition: None,
            window_start: now,
            expires_at,
            status: store::wait::OPEN.into(),
            event_id: None,
            created_at: now,
            ended_at: None,
        };
        let row = step::Model {
            run_id: run_id.clone(),
            step_id: key,
            name: id.to_string(),
            kind: StepKind::Invoke,
            status: StepStatus::Waiting,
            position,
            attempts: 1,
            output: Some(serde_json::json!({ "run_id": child_id }).to_string()),
            error: None,
            errors: "[]".into(),
            started_at: now,
            ended_at: None,
            wake_at: Some(expires_at),
        };
        Ok((wait, row))
    }

    /// Checks a new wait's options and builds its row and its step's record.
    fn open_wait(
        &self,
        opts: &WaitFor,
        id: String,
        key: String,
        position: i32,
        now: i64,
    ) -> Result<(wait::Model, step::Model), FnError> {
        if !self.run.awaits.contains(&opts.event) {
            return Err(FnError::non_retriable(format!(
                "step {id:?} waits for {:?}, which the function does not declare: add .waits_for({:?}) to it",
                opts.event, opts.event
            )));
        }
        if opts.timeout > MAX_WAIT || opts.timeout.is_zero() {
            return Err(FnError::non_retriable(format!(
                "step {id:?}: a wait's timeout must be between 1 ms and 365 days, not {}",
                humanize(opts.timeout)
            )));
        }
        let max_lookback = self.run.rt.config.max_lookback;
        if opts.lookback > max_lookback {
            return Err(FnError::non_retriable(format!(
                "step {id:?}: a wait may look back at most {} (EngineConfig::max_lookback), not {}",
                humanize(max_lookback),
                humanize(opts.lookback)
            )));
        }
        let match_key = match &opts.matching {
            None => None,
            Some(field) => {
                let value = store::wait::field_value(&self.run.event, field).ok_or_else(|| {
                    FnError::non_retriable(format!(
                        "step {id:?} matches on {field:?}, but the run's event has no string, number or bool there"
                    ))
                })?;
                Some(store::wait::match_key(field, &value))
            }
        };
        if let Some(condition) = &opts.condition {
            store::wait::check_condition(condition).map_err(|e| {
                FnError::non_retriable(format!(
                    "step {id:?}: the condition {condition:?} is not valid CEL: {e}"
                ))
            })?;
        }
        let expires_at = now.saturating_add(millis(opts.timeout));
        let wait = wait::Model {
            run_id: self.run.run.run_id.clone(),
            step_id: key.clone(),
            user_key: self.run.event.user_id.clone().unwrap_or_default(),
            event_name: opts.event.clone(),
            match_key,
            condition: opts.condition.clone(),
            window_start: now - millis(opts.lookback),
            expires_at,
            status: store::wait::OPEN.into(),
            event_id: None,
            created_at: now,
            ended_at: None,
        };
        let row = step::Model {
            run_id: self.run.run.run_id.clone(),
            step_id: key,
            name: id,
            kind: StepKind::Wait,
            status: StepStatus::Waiting,
            position,
            attempts: 1,
            output: None,
            error: None,
            errors: "[]".into(),
            started_at: now,
            ended_at: None,
            wake_at: Some(expires_at),
        };
        Ok((wait, row))
    }

    /// After parking on `wait`: ends it at once if a matching event is already there.
    async fn look_back(&self, wait: &wait::Model) {
        let rt = &self.run.rt;
        match store::wait::look_back(rt, wait, &self.run.event).await {
            Ok(true) => rt.wake.notify_one(),
            Ok(false) => {}
            Err(err) => {
                // The matcher still compares every event sent from now on; an earlier
                // one is missed only if this lookback fails.
                tracing::warn!(run_id = %wait.run_id, step = %wait.step_id, error = %err,
                    "could not look back for an event that ends a new wait");
            }
        }
    }

    /// Gives the step the handler just called its key and position. The key is the
    /// id, or `id:n` for its n-th repeat, skipping any key already given out.
    fn meet(&self, id: &str) -> Result<Met, FnError> {
        check_step_id(id)?;
        let mut state = lock(&self.run.state);
        let max_steps = self.run.rt.config.max_steps;
        if usize::try_from(state.met).unwrap_or(0) >= max_steps {
            return Err(FnError::non_retriable(format!(
                "step {id:?}: a run may use at most {max_steps} steps (EngineConfig::max_steps)"
            )));
        }
        let calls = state.calls.entry(id.to_string()).or_insert(0);
        let mut n = *calls;
        *calls += 1;
        let mut key = if n == 0 {
            id.to_string()
        } else {
            format!("{id}:{n}")
        };
        while state.keys.contains(&key) {
            n += 1;
            key = format!("{id}:{n}");
        }
        state.keys.insert(key.clone());
        let position = state.met;
        state.met += 1;
        let saved = state.saved.get(&key).cloned();
        Ok(Met {
            id: id.to_string(),
            key,
            position,
            saved,
        })
    }

    fn remember(&self, row: step::Model) {
        let mut state = lock(&self.run.state);
        state.saved.insert(row.step_id.clone(), row);
    }

    fn write(&self, row: step::Model, transition: Option<Transition>) -> Write {
        Write {
            run: self.run.run.clone(),
            step: Some(row),
            wait: None,
            transition,
            ack: None,
            lost: self.run.lost.clone(),
        }
    }

    /// Remembers a final failure given to the handler.
    fn failure(&self, err: FnError) -> FnError {
        lock(&self.run.failures).push(err.clone());
        err
    }

    /// Whether `err` is a step's final failure that the handler passed on (rather than
    /// a failure of the handler itself, which counts as one of its attempts).
    pub(crate) fn gave(&self, err: &FnError) -> bool {
        lock(&self.run.failures).contains(err)
    }

    /// Hands `row` to the completer and lets the handler go on at once; the next step
    /// waits for the commit (and for the answer that the run is still ours).
    fn commit_and_go_on(&self, row: step::Model) {
        let ack = self
            .run
            .completer
            .commit_later(self.write(row.clone(), None))
            .map(|ours| ours.unwrap_or(false))
            .boxed()
            .shared();
        *lock(&self.run.pending) = Some(ack);
        self.remember(row);
    }

    /// The run has been parked (its record says why and until when) or is no longer
    /// ours: tells the executor, which drops the handler, and never resolves.
    async fn stop<T>(&self) -> T {
        self.run.stopped.notify_one();
        std::future::pending().await
    }

    /// Waits for the last step's commit: false if the run is no longer ours.
    async fn settle(&self) -> bool {
        let pending = lock(&self.run.pending).clone();
        match pending {
            Some(ack) => ack.await,
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

/// A step id must be 1–256 characters without control characters (NUL among them,
/// which PostgreSQL cannot store).
/// Refuses an output (of a step or a run) larger than `max` bytes of JSON.
pub(crate) fn check_output_size(len: usize, max: usize) -> Result<(), FnError> {
    if len > max {
        return Err(FnError::non_retriable(format!(
            "the output is {len} bytes of JSON; the limit is {max} (EngineConfig::max_output_bytes)"
        )));
    }
    Ok(())
}

fn check_step_id(id: &str) -> Result<(), FnError> {
    if id.is_empty() || id.chars().count() > MAX_STEP_ID || id.chars().any(char::is_control) {
        return Err(FnError::non_retriable(format!(
            "step id {id:?} is not valid: use 1-{MAX_STEP_ID} characters, none of them control characters"
        )));
    }
    Ok(())
}

/// A completed step's saved output.
fn saved_output<T: DeserializeOwned>(saved: &step::Model) -> Result<T, FnError> {
    Ok(serde_json::from_str(
        saved.output.as_deref().unwrap_or("null"),
    )?)
}

/// What an `invoke` step starts.
struct Child<'a> {
    function_id: &'a str,
    data: serde_json::Value,
    timeout: Duration,
}

/// 32 hex digits of the SHA-256 of `text`: a short, stable stand-in for a long key.
fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The error a handler gets from a step that failed for good.
fn step_failure(id: &str, attempts: i32, message: &str) -> FnError {
    FnError::NonRetriable(if attempts > 1 {
        format!("step {id:?} failed after {attempts} attempts: {message}")
    } else {
        format!("step {id:?} failed: {message}")
    })
}

/// The longest a wait may last.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// What `step.wait_for_event` waits for: an event name, how long at most, and which
/// events of that name count.
#[derive(Clone, Debug)]
pub struct WaitFor {
    pub(crate) event: String,
    pub(crate) timeout: Duration,
    pub(crate) matching: Option<String>,
    pub(crate) condition: Option<String>,
    pub(crate) lookback: Duration,
}

impl WaitFor {
    /// Waits up to `timeout` (at most [`MAX_WAIT`]) for an event named `event` sent by
    /// the run's user after the wait began.
    pub fn event(event: impl Into<String>, timeout: Duration) -> Self {
        WaitFor {
            event: event.into(),
            timeout,
            matching: None,
            condition: None,
            lookback: Duration::ZERO,
        }
    }

    /// Only an event whose `field` (like `"data.order_id"`) equals the run's event's
    /// (a string, number or bool) counts. Found by index, whatever the number of waits.
    pub fn matching(mut self, field: impl Into<String>) -> Self {
        self.matching = Some(field.into());
        self
    }

    /// Only an event for which the CEL `expression` is true counts; it sees `event`
    /// (the run's event) and `async` (the new one), like Inngest's `if`:
    /// `"async.data.amount > event.data.limit"`.
    pub fn when(mut self, expression: impl Into<String>) -> Self {
        self.condition = Some(expression.into());
        self
    }

    /// An event sent up to `window` before the wait began counts too.
    pub fn lookback(mut self, window: Duration) -> Self {
        self.lookback = window;
        self
    }
}

/// `name`, with what must match: `demo/x (matching data.id, when …)`.
impl std::fmt::Display for WaitFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.event)?;
        let rules: Vec<String> = [
            self.matching.as_ref().map(|m| format!("matching {m}")),
            self.condition.as_ref().map(|c| format!("when {c}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !rules.is_empty() {
            write!(f, " ({})", rules.join(", "))?;
        }
        Ok(())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A duration as people write it: "30s", "1.5s", "250ms".
fn humanize(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}
