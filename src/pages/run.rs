//! `/runs/:id`: one run — its event, output or error, and the step timeline — live.
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api::runs::{get_run, CancelRun, RerunRun, RunDetail, StepView, WaitView, STEPS_SHOWN};
use crate::components::form_error::{action_error, FormError, LoadError};
use crate::components::live::use_live_runs;
use crate::components::nav::Nav;
use crate::components::status::{held_back_reason, HeldBack, StatusBadge};
use crate::components::time::{format_duration, format_time};
use crate::domain::{RunStatus, StepKind, StepStatus};
use crate::error::AppError;

/// The run page.
#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.with(|p| p.get("id")).unwrap_or_default();
    let live = use_live_runs();
    let cancel = ServerAction::<CancelRun>::new();
    let rerun = ServerAction::<RerunRun>::new();
    // Refetch when this run moves, when the stream may have missed news (it opened,
    // or a run ended), or after our own actions.
    let mine = Memo::new(move |_| live.last.get().filter(|n| n.run_id == id()));
    let detail = Resource::new(
        move || {
            (
                id(),
                mine.get(),
                live.finished.get(),
                cancel.version().get(),
            )
        },
        |(id, ..)| get_run(id),
    );

    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(new_id)) = rerun.value().get() {
            navigate(&format!("/runs/{new_id}"), Default::default());
        }
    });

    view! {
        <Nav />
        <Transition fallback=|| view! { <section class="card"><p class="muted">"Loading…"</p></section> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => view! { <RunView detail=detail cancel=cancel rerun=rerun /> }.into_any(),
                    Err(AppError::NotFound) => view! {
                        <section class="card">
                            <h1>"Run not found"</h1>
                            <p><A href="/runs">"All runs"</A></p>
                        </section>
                    }.into_any(),
                    Err(err) => view! { <section class="card"><LoadError error=err /></section> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn confirmed(question: &str) -> bool {
    window().confirm_with_message(question).unwrap_or(false)
}

#[component]
fn RunView(
    detail: RunDetail,
    cancel: ServerAction<CancelRun>,
    rerun: ServerAction<RerunRun>,
) -> impl IntoView {
    let run = detail.run.clone();
    let live = !run.status.is_final();
    let run_id = run.id.clone();
    let on_cancel = {
        let id = run_id.clone();
        move |_| {
            if confirmed("Cancel this run? It stops at its next step.") {
                cancel.dispatch(CancelRun { id: id.clone() });
            }
        }
    };
    let on_rerun = {
        let id = run_id.clone();
        move |_| {
            if confirmed("Run this function again for the same event?") {
                rerun.dispatch(RerunRun { id: id.clone() });
            }
        }
    };
    let duration = match (run.started_at, run.ended_at) {
        (Some(start), Some(end)) => format_duration(end - start),
        (Some(start), None) => format!("{} so far", format_duration(detail.now - start)),
        _ => "not started".to_string(),
    };
    view! {
        <section class="card">
            <header class="run-header">
                <div>
                    <h1>{run.function_id.clone()}</h1>
                    <p class="muted"><code>{run.id.clone()}</code></p>
                </div>
                <span><StatusBadge status=run.status /><HeldBack why=run.held_back.clone() /></span>
            </header>
            <dl class="facts">
                <dt>"Event"</dt><dd><code>{run.event_name.clone()}</code></dd>
                <dt>"Queued"</dt><dd>{format_time(run.created_at)}</dd>
                <dt>"Started"</dt><dd>{run.started_at.map(format_time).unwrap_or_else(|| "—".into())}</dd>
                <dt>"Ended"</dt><dd>{run.ended_at.map(format_time).unwrap_or_else(|| "—".into())}</dd>
                <dt>"Duration"</dt><dd>{duration}</dd>
                <dt>"Attempts"</dt><dd>{run.attempts}</dd>
                {run.held_back.clone().map(|why| view! {
                    <dt>"Waiting for"</dt><dd class="held-back-why">{held_back_reason(&why)}</dd>
                })}
                {run.rerun_of.clone().map(|of| view! {
                    <dt>"Re-run of"</dt><dd><A href=format!("/runs/{of}")>{of.clone()}</A></dd>
                })}
                {run.invoked_by.clone().map(|by| view! {
                    <dt>"Invoked by"</dt><dd><A attr:class="invoked-by" href=format!("/runs/{by}")>{by.clone()}</A></dd>
                })}
                {detail.handles_failure_of.clone().map(|of| view! {
                    <dt>"Handles the failure of"</dt><dd><A attr:class="failure-of" href=format!("/runs/{of}")>{of.clone()}</A></dd>
                })}
                {detail.failure_handled_by.clone().map(|by| view! {
                    <dt>"Failure handled by"</dt><dd><A attr:class="failure-handler" href=format!("/runs/{by}")>{by.clone()}</A></dd>
                })}
                {(run.status == RunStatus::Cancelled).then(|| {
                    let by = detail.cancelled_by.clone().unwrap_or_else(|| "the API".into());
                    let at = run.ended_at.map(format_time).unwrap_or_default();
                    // A cancel_on rule's cancel names the event that matched it.
                    let who = match by.strip_prefix("event ").map(str::to_string) {
                        Some(event) => view! { "by event " <A href=events_from(&event)>{event.clone()}</A> }.into_any(),
                        None => view! { {format!("by {by}")} }.into_any(),
                    };
                    view! { <dt>"Cancelled"</dt><dd class="cancelled-by">{who}{format!(" at {at}")}</dd> }
                })}
            </dl>
            <div class="actions">
                {live.then(|| view! { <button class="danger" on:click=on_cancel disabled=move || cancel.pending().get()>"Cancel run"</button> })}
                {(!live).then(|| view! { <button class="secondary" on:click=on_rerun disabled=move || rerun.pending().get()>"Re-run"</button> })}
            </div>
            <FormError error=action_error(cancel) />
            <FormError error=action_error(rerun) />
        </section>
        <section class="card">
            <h2>"Steps"</h2>
            <Timeline detail=detail.clone() />
        </section>
        <section class="card two-col">
            <div>
                <h2>"Event payload"</h2>
                <pre class="json">{detail.event.data.clone()}</pre>
            </div>
            <div>
                <h2>{if detail.error.is_some() { "Error" } else { "Output" }}</h2>
                {match (detail.output.clone(), detail.error.clone()) {
                    (_, Some(error)) => view! { <pre class="json error-text">{error}</pre> }.into_any(),
                    (Some(output), None) => view! { <pre class="json">{output}</pre> }.into_any(),
                    (None, None) => view! { <p class="muted">"No output yet."</p> }.into_any(),
                }}
            </div>
        </section>
    }
}

/// The steps as bars on one time axis, from the run's start to its end (or now).
#[component]
fn Timeline(detail: RunDetail) -> impl IntoView {
    if detail.steps.is_empty() {
        let text = if detail.run.status.is_final() {
            "This run used no steps."
        } else {
            "No steps yet."
        };
        return view! { <p class="muted">{text}</p> }.into_any();
    }
    let start = detail.run.started_at.unwrap_or(detail.run.created_at).min(
        detail
            .steps
            .iter()
            .map(|s| s.started_at)
            .min()
            .unwrap_or(i64::MAX),
    );
    let end = detail
        .steps
        .iter()
        .map(|s| step_end(s, detail.now))
        .chain(detail.run.ended_at)
        .max()
        .unwrap_or(detail.now)
        .max(start + 1);
    let span = (end - start) as f64;
    let capped = detail.steps.len() as u64 >= STEPS_SHOWN;
    let steps = detail
        .steps
        .into_iter()
        .map(|step| {
            let left = (step.started_at - start) as f64 / span * 100.0;
            let width =
                ((step_end(&step, detail.now) - step.started_at) as f64 / span * 100.0).max(0.6);
            view! { <StepLine step=step now=detail.now left=left width=width /> }
        })
        .collect_view();
    view! {
        {capped.then(|| view! { <p class="muted">{format!("The first {STEPS_SHOWN} steps.")}</p> })}
        <ol class="timeline">{steps}</ol>
        <p class="axis muted">
            <span>{format_time(start)}</span>
            <span>{format_duration(end - start)}</span>
        </p>
    }
    .into_any()
}

/// What a wait step waits for and until when, and how it ended.
#[component]
fn WaitLine(wait: WaitView, started_at: i64) -> impl IntoView {
    let ended = match (wait.status.as_str(), wait.event_id.clone()) {
        ("matched", Some(id)) => view! {
            <span>"ended by event "
                <a class="wait-event" href=events_from(&id)><code>{short_id(&id)}</code></a>
            </span>
        }
        .into_any(),
        ("timed_out", _) => view! { <span>"timed out"</span> }.into_any(),
        _ => view! { <span>{format!("times out at {}", format_time(wait.expires_at))}</span> }
            .into_any(),
    };
    if let Some(child) = wait.invoked_run.clone() {
        return view! {
            <p class="wait-rule muted" data-wait=wait.status.clone()>
                "invoked " <A attr:class="invoked-run" href=format!("/runs/{child}")>{format!("run {}", short_id(&child))}</A>
                " · "
                {match wait.status.as_str() {
                    "matched" => view! { <span>"it ended"</span> }.into_any(),
                    "timed_out" => view! { <span>"it did not end in time"</span> }.into_any(),
                    _ => view! { <span>{format!("waits for its end until {}", format_time(wait.expires_at))}</span> }.into_any(),
                }}
            </p>
        }
        .into_any();
    }
    view! {
        <p class="wait-rule muted" data-wait=wait.status.clone()>
            "waits for " <code>{wait.event_name.clone()}</code>
            {wait.matching.clone().map(|m| view! { " with " <code>{m}</code> })}
            {wait.condition.clone().map(|c| view! { " if " <code>{c}</code> })}
            {(wait.window_start < started_at).then(|| format!(", sent since {}", format_time(wait.window_start)))}
            " · "
            {ended}
        </p>
    }
    .into_any()
}

/// The events page from event `id` on (the newest first): ids sort by time, and `~`
/// sorts after every character an id has, so `before=<id>~` starts the page with it.
fn events_from(id: &str) -> String {
    format!("/events?before={id}~")
}

/// The last 8 characters of an id.
fn short_id(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// Where a step's bar ends: its end, its wake time if asleep, or now if still going.
fn step_end(step: &StepView, now: i64) -> i64 {
    step.ended_at
        .or(step.wake_at.filter(|_| step.status == StepStatus::Sleeping))
        .unwrap_or(now)
}

#[component]
fn StepLine(step: StepView, now: i64, left: f64, width: f64) -> impl IntoView {
    let duration = format_duration(step_end(&step, now) - step.started_at);
    let wakes = (step.status == StepStatus::Sleeping)
        .then(|| {
            step.wake_at
                .map(|at| format!("wakes at {}", format_time(at)))
        })
        .flatten();
    let started_at = step.started_at;
    let wait = step
        .wait
        .clone()
        .map(|wait| view! { <WaitLine wait=wait started_at=started_at /> });
    let sent = (step.kind == StepKind::Send)
        .then(|| step.output.as_deref().and_then(|o| serde_json::from_str::<Vec<String>>(o).ok()))
        .flatten()
        .map(|ids| view! {
            <p class="sent-events muted">
                {format!("sent {} event{}: ", ids.len(), if ids.len() == 1 { "" } else { "s" })}
                {ids.iter().map(|id| view! {
                    <a class="sent-event" href=events_from(id)><code>{short_id(id)}</code></a> " "
                }).collect_view()}
            </p>
        });
    let has_details = step.output.is_some() || !step.errors.is_empty();
    view! {
        <li class="step" data-step=step.name.clone() data-status=step.status.as_str()>
            <div class="step-head">
                <span class="step-name">{step.name.clone()}</span>
                <span class="step-kind">{step.kind.as_str()}</span>
                <StatusBadge status=step.status />
                <span class="muted">{format!("{} attempt{}", step.attempts, if step.attempts == 1 { "" } else { "s" })}</span>
                <span class="step-duration">{duration}</span>
                {wakes.map(|w| view! { <span class="muted">{w}</span> })}
            </div>
            {wait}
            {sent}
            <div class="bar-track">
                <div
                    class=format!("bar bar-{}", step.status)
                    style=format!("margin-left: {left:.2}%; width: {width:.2}%")
                ></div>
            </div>
            {has_details.then(|| view! {
                <details>
                    <summary>"details"</summary>
                    <p class="muted">{format!("started {}", format_time(step.started_at))}
                        {step.ended_at.map(|e| format!(", ended {}", format_time(e)))}</p>
                    {step.output.clone().map(|o| view! { <pre class="json">{o}</pre> })}
                    {(!step.errors.is_empty()).then(|| view! {
                        <ol class="attempt-errors">
                            {step.errors.iter().map(|e| view! { <li class="error-text">{e.clone()}</li> }).collect_view()}
                        </ol>
                    })}
                </details>
            })}
        </li>
    }
}
