//! Functions: what runs when an event arrives, defined in code with a builder.
use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::batch::Batch;
use super::concurrency::Concurrency;
use super::cron::Schedule;
use super::debounce::Debounce;
use super::error::{EngineError, FnError};
use super::event::{validate_name, Event, NewEvent};
use super::expr;
use super::priority::Priority;
use super::rate_limit::RateLimit;
use super::step::{Routes, Step, StepRules, WaitFor, MAX_WAIT};
use super::throttle::Throttle;

/// Retries a function gets unless it says otherwise (Inngest's default).
pub const DEFAULT_RETRIES: u32 = 4;
/// The most retries a function may ask for.
pub const MAX_RETRIES: u32 = 50;

type Handler = Arc<dyn Fn(Ctx) -> BoxFuture<'static, Result<Value, FnError>> + Send + Sync>;

/// What a handler receives: the triggering event, the step tools of its run, and the
/// state the engine was given.
pub struct Ctx {
    /// The run's event; for a batched function, the batch's first.
    pub event: Event,
    /// Every event of the run: a batch's, in the order they were sent; otherwise the
    /// one event.
    pub events: Vec<Event>,
    pub step: Step,
    pub run_id: String,
    pub(crate) state: Arc<State>,
}

impl Ctx {
    /// The event's data as a `T`; a payload that does not fit fails the run at once
    /// (no retry can change the event), saying why.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, FnError> {
        T::deserialize(&self.event.data).map_err(|e| {
            FnError::non_retriable(format!(
                "the data of event {:?} does not fit {}: {e}",
                self.event.name,
                std::any::type_name::<T>()
            ))
        })
    }

    /// The value of type `T` given to the engine with `EngineBuilder::state` (a
    /// database connection, an HTTP client), shared by every run.
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<&T, FnError> {
        self.state.get::<T>().ok_or_else(|| {
            FnError::non_retriable(format!(
                "the engine was given no state of type {}",
                std::any::type_name::<T>()
            ))
        })
    }

    /// For a failure handler (`Function::on_failure`): the run that failed, its event and
    /// its error.
    pub fn failure(&self) -> Result<Failure, FnError> {
        self.data()
    }
}

/// Values shared by all handlers, one per type.
#[derive(Default)]
pub(crate) struct State(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl State {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }

    fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>())?.downcast_ref()
    }
}

/// What a failure handler's event ([`super::FAILED`]) carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub function_id: String,
    pub run_id: String,
    pub error: String,
    /// The failed run's event.
    pub event: Event,
}

/// How long a function's runs and steps may take; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// One attempt of one `step.run`; a slower attempt fails and is retried.
    pub step: Option<Duration>,
    /// From the event to the run's first start; a run that waited longer fails.
    pub start: Option<Duration>,
    /// From the run's first start to its end, sleeps included; then it fails.
    pub finish: Option<Duration>,
}

/// A durable function: an id, the events that trigger it, its retries, its handler.
#[derive(Clone)]
pub struct Function {
    id: String,
    triggers: Vec<String>,
    retries: u32,
    timeouts: Timeouts,
    /// The event names its `step.wait_for_event` calls may wait for.
    awaits: Vec<String>,
    /// The events that cancel its runs.
    cancels: Vec<WaitFor>,
    /// CEL filters on its triggers: trigger -> expression over `event`.
    filters: HashMap<String, String>,
    /// Cron schedules: (pattern, time zone).
    schedules: Vec<(String, String)>,
    /// How many of its runs may execute at once, in all or per key.
    limits: Vec<Concurrency>,
    /// How bursts of its events are folded into one run.
    debounce: Option<Debounce>,
    /// How its events are gathered into runs of many.
    batch: Option<Batch>,
    /// How many of its runs may start per period, in all or per key.
    throttle: Option<Throttle>,
    /// How many of its runs may be queued per period; the rest are skipped.
    rate_limit: Option<RateLimit>,
    /// How far ahead of the queue its new runs are put.
    priority: Option<Priority>,
    /// Its idempotency key expression: one run per key per user per 24 h.
    idempotency: Option<String>,
    /// One line saying what it does, for dashboards.
    description: String,
    handler: Handler,
    /// Runs, as a function of its own, when one of its runs fails for good.
    on_failure: Option<Handler>,
    /// For a failure handler: the function whose failures it handles.
    handles_failures_of: Option<String>,
}

/// The id of the function that handles `function_id`'s failures.
pub fn failure_handler_id(function_id: &str) -> String {
    format!("{function_id}-on-failure")
}

fn handler<F, Fut, O>(handler: F) -> Handler
where
    F: Fn(Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, FnError>> + Send + 'static,
    O: Serialize + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |ctx| {
        let run = handler(ctx);
        Box::pin(async move {
            into_value(run.await?).map_err(|e| {
                FnError::non_retriable(format!("the output cannot be written as JSON: {e}"))
            })
        })
    })
}

/// A handler's output as JSON; a `Value` (the common case) is taken as it is, not copied.
fn into_value<O: Serialize + 'static>(output: O) -> Result<Value, serde_json::Error> {
    let output: Box<dyn Any> = Box::new(output);
    match output.downcast::<Value>() {
        Ok(value) => Ok(*value),
        Err(other) => match other.downcast_ref::<O>() {
            Some(output) => serde_json::to_value(output),
            None => unreachable!("the box holds the handler's output"),
        },
    }
}

impl Function {
    /// A function with id `id` running `handler`; add triggers with [`Function::trigger`].
    /// The handler returns any `Serialize` value as the run's output.
    pub fn new<F, Fut, O>(id: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, FnError>> + Send + 'static,
        O: Serialize + 'static,
    {
        Function::with_handler(id.into(), self::handler(handler))
    }

    /// A function with defaults for everything but its id and handler.
    fn with_handler(id: String, handler: Handler) -> Self {
        Function {
            id,
            triggers: Vec::new(),
            retries: DEFAULT_RETRIES,
            timeouts: Timeouts::default(),
            awaits: Vec::new(),
            cancels: Vec::new(),
            filters: HashMap::new(),
            schedules: Vec::new(),
            limits: Vec::new(),
            debounce: None,
            batch: None,
            throttle: None,
            rate_limit: None,
            priority: None,
            idempotency: None,
            description: String::new(),
            handler,
            on_failure: None,
            handles_failures_of: None,
        }
    }

    /// Like [`Function::new`], with the event's data read as a `T` first: an event
    /// whose data does not fit fails its run at once, saying why (see [`Ctx::data`]).
    pub fn typed<T, F, Fut, O>(id: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Ctx, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, FnError>> + Send + 'static,
        O: Serialize + Send + 'static,
    {
        let handler = Arc::new(handler);
        Function::new(id, move |ctx: Ctx| {
            let handler = handler.clone();
            async move {
                let data = ctx.data::<T>()?;
                handler(ctx, data).await
            }
        })
    }

    /// Runs `handler` when one of this function's runs fails for good (retries spent, a
    /// non-retriable error, a time limit), as a run of its own — the function
    /// `<id>-on-failure` — for the same user. Its event is a [`super::FAILED`] event;
    /// [`Ctx::failure`] reads the failed run, its event and its error. Cancelled runs
    /// are not failures.
    pub fn on_failure<F, Fut, O>(mut self, handler: F) -> Self
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, FnError>> + Send + 'static,
        O: Serialize + 'static,
    {
        self.on_failure = Some(self::handler(handler));
        self
    }

    /// Runs the function for each event named `event_name` (once, however often the
    /// same name is given). A name ending in `*` is a prefix: `app/*` triggers on
    /// `app/user.signup` and every other `app/` event. An event that several of a
    /// function's triggers match starts one run of it.
    pub fn trigger(mut self, event_name: impl Into<String>) -> Self {
        let name = event_name.into();
        if !self.triggers.contains(&name) {
            self.triggers.push(name);
        }
        self
    }

    /// Like [`Function::trigger`], for only the events for which the CEL `expression`
    /// over `event` (`name`, `data`, `user_id`) is true: `"event.data.amount > 100"`.
    /// Evaluated at the send; an event it cannot be evaluated for starts no run.
    pub fn trigger_if(
        mut self,
        event_name: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        let name = event_name.into();
        self.filters.insert(name.clone(), expression.into());
        self.trigger(name)
    }

    /// Runs the function at each tick of the cron `pattern` — five fields (minute, hour,
    /// day of month, month, day of week), or six with seconds first — in UTC. Exactly one
    /// run per tick, however many processes run workers. A tick missed while no process
    /// ran is made up once, late, if it is at most `EngineConfig::cron_catch_up` old;
    /// older missed ticks are skipped.
    pub fn cron(self, pattern: impl Into<String>) -> Self {
        self.cron_in(pattern, "UTC")
    }

    /// Like [`Function::cron`], in the time zone `time_zone` (an IANA name such as
    /// `Asia/Seoul`; daylight-saving changes follow the zone's rules).
    pub fn cron_in(mut self, pattern: impl Into<String>, time_zone: impl Into<String>) -> Self {
        self.schedules.push((pattern.into(), time_zone.into()));
        self
    }

    /// At most `limit` of its runs execute at once, in all processes together. Only runs
    /// executing steps count: a sleeping or waiting run holds no slot. Runs over the
    /// limit stay queued and start, oldest due first, as slots free.
    pub fn concurrency(mut self, limit: u32) -> Self {
        self.limits.push(Concurrency { limit, key: None });
        self
    }

    /// Like [`Function::concurrency`], per value of `key`, a CEL expression over `event`
    /// (`name`, `data`, `user_id`): `concurrency_key(1, "event.user_id")` runs one user's
    /// runs one at a time and different users' side by side. The key is taken when the
    /// run is queued; one that cannot be evaluated is the empty key. A function has at
    /// most two limits (say, 10 in all and 1 per user); a run starts when both have room.
    pub fn concurrency_key(mut self, limit: u32, key: impl Into<String>) -> Self {
        self.limits.push(Concurrency {
            limit,
            key: Some(key.into()),
        });
        self
    }

    /// Its concurrency limits.
    pub fn limits(&self) -> &[Concurrency] {
        &self.limits
    }

    /// Folds each burst of events into one run, started with the burst's last event
    /// once the burst has gone quiet: `debounce(Debounce::new(secs(3)))` — per user,
    /// always (see [`Debounce`]). Events a later one took over from start no run of
    /// their own; a send's receipt names the run that will handle it.
    pub fn debounce(mut self, debounce: Debounce) -> Self {
        self.debounce = Some(debounce);
        self
    }

    /// How it is debounced, if it is.
    pub fn debounced(&self) -> Option<&Debounce> {
        self.debounce.as_ref()
    }

    /// Gathers its events into runs of up to `max_events`, one batch per user, started
    /// when full or a timeout after the batch's first event: `batch(Batch::new(10,
    /// secs(5)))`. The handler reads them all from [`Ctx::events`] (see [`Batch`]).
    pub fn batch(mut self, batch: Batch) -> Self {
        self.batch = Some(batch);
        self
    }

    /// How it batches its events, if it does.
    pub fn batched(&self) -> Option<&Batch> {
        self.batch.as_ref()
    }

    /// Lets at most so many of its runs start per period, in all processes together:
    /// `throttle(Throttle::new(2, secs(10)).key("event.user_id"))`. Runs over it wait
    /// in due order and start as the window frees (see [`Throttle`]); none is dropped.
    pub fn throttle(mut self, throttle: Throttle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// How its starts are throttled, if they are.
    pub fn throttled(&self) -> Option<&Throttle> {
        self.throttle.as_ref()
    }

    /// Lets at most so many of its runs be queued per period, in all processes together:
    /// `rate_limit(RateLimit::new(1, secs(60)).key("event.user_id"))`. The events over
    /// it are recorded, and so is a run for each, `skipped` with the limit as its error;
    /// nothing of it runs (see [`RateLimit`]).
    pub fn rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = Some(rate_limit);
        self
    }

    /// How its runs are rate limited, if they are.
    pub fn rate_limited(&self) -> Option<&RateLimit> {
        self.rate_limit.as_ref()
    }

    /// Puts some of its new runs ahead of the queue: `priority(Priority::head_start(
    /// "event.data.plan == 'pro' ? 120 : 0"))` queues a pro user's run as if it had been
    /// sent two minutes earlier, so it is claimed before the runs sent since (see
    /// [`Priority`]).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Its priority, if it has one.
    pub fn prioritized(&self) -> Option<&Priority> {
        self.priority.as_ref()
    }

    /// Starts at most one run per value of the CEL `key` over the event, per user, per 24 h:
    /// `idempotency("event.data.order_id")`. A repeated event is still recorded; like one
    /// over a rate limit, it starts no run, and the skip is recorded with it, saying why.
    /// An event whose key is empty (or cannot be evaluated) is not limited. A function has
    /// either this or a [`RateLimit`].
    pub fn idempotency(mut self, key: impl Into<String>) -> Self {
        self.idempotency = Some(key.into());
        self
    }

    /// Its idempotency key, as the count it is ("one run per event.data.order_id per
    /// user per 24 h"), if it has one.
    pub fn idempotent(&self) -> Option<RateLimit> {
        self.idempotency.as_deref().map(RateLimit::idempotency)
    }

    /// The count its runs are queued under: its rate limit or its idempotency key.
    fn queue_limit(&self) -> Option<RateLimit> {
        self.rate_limit.clone().or_else(|| self.idempotent())
    }

    /// Its cron schedules: (pattern, time zone).
    pub fn schedules(&self) -> &[(String, String)] {
        &self.schedules
    }

    /// The CEL filter of one of its triggers, if it has one.
    pub fn filter_of(&self, trigger: &str) -> Option<&str> {
        self.filters.get(trigger).map(String::as_str)
    }

    /// Says in one line what it does (shown on the Functions page).
    pub fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Declares that its handler may wait for events named `event_name`
    /// (`step.wait_for_event`). Only declared events are kept for waits to match, so
    /// every other send costs nothing more; waiting for an undeclared one fails the step.
    pub fn waits_for(mut self, event_name: impl Into<String>) -> Self {
        let name = event_name.into();
        if !self.awaits.contains(&name) {
            self.awaits.push(name);
        }
        self
    }

    /// Cancels a run — queued, running, sleeping or waiting — when an event as `rule`
    /// says arrives for the run's user within `rule`'s timeout of the run's event:
    /// `WaitFor::event("app/order.cancelled", days(7)).matching("data.order_id")`
    /// (the field must equal the run's event's; `.when` adds a CEL condition over `event`
    /// and `async`, as for waits). An event sent before the run's own never cancels it.
    /// Found by index like waits, so a send costs the same whatever the number of runs.
    pub fn cancel_on(mut self, rule: WaitFor) -> Self {
        self.cancels.push(rule);
        self
    }

    /// The rules that cancel its runs.
    pub fn cancels(&self) -> &[WaitFor] {
        &self.cancels
    }

    /// Limits how long its steps and runs may take (see [`Timeouts`]).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// How many times a failing step (or handler) is retried before the run fails;
    /// capped at [`MAX_RETRIES`].
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries.min(MAX_RETRIES);
        self
    }

    /// The function's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The event names that trigger it.
    pub fn triggers(&self) -> &[String] {
        &self.triggers
    }

    /// Its retries.
    pub fn retry_limit(&self) -> u32 {
        self.retries
    }

    /// Its time limits.
    pub fn time_limits(&self) -> Timeouts {
        self.timeouts
    }

    /// The event names it may wait for.
    pub fn awaits(&self) -> &[String] {
        &self.awaits
    }

    /// What it does, in one line (empty if not described).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// For a failure handler: the function whose failures it handles.
    pub fn handles_failures_of(&self) -> Option<&str> {
        self.handles_failures_of.as_deref()
    }

    /// The id of the function that handles its failures, if it has one.
    pub fn failure_handler_id(&self) -> Option<String> {
        self.on_failure
            .is_some()
            .then(|| failure_handler_id(&self.id))
    }

    /// The function that runs `on_failure`'s handler, if it has one.
    fn failure_handler(&self) -> Option<Function> {
        let handler = self.on_failure.clone()?;
        let mut function = Function::with_handler(failure_handler_id(&self.id), handler);
        function.description = format!(
            "Runs when a run of {} fails, with its event and error.",
            self.id
        );
        function.handles_failures_of = Some(self.id.clone());
        Some(function)
    }

    pub(crate) fn step_rules(&self) -> StepRules {
        StepRules {
            retries: self.retries,
            step_timeout: self.timeouts.step,
            awaits: self.awaits.clone(),
        }
    }

    pub(crate) fn call(&self, ctx: Ctx) -> BoxFuture<'static, Result<Value, FnError>> {
        (self.handler)(ctx)
    }
}

impl Routes for Registry {
    fn route(&self, event: &NewEvent) -> Cow<'_, [String]> {
        Registry::route(self, event)
    }

    fn is_awaited(&self, event_name: &str) -> bool {
        Registry::is_awaited(self, event_name)
    }

    fn knows(&self, event_name: &str) -> bool {
        self.triggers.contains_key(event_name) || self.awaited.contains(event_name)
    }

    fn has_function(&self, function_id: &str) -> bool {
        self.get(function_id).is_some()
    }
}

/// The registered functions, and which events trigger them.
pub(crate) struct Registry {
    functions: HashMap<String, Function>,
    /// Event name -> ids of the functions it triggers.
    triggers: HashMap<String, Vec<String>>,
    /// The event names some function may wait for.
    awaited: HashSet<String>,
    /// Prefix triggers (`app/*` as `app/`), with the function each starts.
    prefixes: Vec<(String, String)>,
    /// (function id, trigger) -> the trigger's CEL filter.
    filters: HashMap<(String, String), String>,
    /// The cron schedules, with the function each starts.
    schedules: Vec<(String, Schedule)>,
    /// What every handler's `Ctx` shares.
    pub(crate) state: Arc<State>,
}

impl Registry {
    /// Checks the functions (each has a valid trigger, ids are unique) and indexes them,
    /// with the failure handlers they name.
    pub(crate) fn new(list: Vec<Function>, state: State) -> Result<Self, EngineError> {
        let mut functions = HashMap::new();
        let mut triggers: HashMap<String, Vec<String>> = HashMap::new();
        let mut awaited = HashSet::new();
        let mut prefixes = Vec::new();
        let mut filters = HashMap::new();
        let mut schedules = Vec::new();
        let handlers: Vec<Function> = list.iter().filter_map(Function::failure_handler).collect();
        for function in list.into_iter().chain(handlers) {
            for (pattern, tz) in function.schedules() {
                schedules.push((function.id().to_string(), Schedule::parse(pattern, tz)?));
            }
            for (trigger, expression) in &function.filters {
                expr::check(expression).map_err(|e| {
                    EngineError::InvalidFunction(format!(
                        "function {:?}: the filter {expression:?} of trigger {trigger:?} is not valid CEL: {e}",
                        function.id()
                    ))
                })?;
                filters.insert(
                    (function.id().to_string(), trigger.clone()),
                    expression.clone(),
                );
            }
            Concurrency::check(function.id(), function.limits())?;
            if let Some(throttle) = function.throttled() {
                throttle.check(function.id())?;
            }
            if function.rate_limit.is_some() && function.idempotency.is_some() {
                return Err(EngineError::InvalidFunction(format!(
                    "function {:?}: a function has a rate limit or an idempotency key, not both",
                    function.id()
                )));
            }
            if let Some(rate_limit) = function.queue_limit() {
                rate_limit.check(function.id())?;
                if function.debounced().is_some() {
                    return Err(EngineError::InvalidFunction(format!(
                        "function {:?}: a debounced function cannot also have a rate limit or an idempotency key",
                        function.id()
                    )));
                }
            }
            if let Some(priority) = function.prioritized() {
                priority.check(function.id())?;
                if function.debounced().is_some() {
                    return Err(EngineError::InvalidFunction(format!(
                        "function {:?}: a debounced function cannot also have a priority (its run is due when the burst ends)",
                        function.id()
                    )));
                }
            }
            if let Some(batch) = function.batched() {
                batch.check(function.id())?;
                let others = [
                    (function.debounced().is_some(), "a debounce"),
                    (
                        function.queue_limit().is_some(),
                        "a rate limit or an idempotency key",
                    ),
                    (function.prioritized().is_some(), "a priority"),
                    (!function.cancels().is_empty(), "cancel_on rules"),
                ];
                if let Some((_, what)) = others.iter().find(|(has, _)| *has) {
                    return Err(EngineError::InvalidFunction(format!(
                        "function {:?}: a batched function cannot also have {what}",
                        function.id()
                    )));
                }
            }
            if let Some(debounce) = function.debounced() {
                debounce.check(function.id())?;
                if !function.cancels().is_empty() {
                    return Err(EngineError::InvalidFunction(format!(
                        "function {:?}: a debounced function cannot also have cancel_on rules",
                        function.id()
                    )));
                }
            }
            for name in function.awaits() {
                validate_name(name)?;
                awaited.insert(name.clone());
            }
            for rule in function.cancels() {
                check_cancel_rule(function.id(), rule)?;
                awaited.insert(rule.event.clone());
            }
            if function.triggers().is_empty()
                && function.schedules().is_empty()
                && function.handles_failures_of.is_none()
            {
                return Err(EngineError::InvalidFunction(format!(
                    "function {:?} has no trigger",
                    function.id()
                )));
            }
            for trigger in function.triggers() {
                match trigger.strip_suffix('*') {
                    Some(prefix) => {
                        // The prefix must be the start of a valid name, and not empty.
                        let invalid = || {
                            EngineError::InvalidEvent(format!(
                                "{trigger:?} is not a valid trigger: a prefix of letters, digits and ._-/: then one *, like \"app/*\""
                            ))
                        };
                        if prefix.is_empty() {
                            return Err(invalid());
                        }
                        validate_name(&format!("{prefix}x")).map_err(|_| invalid())?;
                        prefixes.push((prefix.to_string(), function.id().to_string()));
                    }
                    None => {
                        validate_name(trigger)?;
                        triggers
                            .entry(trigger.clone())
                            .or_default()
                            .push(function.id().to_string());
                    }
                }
            }
            let id = function.id().to_string();
            if functions.insert(id.clone(), function).is_some() {
                return Err(EngineError::InvalidFunction(format!(
                    "two functions have the id {id:?}"
                )));
            }
        }
        Ok(Registry {
            functions,
            triggers,
            awaited,
            prefixes,
            filters,
            schedules,
            state: Arc::new(state),
        })
    }

    /// The function with this id.
    pub(crate) fn get(&self, id: &str) -> Option<&Function> {
        self.functions.get(id)
    }

    /// The ids of the functions `event` starts a run of: those with its name as a
    /// trigger, or a prefix of it, whose filter (if any) holds — each once.
    pub(crate) fn route(&self, event: &NewEvent) -> Cow<'_, [String]> {
        let exact = self
            .triggers
            .get(&event.name)
            .map_or(&[][..], Vec::as_slice);
        let prefixed = self
            .prefixes
            .iter()
            .filter(|(prefix, _)| event.name.starts_with(prefix.as_str()));
        if self.filters.is_empty() && self.prefixes.is_empty() {
            return Cow::Borrowed(exact);
        }
        let candidates = exact
            .iter()
            .map(|id| (id, event.name.clone()))
            .chain(prefixed.map(|(prefix, id)| (id, format!("{prefix}*"))));
        let mut ids: Vec<String> = Vec::new();
        for (id, trigger) in candidates {
            if ids.contains(id) {
                continue;
            }
            let passes = match self.filters.get(&(id.clone(), trigger)) {
                None => true,
                Some(expression) => filter_holds(expression, event),
            };
            if passes {
                ids.push(id.clone());
            }
        }
        Cow::Owned(ids)
    }

    /// The cron schedules, with the id of the function each starts.
    pub(crate) fn schedules(&self) -> &[(String, Schedule)] {
        &self.schedules
    }

    /// Each function's cancel rules, for the functions that have any.
    pub(crate) fn cancel_rules(&self) -> HashMap<String, Vec<WaitFor>> {
        self.functions
            .values()
            .filter(|f| !f.cancels.is_empty())
            .map(|f| (f.id.clone(), f.cancels.clone()))
            .collect()
    }

    /// Each function's concurrency limits, for the functions that have any.
    pub(crate) fn limits(&self) -> HashMap<String, Vec<Concurrency>> {
        self.functions
            .values()
            .filter(|f| !f.limits.is_empty())
            .map(|f| (f.id.clone(), f.limits.clone()))
            .collect()
    }

    /// Each debounced function's debounce.
    pub(crate) fn debounces(&self) -> HashMap<String, Debounce> {
        self.functions
            .values()
            .filter_map(|f| f.debounce.clone().map(|d| (f.id.clone(), d)))
            .collect()
    }

    /// Each batched function's batch.
    pub(crate) fn batches(&self) -> HashMap<String, Batch> {
        self.functions
            .values()
            .filter_map(|f| f.batch.clone().map(|b| (f.id.clone(), b)))
            .collect()
    }

    /// Each throttled function's throttle.
    pub(crate) fn throttles(&self) -> HashMap<String, Throttle> {
        self.functions
            .values()
            .filter_map(|f| f.throttle.clone().map(|t| (f.id.clone(), t)))
            .collect()
    }

    /// Each rate-limited function's rate limit.
    pub(crate) fn rate_limits(&self) -> HashMap<String, RateLimit> {
        self.functions
            .values()
            .filter_map(|f| f.queue_limit().map(|r| (f.id.clone(), r)))
            .collect()
    }

    /// Each prioritized function's priority.
    pub(crate) fn priorities(&self) -> HashMap<String, Priority> {
        self.functions
            .values()
            .filter_map(|f| f.priority.clone().map(|p| (f.id.clone(), p)))
            .collect()
    }

    /// Which functions have a failure handler, and its id.
    pub(crate) fn failure_handlers(&self) -> HashMap<String, String> {
        self.functions
            .values()
            .filter_map(|f| f.handles_failures_of())
            .map(|of| (of.to_string(), failure_handler_id(of)))
            .collect()
    }

    /// Whether some function may wait for events named `event_name`.
    pub(crate) fn is_awaited(&self, event_name: &str) -> bool {
        self.awaited.contains(event_name)
    }

    /// Every function, sorted by id.
    pub(crate) fn all(&self) -> Vec<&Function> {
        let mut all: Vec<&Function> = self.functions.values().collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }
}

/// A cancel rule must name a valid event, a timeout of 1 ms to [`MAX_WAIT`], valid CEL,
/// and no lookback (an event sent before the run's never cancels it).
fn check_cancel_rule(function_id: &str, rule: &WaitFor) -> Result<(), EngineError> {
    let invalid = |why: String| {
        EngineError::InvalidFunction(format!("function {function_id:?}: cancel_on: {why}"))
    };
    validate_name(&rule.event)?;
    if rule.timeout.is_zero() || rule.timeout > MAX_WAIT {
        return Err(invalid(format!(
            "the timeout must be between 1 ms and 365 days, not {:?}",
            rule.timeout
        )));
    }
    if !rule.lookback.is_zero() {
        return Err(invalid("a cancellation cannot look back".into()));
    }
    if let Some(condition) = &rule.condition {
        expr::check(condition)
            .map_err(|e| invalid(format!("{condition:?} is not valid CEL: {e}")))?;
    }
    Ok(())
}

/// Whether a trigger's filter holds for `event`; one that cannot be evaluated does not.
fn filter_holds(expression: &str, event: &NewEvent) -> bool {
    let seen = serde_json::json!({
        "name": event.name,
        "data": event.data,
        "user_id": event.user_id,
    });
    expr::holds(expression, vec![("event", seen)]).unwrap_or_else(|err| {
        tracing::debug!(event = %event.name, error = %err, "a trigger's filter could not be evaluated");
        false
    })
}
