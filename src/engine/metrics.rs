//! The engine's metrics, through the `metrics` facade: every name is here. Nothing is
//! recorded — not even a label built — until [`enable`] is called (the server does when
//! `NODEBASE_METRICS_ADDR` is set, after installing its recorder); until then each call
//! costs one relaxed atomic load. Labels are
//! bounded: function ids and step kinds come from the registry, event names only if some
//! function triggers on or waits for exactly that name (else `other`); never a run or
//! user id.
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use metrics::{counter, histogram, Counter, Histogram};

use super::event::Prepared;
use crate::domain::{RunStatus, StepKind};

pub const EVENTS_RECEIVED: &str = "nodebase_events_received_total";
pub const RUNS_STARTED: &str = "nodebase_runs_started_total";
pub const RUNS_ENDED: &str = "nodebase_runs_ended_total";
pub const SEND_TO_START: &str = "nodebase_send_to_start_seconds";
pub const STEP_ATTEMPTS: &str = "nodebase_step_attempts_total";
pub const STEP_FAILURES: &str = "nodebase_step_failures_total";
pub const STEP_DURATION: &str = "nodebase_step_duration_seconds";
pub const COMMIT_BATCH: &str = "nodebase_commit_batch_size";
pub const COMMIT_SECONDS: &str = "nodebase_commit_seconds";
pub const CLAIM_BATCH: &str = "nodebase_claim_batch_size";
pub const LEASE_RESCUES: &str = "nodebase_lease_rescues_total";
pub const QUEUE_DEPTH: &str = "nodebase_queue_depth";
pub const OLDEST_DUE_AGE: &str = "nodebase_oldest_due_age_seconds";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Starts recording (call it once a recorder is installed).
pub fn enable() {
    set_enabled(true);
}

/// Starts or stops recording (the bench compares the two in one process).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The label an event name gets.
pub(crate) fn event_name_label(name: &str, known: bool) -> String {
    if known {
        name.to_string()
    } else {
        "other".to_string()
    }
}

/// Counts a batch of events about to be stored, by name (see [`event_name_label`]).
pub(crate) fn events_received(events: &[Prepared], known: impl Fn(&str) -> bool) {
    if !enabled() {
        return;
    }
    let mut names: Vec<(&str, u64)> = Vec::new();
    for event in events {
        let name = event.event.name.as_str();
        match names.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => names.push((name, 1)),
        }
    }
    for (name, count) in names {
        let label = event_name_label(name, known(name));
        counter!(EVENTS_RECEIVED, "name" => label).increment(count);
    }
}

/// One function's metrics, registered with the recorder at their first use: a run
/// looks its handles up by function id instead of building labelled keys each time.
struct Handles {
    started: Counter,
    send_to_start: Histogram,
    ended: RwLock<HashMap<&'static str, Counter>>,
    steps: RwLock<HashMap<&'static str, StepHandles>>,
}

#[derive(Clone)]
struct StepHandles {
    attempts: Counter,
    duration: Histogram,
}

/// Bounded: function ids come from the registry.
static FUNCTIONS: LazyLock<RwLock<HashMap<String, Arc<Handles>>>> = LazyLock::new(Default::default);

/// The value under `key`, made by `make` the first time.
fn cached<K, V, Q>(map: &RwLock<HashMap<K, V>>, key: &Q, make: impl FnOnce() -> (K, V)) -> V
where
    K: Eq + Hash + std::borrow::Borrow<Q>,
    Q: Eq + Hash + ?Sized,
    V: Clone,
{
    if let Some(value) = map.read().unwrap().get(key) {
        return value.clone();
    }
    let (key, value) = make();
    map.write().unwrap().entry(key).or_insert(value).clone()
}

fn function(id: &str) -> Arc<Handles> {
    cached(&FUNCTIONS, id, || {
        let handles = Handles {
            started: counter!(RUNS_STARTED, "function" => id.to_string()),
            send_to_start: histogram!(SEND_TO_START, "function" => id.to_string()),
            ended: RwLock::default(),
            steps: RwLock::default(),
        };
        (id.to_string(), Arc::new(handles))
    })
}

/// A run claimed for the first time: it started, `waited_ms` after its event.
pub(crate) fn run_started(function_id: &str, waited_ms: i64) {
    if !enabled() {
        return;
    }
    let f = function(function_id);
    f.started.increment(1);
    f.send_to_start.record(waited_ms.max(0) as f64 / 1000.0);
}

/// A run reached a final state (completed, failed, cancelled).
pub(crate) fn run_ended(function_id: &str, status: RunStatus) {
    if !enabled() {
        return;
    }
    let status = status.as_str();
    let ended = cached(&function(function_id).ended, status, || {
        let ended = counter!(RUNS_ENDED, "function" => function_id.to_string(), "status" => status);
        (status, ended)
    });
    ended.increment(1);
}

/// One attempt of a step, how long it took and whether it failed.
pub(crate) fn step_attempt(function_id: &str, kind: StepKind, took: Duration, failed: bool) {
    if !enabled() {
        return;
    }
    let kind = kind.as_str();
    let step = cached(&function(function_id).steps, kind, || {
        let f = function_id.to_string();
        let step = StepHandles {
            attempts: counter!(STEP_ATTEMPTS, "function" => f.clone(), "kind" => kind),
            duration: histogram!(STEP_DURATION, "function" => f, "kind" => kind),
        };
        (kind, step)
    });
    step.attempts.increment(1);
    step.duration.record(took.as_secs_f64());
    if failed {
        // Rare: looked up each time, and shown only once a step has failed.
        counter!(STEP_FAILURES, "function" => function_id.to_string(), "kind" => kind).increment(1);
    }
}

/// One group commit of `writes` writes, taking `took`.
pub(crate) fn commit(writes: usize, took: Duration) {
    if !enabled() {
        return;
    }
    histogram!(COMMIT_BATCH).record(writes as f64);
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn claim(runs: usize) {
    if !enabled() {
        return;
    }
    histogram!(CLAIM_BATCH).record(runs as f64);
}

pub(crate) fn rescued(runs: usize) {
    if !enabled() {
        return;
    }
    counter!(LEASE_RESCUES).increment(runs as u64);
}
