//! The home page: the signed-in user's workflows and the button that creates one.
use leptos::prelude::*;

use crate::api::workflows::{get_workflows, CreateWorkflow, WorkflowView, WORKFLOW_LIST_LIMIT};
use crate::components::form_error::LoadError;
use crate::components::live::use_live_runs;
use crate::components::nav::Nav;
use crate::components::toast::use_toaster;

/// Lists workflows; "워크플로우 생성" answers at once with a toast.
#[component]
pub fn HomePage() -> impl IntoView {
    let toaster = use_toaster();
    let create = ServerAction::<CreateWorkflow>::new();
    // Refetch after our own create, and whenever one of our background runs ends.
    let live = use_live_runs();
    let workflows = Resource::new(
        move || (create.version().get(), live.finished.get()),
        |_| get_workflows(),
    );

    Effect::new(move |_| match create.value().get() {
        Some(Ok(_)) => toaster.success("작업 성공"),
        Some(Err(err)) => toaster.error(err.to_string()),
        None => {}
    });

    view! {
        <Nav />
        <section class="card home">
            <header class="home-header">
                <h1>"로그인한 사용자만 접근 가능"</h1>
            </header>
            <button
                class="primary"
                disabled=move || create.pending().get()
                on:click=move |_| {
                    create.dispatch(CreateWorkflow {});
                }
            >
                "워크플로우 생성"
            </button>
            <h2>"Workflows"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match workflows.await {
                        Ok(list) => view! { <WorkflowList workflows=list /> }.into_any(),
                        Err(err) => view! { <LoadError error=err /> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// The workflows, or a line saying there are none.
#[component]
fn WorkflowList(workflows: Vec<WorkflowView>) -> impl IntoView {
    if workflows.is_empty() {
        return view! { <p class="muted">"No workflows yet."</p> }.into_any();
    }
    let capped = workflows.len() as u64 >= WORKFLOW_LIST_LIMIT;
    view! {
        <Show when=move || capped>
            <p class="muted">{format!("Showing the newest {WORKFLOW_LIST_LIMIT}.")}</p>
        </Show>
        <ul class="workflows">
            {workflows
                .into_iter()
                .map(|w| {
                    view! {
                        <li class="workflow">
                            <span class="workflow-name">{w.name}</span>
                            <code class="workflow-id">{w.id}</code>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}
