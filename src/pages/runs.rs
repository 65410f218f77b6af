//! `/runs`: every run of the user's, newest first, live.
use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_query_map;

use crate::api::runs::{list_runs, RunPage, RunRow};
use crate::components::charts::Sparkline;
use crate::components::form_error::LoadError;
use crate::components::live::use_live_runs;
use crate::components::nav::Nav;
use crate::components::status::{HeldBack, StatusBadge};
use crate::components::time::{format_duration, format_time};
use crate::domain::RunStatus;

/// The runs list with filters, counts and cursor pages.
#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let param = move |name: &str| query.with(|q| q.get(name)).filter(|v| !v.is_empty());
    let live = use_live_runs();
    let page = Resource::new(
        move || {
            (
                param("status"),
                param("function"),
                param("q"),
                param("before"),
                live.last.get(),
                live.finished.get(),
            )
        },
        |(status, function, q, before, ..)| list_runs(status, function, q, before),
    );

    view! {
        <Nav />
        <section class="card">
            <h1>"Runs"</h1>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(page) => view! { <RunsView page=page status=param("status") function=param("function") q=param("q") before=param("before") /> }.into_any(),
                        Err(err) => view! { <LoadError error=err /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn RunsView(
    page: RunPage,
    status: Option<String>,
    function: Option<String>,
    q: Option<String>,
    before: Option<String>,
) -> impl IntoView {
    let total: i64 = page.counts.iter().map(|(_, n)| n).sum();
    let count_of = |s: RunStatus| {
        page.counts
            .iter()
            .find(|(status, _)| *status == s)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    let link_for = {
        let function = function.clone();
        move |s: Option<&str>| {
            let mut params = Vec::new();
            if let Some(s) = s {
                params.push(format!("status={s}"));
            }
            if let Some(f) = &function {
                params.push(format!("function={f}"));
            }
            if params.is_empty() {
                "/runs".to_string()
            } else {
                format!("/runs?{}", params.join("&"))
            }
        }
    };
    let chips = RunStatus::ALL
        .iter()
        .map(|&s| {
            let active = status.as_deref() == Some(s.as_str());
            view! {
                <a class="chip" class:active=active href=link_for(Some(s.as_str())) data-count-status=s.as_str()>
                    <StatusBadge status=s />
                    <b>{count_of(s)}</b>
                </a>
            }
        })
        .collect_view();
    let next_link = page.next.clone().map(|next| {
        let mut params = vec![format!("before={next}")];
        if let Some(s) = &status {
            params.push(format!("status={s}"));
        }
        if let Some(f) = &function {
            params.push(format!("function={f}"));
        }
        format!("/runs?{}", params.join("&"))
    });
    let functions = page.functions.clone();
    view! {
        <Sparkline counts=page.sent_per_minute.clone() label="Runs sent" />
        <div class="chips">
            <a class="chip" class:active=status.is_none() href=link_for(None)>"all " <b>{total}</b></a>
            {chips}
        </div>
        <Form method="GET" action="/runs" attr:class="filters">
            <label>
                "Status"
                <select name="status">
                    <option value="" selected=status.is_none()>"any"</option>
                    {RunStatus::ALL
                        .iter()
                        .map(|s| view! { <option value=s.as_str() selected=status.as_deref() == Some(s.as_str())>{s.as_str()}</option> })
                        .collect_view()}
                </select>
            </label>
            <label>
                "Function"
                <select name="function">
                    <option value="" selected=function.is_none()>"any"</option>
                    {functions
                        .into_iter()
                        .map(|f| {
                            let selected = function.as_deref() == Some(f.as_str());
                            view! { <option value=f.clone() selected=selected>{f.clone()}</option> }
                        })
                        .collect_view()}
                </select>
            </label>
            <label>
                "Run or event id"
                <input type="search" name="q" value=q.unwrap_or_default() placeholder="01a2…" />
            </label>
            <button type="submit" class="secondary">"Filter"</button>
        </Form>
        {if page.runs.is_empty() {
            view! { <p class="muted">"No runs match."</p> }.into_any()
        } else {
            view! {
                <div class="table-wrap">
                    <table class="runs">
                        <thead>
                            <tr>
                                <th>"Status"</th>
                                <th>"Function"</th>
                                <th>"Event"</th>
                                <th>"Started"</th>
                                <th>"Duration"</th>
                                <th>"Attempts"</th>
                                <th>"Run"</th>
                            </tr>
                        </thead>
                        <tbody>{page.runs.into_iter().map(|run| view! { <RunLine run=run /> }).collect_view()}</tbody>
                    </table>
                </div>
            }
            .into_any()
        }}
        <p class="pager">
            {before.map(|_| view! { <a href="/runs">"← Newest"</a> })}
            {next_link.map(|href| view! { <a href=href>"Older →"</a> })}
        </p>
    }
}

#[component]
fn RunLine(run: RunRow) -> impl IntoView {
    let href = format!("/runs/{}", run.id);
    let duration = match (run.started_at, run.ended_at) {
        (Some(start), Some(end)) => format_duration(end - start),
        (Some(_), None) => "…".to_string(),
        _ => "—".to_string(),
    };
    let short: String = run.id.chars().skip(24).collect();
    view! {
        <tr class="run-row" data-run-id=run.id.clone()>
            <td><StatusBadge status=run.status /><HeldBack why=run.held_back.clone() /></td>
            <td>{run.function_id.clone()}</td>
            <td><code>{run.event_name.clone()}</code></td>
            <td>{run.started_at.map(format_time).unwrap_or_else(|| "—".into())}</td>
            <td>{duration}</td>
            <td>{run.attempts}</td>
            <td><A href=href>{format!("…{short}")}</A></td>
        </tr>
    }
}
