//! How run and step states look: a coloured badge with an icon.
use leptos::prelude::*;

/// The icon for a state.
pub fn status_icon(status: &str) -> &'static str {
    match status {
        "completed" => "✓",
        "failed" => "✕",
        "cancelled" => "⊘",
        "running" => "▶",
        "sleeping" => "☾",
        "retrying" => "↻",
        _ => "…",
    }
}

/// A badge such as "✓ completed".
#[component]
pub fn StatusBadge(#[prop(into)] status: String) -> impl IntoView {
    view! {
        <span class=format!("status status-{status}") data-status=status.clone()>
            <span aria-hidden="true">{status_icon(&status)}</span>
            " "
            {status.clone()}
        </span>
    }
}
