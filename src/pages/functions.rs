//! `/functions`: the registered functions, their settings and run counts; invoke one.
use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::functions::{list_functions, FunctionView, InvokeFunction};
use crate::api::functions::{ChartRange, SpanView};
use crate::components::charts::{LatencyLines, OutcomeBars};
use crate::components::form_error::{action_error, FormError, LoadError};
use crate::components::live::use_live_runs;
use crate::components::nav::Nav;
use crate::components::status::StatusBadge;
use crate::components::time::format_time;
use crate::domain::RunStatus;
use crate::error::AppError;

/// The functions page.
#[component]
pub fn FunctionsPage() -> impl IntoView {
    let live = use_live_runs();
    let query = leptos_router::hooks::use_query_map();
    let range = Memo::new(move |_| ChartRange::from_query(query.read().get("range").as_deref()));
    // The cards are drawn once for a range (so that an invoke's answer stays on the
    // page); only their run counts and charts follow the runs that finish.
    let functions = Resource::new(move || range.get(), list_functions);
    let latest = Resource::new(
        move || (live.finished.get(), range.get()),
        |(_, range)| list_functions(range),
    );
    let ranges = ChartRange::ALL.map(|r| {
        view! {
            <a href=format!("?range={}", r.as_query())
                aria-current=move || (range.get() == r).then_some("true")>{r.name()}</a>
        }
    });
    view! {
        <Nav />
        <section class="card">
            <h1>"Functions"</h1>
            <nav class="ranges" aria-label="Charts cover">{ranges.collect_view()}</nav>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match functions.await {
                        Ok(list) => list.into_iter().map(|f| view! { <FunctionCard function=f latest=latest range=range.get_untracked() /> }).collect_view().into_any(),
                        Err(err) => view! { <LoadError error=err /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn FunctionCard(
    function: FunctionView,
    latest: Resource<Result<Vec<FunctionView>, AppError>>,
    range: ChartRange,
) -> impl IntoView {
    let invoke = ServerAction::<InvokeFunction>::new();
    let id = function.id.clone();
    let counts_of = function.id.clone();
    let first_counts = function.counts.clone();
    let latest_of = function.id.clone();
    let first_activity = function.activity.clone();
    let activity_of = function.id.clone();
    view! {
        <article class="function" data-function=function.id.clone()>
            <h2><code>{function.id.clone()}</code></h2>
            {(!function.description.is_empty()).then(|| view! { <p class="description">{function.description.clone()}</p> })}
            <dl class="facts">
                {match function.handles_failures_of.clone() {
                    Some(of) => view! {
                        <dt>"Runs when"</dt>
                        <dd class="handles">"a run of " <code>{of}</code> " fails"</dd>
                    }.into_any(),
                    None => view! {
                        {(!function.triggers.is_empty()).then(|| view! {
                            <dt>"Triggers"</dt>
                            <dd>{function.triggers.iter().map(|t| view! { <code class="trigger">{t.clone()}</code> " " }).collect_view()}</dd>
                        })}
                    }.into_any(),
                }}
                {(!function.schedules.is_empty()).then(|| view! {
                    <dt>"Schedule"</dt>
                    <dd class="schedule">
                        {function.schedules.iter().map(|s| view! { <code class="trigger">{s.clone()}</code> " " }).collect_view()}
                        {function.next_tick.map(|t| view! { <span class="muted">{format!("· next at {}", format_time(t))}</span> })}
                    </dd>
                    <dt>"Last ran"</dt>
                    <dd class="last-tick">{match function.last_tick {
                        Some((at, status)) => view! { {format_time(at)} " " <StatusBadge status=status /> }.into_any(),
                        None => view! { <span class="muted">"none yet"</span> }.into_any(),
                    }}</dd>
                })}
                {(!function.concurrency.is_empty()).then(|| view! {
                    <dt>"Concurrency"</dt>
                    <dd class="concurrency">{function.concurrency.iter().map(|c| view! { <code class="trigger">{c.clone()}</code> " " }).collect_view()}</dd>
                })}
                {function.throttle.clone().map(|t| view! {
                    <dt>"Throttle"</dt>
                    <dd class="throttle"><code class="trigger">{t}</code></dd>
                })}
                {function.rate_limit.clone().map(|r| view! {
                    <dt>"Rate limit"</dt>
                    <dd class="rate-limit"><code class="trigger">{r}</code></dd>
                })}
                {function.idempotency.clone().map(|i| view! {
                    <dt>"Idempotency"</dt>
                    <dd class="idempotency"><code class="trigger">{i}</code></dd>
                })}
                {function.priority.clone().map(|p| view! {
                    <dt>"Priority"</dt>
                    <dd class="priority"><code class="trigger">{p}</code></dd>
                })}
                {function.debounce.clone().map(|d| view! {
                    <dt>"Debounce"</dt>
                    <dd class="debounce"><code class="trigger">{d}</code></dd>
                })}
                {function.batch.clone().map(|b| view! {
                    <dt>"Batch"</dt>
                    <dd class="batch"><code class="trigger">{b}</code></dd>
                })}
                {(!function.cancelled_by.is_empty()).then(|| view! {
                    <dt>"Cancelled by"</dt>
                    <dd class="cancelled-by">{function.cancelled_by.iter().map(|t| view! { <code class="trigger">{t.clone()}</code> " " }).collect_view()}</dd>
                })}
                {function.failure_handler.clone().map(|handler| view! {
                    <dt>"On failure"</dt>
                    <dd class="on-failure"><code>{handler}</code></dd>
                })}
                {(!function.awaits.is_empty()).then(|| view! {
                    <dt>"Waits for"</dt>
                    <dd>{function.awaits.iter().map(|t| view! { <code class="trigger">{t.clone()}</code> " " }).collect_view()}</dd>
                })}
                <dt>"Retries"</dt>
                <dd>{function.retries}</dd>
                <dt>"Runs"</dt>
                <dd class="counts">
                    <Transition fallback=move || view! { <Counts function=counts_of.clone() counts=first_counts.clone() /> }>
                        {move || {
                            let id = latest_of.clone();
                            Suspend::new(async move {
                                let counts = latest_view(latest, &id)
                                    .await
                                    .map(|f| f.counts)
                                    .unwrap_or_default();
                                view! { <Counts function=id counts=counts /> }
                            })
                        }}
                    </Transition>
                </dd>
            </dl>
            <Transition fallback=move || view! { <Charts spans=first_activity.clone() range=range /> }>
                {move || {
                    let id = activity_of.clone();
                    Suspend::new(async move {
                        let spans = latest_view(latest, &id)
                            .await
                            .map(|f| f.activity)
                            .unwrap_or_default();
                        view! { <Charts spans=spans range=range /> }
                    })
                }}
            </Transition>
            {function.handles_failures_of.is_none().then(|| view! {
            <ActionForm action=invoke attr:class="invoke">
                <input type="hidden" name="function" value=id />
                <label>
                    "Invoke with data (JSON)"
                    <textarea name="data" rows="2" placeholder="{}"></textarea>
                </label>
                <FormError error=action_error(invoke) />
                <button type="submit" class="secondary" disabled=move || invoke.pending().get()>"Invoke"</button>
                {move || invoke.value().get().and_then(Result::ok).map(|run| view! {
                    <p>"Started " <A href=format!("/runs/{run}")>"run " {run.clone()}</A></p>
                })}
            </ActionForm>
            })}
        </article>
    }
}

/// Function `id` as the latest refetch of the list shows it.
async fn latest_view(
    latest: Resource<Result<Vec<FunctionView>, AppError>>,
    id: &str,
) -> Option<FunctionView> {
    latest
        .await
        .ok()
        .and_then(|list| list.into_iter().find(|f| f.id == id))
}

/// A function's runs of `range`: by outcome, and their latencies.
#[component]
fn Charts(spans: Vec<SpanView>, range: ChartRange) -> impl IntoView {
    if spans.is_empty() {
        let none = format!("No runs in the {}.", range.name().to_lowercase());
        return view! { <p class="muted no-activity">{none}</p> }.into_any();
    }
    let span_minutes = range.span_minutes();
    let durations = spans.iter().map(|s| s.duration).collect::<Vec<_>>();
    let delays = spans.iter().map(|s| s.delay).collect::<Vec<_>>();
    view! {
        <div class="charts">
            <OutcomeBars spans=spans span_minutes=span_minutes />
            <LatencyLines spans=durations span_minutes=span_minutes kind="duration" title="Run duration" />
            <LatencyLines spans=delays span_minutes=span_minutes kind="delay" title="Send → start" />
        </div>
    }
    .into_any()
}

/// A function's run counts by status, each linking to those runs.
#[component]
fn Counts(function: String, counts: Vec<(RunStatus, i64)>) -> impl IntoView {
    if counts.is_empty() {
        return view! { <span class="muted">"none yet"</span> }.into_any();
    }
    counts
        .into_iter()
        .map(|(status, n)| {
            view! {
                <a class="chip" href=format!("/runs?function={function}&status={status}")>
                    <StatusBadge status=status /> <b>{n}</b>
                </a>
            }
        })
        .collect_view()
        .into_any()
}
