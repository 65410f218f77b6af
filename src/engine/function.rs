//! Functions: what runs when an event arrives, defined in code with a builder.
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use super::error::{EngineError, FnError};
use super::event::{validate_name, Event};
use super::step::{Routes, Step, StepRules};

/// Retries a function gets unless it says otherwise (Inngest's default).
pub const DEFAULT_RETRIES: u32 = 4;
/// The most retries a function may ask for.
pub const MAX_RETRIES: u32 = 50;

type Handler = Arc<dyn Fn(Ctx) -> BoxFuture<'static, Result<Value, FnError>> + Send + Sync>;

/// What a handler receives: the triggering event and the step tools of its run.
pub struct Ctx {
    pub event: Event,
    pub step: Step,
    pub run_id: String,
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
    /// One line saying what it does, for dashboards.
    description: String,
    handler: Handler,
}

impl Function {
    /// A function with id `id` running `handler`; add triggers with [`Function::trigger`].
    pub fn new<F, Fut>(id: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FnError>> + Send + 'static,
    {
        Function {
            id: id.into(),
            triggers: Vec::new(),
            retries: DEFAULT_RETRIES,
            timeouts: Timeouts::default(),
            awaits: Vec::new(),
            description: String::new(),
            handler: Arc::new(move |ctx| Box::pin(handler(ctx))),
        }
    }

    /// Runs the function for each event named `event_name` (once, however often the
    /// same name is given).
    pub fn trigger(mut self, event_name: impl Into<String>) -> Self {
        let name = event_name.into();
        if !self.triggers.contains(&name) {
            self.triggers.push(name);
        }
        self
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
    fn triggered_by(&self, event_name: &str) -> &[String] {
        Registry::triggered_by(self, event_name)
    }

    fn is_awaited(&self, event_name: &str) -> bool {
        Registry::is_awaited(self, event_name)
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
}

impl Registry {
    /// Checks the functions (each has a valid trigger, ids are unique) and indexes them.
    pub(crate) fn new(list: Vec<Function>) -> Result<Self, EngineError> {
        let mut functions = HashMap::new();
        let mut triggers: HashMap<String, Vec<String>> = HashMap::new();
        let mut awaited = HashSet::new();
        for function in list {
            for name in function.awaits() {
                validate_name(name)?;
                awaited.insert(name.clone());
            }
            if function.triggers().is_empty() {
                return Err(EngineError::InvalidFunction(format!(
                    "function {:?} has no trigger",
                    function.id()
                )));
            }
            for trigger in function.triggers() {
                validate_name(trigger)?;
                triggers
                    .entry(trigger.clone())
                    .or_default()
                    .push(function.id().to_string());
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
        })
    }

    /// The function with this id.
    pub(crate) fn get(&self, id: &str) -> Option<&Function> {
        self.functions.get(id)
    }

    /// The ids of the functions an event named `event_name` triggers.
    pub(crate) fn triggered_by(&self, event_name: &str) -> &[String] {
        self.triggers.get(event_name).map_or(&[], Vec::as_slice)
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
