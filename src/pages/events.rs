//! `/events`: the user's recent events, the runs each triggered, and a form to send one.
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use crate::api::events::{list_events, EventRow, GetEvent, SendEvent};
use crate::components::form_error::{action_error, FormError, LoadError};
use crate::components::live::use_live_runs;
use crate::components::nav::Nav;
use crate::components::status::StatusBadge;
use crate::components::time::format_time;
use crate::components::toast::use_toaster;

/// The events page.
#[component]
pub fn EventsPage() -> impl IntoView {
    let query = use_query_map();
    let before = move || query.with(|q| q.get("before")).filter(|v| !v.is_empty());
    let send = ServerAction::<SendEvent>::new();
    let live = use_live_runs();
    let toaster = use_toaster();
    let events = Resource::new(
        move || {
            (
                before(),
                send.version().get(),
                live.last.get(),
                live.finished.get(),
            )
        },
        |(before, ..)| list_events(before),
    );
    Effect::new(
        move |_| match send.value().get().map(|sent| sent.map(|ids| ids.len())) {
            Some(Ok(1)) => toaster.success("이벤트 전송됨"),
            Some(Ok(n)) => toaster.success(format!("이벤트 {n}개 전송됨")),
            _ => {}
        },
    );

    view! {
        <Nav />
        <section class="card">
            <h1>"Send an event"</h1>
            <ActionForm action=send attr:class="send-event">
                <label>
                    "Name"
                    <input type="text" name="name" placeholder="test/hello.world" required />
                </label>
                <label>
                    "Data (JSON)"
                    <textarea name="data" rows="4" placeholder=r#"{"email": "me@example.com"}"#></textarea>
                    <small class="muted">"An array sends one event per element (up to 100)."</small>
                </label>
                <FormError error=action_error(send) />
                <button type="submit" class="primary" disabled=move || send.pending().get()>"Send event"</button>
            </ActionForm>
        </section>
        <section class="card">
            <h1>"Events"</h1>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match events.await {
                        Ok(page) => {
                            let next = page.next.clone();
                            view! {
                                {if page.events.is_empty() {
                                    view! { <p class="muted">"No events yet."</p> }.into_any()
                                } else {
                                    view! {
                                        <ul class="events">
                                            {page.events.into_iter().map(|e| view! { <EventLine row=e /> }).collect_view()}
                                        </ul>
                                    }.into_any()
                                }}
                                {next.map(|n| view! { <p class="pager"><a href=format!("/events?before={n}")>"Older →"</a></p> })}
                            }.into_any()
                        }
                        Err(err) => view! { <LoadError error=err /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn EventLine(row: EventRow) -> impl IntoView {
    let full = ServerAction::<GetEvent>::new();
    let id = row.event.id.clone();
    let preview = row.event.data.clone();
    let data = move || match full.value().get() {
        Some(Ok(event)) => event.data,
        _ => preview.clone(),
    };
    let expanded = move || matches!(full.value().get(), Some(Ok(_)));
    view! {
        <li class="event" data-event-id=row.event.id.clone()>
            <div class="event-head">
                <code class="event-name">{row.event.name.clone()}</code>
                <span class="muted">{format_time(row.event.ts)}</span>
                <span class="muted"><code>{row.event.id.clone()}</code></span>
            </div>
            <pre class="json">{data}</pre>
            {row.truncated.then(|| view! {
                <button class="link" hidden=expanded on:click=move |_| { full.dispatch(GetEvent { id: id.clone() }); }>
                    "show all"
                </button>
            })}
            <div class="triggered">
                {if row.runs.is_empty() && row.skipped.is_empty() {
                    view! { <span class="muted">"triggered no function"</span> }.into_any()
                } else {
                    row.runs
                        .into_iter()
                        .map(|r| view! {
                            <A href=format!("/runs/{}", r.id)>
                                <StatusBadge status=r.status />
                                " " {r.function_id.clone()}
                            </A>
                        })
                        .collect_view()
                        .into_any()
                }}
                {row.skipped.into_iter().map(|(function_id, why)| view! {
                    <span class="skipped" data-function=function_id.clone() title=format!("skipped: {why}")>
                        "↷ " {function_id.clone()} " skipped: " {why.clone()}
                    </span>
                }).collect_view()}
                {row.more_runs.then(|| view! { <span class="muted">"and more on the runs page"</span> })}
            </div>
        </li>
    }
}
